package rdssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"
)

// The JSON bodies of the control endpoints, as listed on ControlHandler.
type (
	latencyBody struct {
		Latency string `json:"latency"`
	}
	hangBody struct {
		Match string `json:"match"`
	}
	cutBody struct {
		In   int    `json:"in"`
		Mode string `json:"mode"`
	}
	copyBody struct {
		PerGiB         string `json:"perGiB"`
		FinishDetached bool   `json:"finishDetached"`
	}
	refuseBody struct {
		Refuse bool `json:"refuse"`
	}
	silentBody struct {
		Silent bool `json:"silent"`
	}
	failBody struct {
		Count int    `json:"count"`
		Error string `json:"error"`
	}
	outOfSpaceBody struct {
		Enabled bool `json:"enabled"`
	}
	authBody struct {
		Reject bool `json:"reject"`
	}
	restartBody struct {
		Delay string `json:"delay"`
	}
	nvmePortBody struct {
		Port int  `json:"port"`
		Down bool `json:"down"`
	}
	configBody struct { // every field optional: nil leaves the setting as it is
		WrapWidth         *int    `json:"wrapWidth"`
		CRLF              *bool   `json:"crlf"`
		FailureExitStatus *bool   `json:"failureExitStatus"`
		FailureStream     *string `json:"failureStream"`
	}
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
//	POST /faults/nvme-port    {"port":4420,"down":true} (with NVMe/TCP export only)
//	POST /faults/reset
//	POST /config              {"wrapWidth":80,"crlf":false,"failureExitStatus":false,"failureStream":"stdout"} (all optional)
//	GET  /state               disks as JSON
//	GET  /stats               counters as JSON
//	GET  /commands            received command lines as JSON
//
// It should only ever listen on loopback: it has no authentication.
func (s *Server) ControlHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /faults/latency", post(func(b latencyBody) error { return withDuration(b.Latency, s.SetLatency) }))
	mux.HandleFunc("POST /faults/hang", post(func(b hangBody) error { return s.SetHang(b.Match) }))
	mux.HandleFunc("POST /faults/drop", do(s.DropConnections))
	mux.HandleFunc("POST /faults/cut", post(func(b cutBody) error {
		m, err := ParseCutMode(b.Mode)
		if err == nil {
			s.CutCommand(b.In, m)
		}
		return err
	}))
	mux.HandleFunc("POST /config/copy", post(func(b copyBody) error {
		return withDuration(b.PerGiB, func(d time.Duration) { s.SetCopyModel(d, b.FinishDetached) })
	}))
	mux.HandleFunc("POST /faults/refuse", post(func(b refuseBody) error { s.SetRefuse(b.Refuse); return nil }))
	mux.HandleFunc("POST /faults/silent", post(func(b silentBody) error { s.SetSilent(b.Silent); return nil }))
	mux.HandleFunc("POST /faults/fail", post(func(b failBody) error { s.FailNext(b.Count, b.Error); return nil }))
	mux.HandleFunc("POST /faults/out-of-space", post(func(b outOfSpaceBody) error { s.SetOutOfSpace(b.Enabled); return nil }))
	mux.HandleFunc("POST /faults/auth", post(func(b authBody) error { s.SetRejectAuth(b.Reject); return nil }))
	mux.HandleFunc("POST /faults/restart", post(func(b restartBody) error { return withDuration(b.Delay, s.Restart) }))
	mux.HandleFunc("POST /faults/nvme-port", post(func(b nvmePortBody) error { return s.SetNVMeTCPPortDown(b.Port, b.Down) }))
	mux.HandleFunc("POST /faults/reset", do(s.ResetFaults))
	mux.HandleFunc("POST /config", post(func(b configBody) error {
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
	}))
	mux.HandleFunc("GET /state", func(w http.ResponseWriter, _ *http.Request) {
		writeJSON(w, map[string]any{"disks": s.Disks()})
	})
	mux.HandleFunc("GET /stats", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Stats()) })
	mux.HandleFunc("GET /commands", func(w http.ResponseWriter, _ *http.Request) { writeJSON(w, s.Commands()) })
	return mux
}

// post serves an endpoint whose JSON body (optional) is decoded into a T, the struct of the fields
// it takes, then applied. Unknown fields are refused, so that a misspelt field fails the request
// instead of leaving a fault unset.
func post[T any](apply func(T) error) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var body T
		if r.ContentLength != 0 {
			dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&body); err != nil && !errors.Is(err, io.EOF) {
				httpErr(w, http.StatusBadRequest, fmt.Errorf("bad JSON body: %w", err))
				return
			}
		}
		if err := apply(body); err != nil {
			httpErr(w, http.StatusBadRequest, err)
			return
		}
		writeOK(w)
	}
}

// do serves an endpoint that takes no body; one sent is not read.
func do(act func()) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		act()
		writeOK(w)
	}
}

func writeOK(w http.ResponseWriter) { writeJSON(w, map[string]bool{"ok": true}) }

// withDuration parses v as parseDuration does and, only when it is valid, sets it.
func withDuration(v string, set func(time.Duration)) error {
	d, err := parseDuration(v)
	if err == nil {
		set(d)
	}
	return err
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
