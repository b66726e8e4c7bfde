package rdssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// ControlHandler serves the HTTP control interface (JSON bodies):
//
//	POST /faults/latency      {"latency":"50ms"}
//	POST /faults/hang         {"match":"REGEX"}        ("" clears)
//	POST /faults/drop
//	POST /faults/cut          {"in":1,"mode":"before-run|after-run|mid-output"}
//	POST /config/copy         {"perGiB":"20s","finishDetached":false}
//	POST /faults/refuse       {"refuse":true}
//	POST /faults/silent       {"silent":true}
//	POST /faults/fail         {"count":N,"error":"failure: ..."}
//	POST /faults/out-of-space {"enabled":true}
//	POST /faults/auth         {"reject":true}
//	POST /faults/restart      {"delay":"2s"}
//	POST /faults/reset
//	POST /config              {"wrapWidth":80,"crlf":false,"failureExitStatus":false,"failureStream":"stdout"} (all optional)
//	GET  /state               disks as JSON
//	GET  /stats               counters as JSON
//	GET  /commands            received command lines as JSON
//
// It should only ever listen on loopback: it has no authentication.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults/latency", s.jsonPost(func() (any, func() error) {
		var b struct {
			Latency string `json:"latency"`
		}
		return &b, func() error {
			d, err := parseDuration(b.Latency)
			if err == nil {
				s.SetLatency(d)
			}
			return err
		}
	}))
	mux.HandleFunc("POST /faults/hang", s.jsonPost(func() (any, func() error) {
		var b struct {
			Match string `json:"match"`
		}
		return &b, func() error { return s.SetHang(b.Match) }
	}))
	mux.HandleFunc("POST /faults/drop", s.jsonPost(func() (any, func() error) {
		return nil, func() error { s.DropConnections(); return nil }
	}))
	mux.HandleFunc("POST /faults/cut", s.jsonPost(func() (any, func() error) {
		var b struct {
			In   int    `json:"in"`
			Mode string `json:"mode"`
		}
		return &b, func() error {
			m, err := ParseCutMode(b.Mode)
			if err == nil {
				s.CutCommand(b.In, m)
			}
			return err
		}
	}))
	mux.HandleFunc("POST /config/copy", s.jsonPost(func() (any, func() error) {
		var b struct {
			PerGiB         string `json:"perGiB"`
			FinishDetached bool   `json:"finishDetached"`
		}
		return &b, func() error {
			d, err := parseDuration(b.PerGiB)
			if err == nil {
				s.SetCopyModel(d, b.FinishDetached)
			}
			return err
		}
	}))
	mux.HandleFunc("POST /faults/refuse", s.jsonPost(func() (any, func() error) {
		var b struct {
			Refuse bool `json:"refuse"`
		}
		return &b, func() error { s.SetRefuse(b.Refuse); return nil }
	}))
	mux.HandleFunc("POST /faults/silent", s.jsonPost(func() (any, func() error) {
		var b struct {
			Silent bool `json:"silent"`
		}
		return &b, func() error { s.SetSilent(b.Silent); return nil }
	}))
	mux.HandleFunc("POST /faults/fail", s.jsonPost(func() (any, func() error) {
		var b struct {
			Count int    `json:"count"`
			Error string `json:"error"`
		}
		return &b, func() error { s.FailNext(b.Count, b.Error); return nil }
	}))
	mux.HandleFunc("POST /faults/out-of-space", s.jsonPost(func() (any, func() error) {
		var b struct {
			Enabled bool `json:"enabled"`
		}
		return &b, func() error { s.SetOutOfSpace(b.Enabled); return nil }
	}))
	mux.HandleFunc("POST /faults/auth", s.jsonPost(func() (any, func() error) {
		var b struct {
			Reject bool `json:"reject"`
		}
		return &b, func() error { s.SetRejectAuth(b.Reject); return nil }
	}))
	mux.HandleFunc("POST /faults/restart", s.jsonPost(func() (any, func() error) {
		var b struct {
			Delay string `json:"delay"`
		}
		return &b, func() error {
			d, err := parseDuration(b.Delay)
			if err == nil {
				s.Restart(d)
			}
			return err
		}
	}))
	mux.HandleFunc("POST /faults/reset", s.jsonPost(func() (any, func() error) {
		return nil, func() error { s.ResetFaults(); return nil }
	}))
	mux.HandleFunc("POST /config", s.jsonPost(func() (any, func() error) {
		var b struct {
			WrapWidth         *int    `json:"wrapWidth"`
			CRLF              *bool   `json:"crlf"`
			FailureExitStatus *bool   `json:"failureExitStatus"`
			FailureStream     *string `json:"failureStream"`
		}
		return &b, func() error {
			s.mu.Lock()
			exit, stream := s.sw.failExit, s.sw.failStream
			s.mu.Unlock()
			if b.FailureExitStatus != nil {
				exit = *b.FailureExitStatus
			}
			if b.FailureStream != nil {
				stream = *b.FailureStream
			}
			if err := s.SetFailureMode(exit, stream); err != nil {
				return err
			}
			if b.WrapWidth != nil {
				s.SetWrapWidth(*b.WrapWidth)
			}
			if b.CRLF != nil {
				s.SetCRLF(*b.CRLF)
			}
			return nil
		}
	}))
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"disks": s.Disks()})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Stats()) })
	mux.HandleFunc("GET /commands", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Commands()) })
	return mux
}

// jsonPost decodes the request body (if any) into the value made by mk and
// runs the matching action.
func (s *Server) jsonPost(mk func() (any, func() error)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		body, apply := mk()
		if body != nil && r.ContentLength != 0 {
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
			dec.DisallowUnknownFields()
			if err := dec.Decode(body); err != nil && !errors.Is(err, io.EOF) {
				httpErr(w, http.StatusBadRequest, fmt.Errorf("bad JSON body: %w", err))
				return
			}
		}
		if err := apply(); err != nil {
			httpErr(w, http.StatusBadRequest, err)
			return
		}
		writeJSON(w, map[string]bool{"ok": true})
	}
}

// parseDuration accepts Go durations ("50ms"); "" means 0.
func parseDuration(v string) (time.Duration, error) {
	if v == "" {
		return 0, nil
	}
	d, err := time.ParseDuration(v)
	if err == nil && d < 0 {
		err = errors.New("negative duration")
	}
	return d, err
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

func httpErr(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}
