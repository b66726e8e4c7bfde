package rdssim

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestControlHandler(t *testing.T) {
	ts := StartForTest(t)
	hs := httptest.NewServer(ts.ControlHandler())
	t.Cleanup(hs.Close)
	c := dial(t, ts)
	mustOK(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G"))

	locked := func(f func()) {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		f()
	}
	for _, tc := range []struct {
		name, method, path, body string
		code                     int
		check                    func(t *testing.T, body string)
	}{
		{"latency", "POST", "/faults/latency", `{"latency":"50ms"}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.f.latency != 50*time.Millisecond {
					t.Fatalf("latency %v", ts.f.latency)
				}
			})
		}},
		{"bad duration", "POST", "/faults/latency", `{"latency":"soon"}`, 400, nil},
		{"unknown field", "POST", "/faults/latency", `{"bogus":1}`, 400, nil},
		{"bad json", "POST", "/faults/latency", `{`, 400, nil},
		{"hang", "POST", "/faults/hang", `{"match":"^/disk add"}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.f.hang == nil || ts.f.hang.String() != "^/disk add" {
					t.Fatalf("hang %v", ts.f.hang)
				}
			})
		}},
		{"cut", "POST", "/faults/cut", `{"in":2,"mode":"mid-output"}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.f.cutIn != 2 || ts.f.cutMode != CutMidOutput {
					t.Fatalf("cut %d %v", ts.f.cutIn, ts.f.cutMode)
				}
			})
		}},
		{"bad cut mode", "POST", "/faults/cut", `{"in":1,"mode":"sideways"}`, 400, nil},
		{"copy model", "POST", "/config/copy", `{"perGiB":"20s","finishDetached":true}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.sw.copy.perGiB != 20*time.Second || !ts.sw.copy.finishDetached {
					t.Fatalf("copy model %+v", ts.sw.copy)
				}
			})
		}},
		{"bad hang regex", "POST", "/faults/hang", `{"match":"("}`, 400, nil},
		{"refuse", "POST", "/faults/refuse", `{"refuse":true}`, 200, nil},
		{"fail", "POST", "/faults/fail", `{"count":3,"error":"failure: x"}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.f.failCount != 3 || ts.f.failText != "failure: x" {
					t.Fatalf("fail %d %q", ts.f.failCount, ts.f.failText)
				}
			})
		}},
		{"out of space", "POST", "/faults/out-of-space", `{"enabled":true}`, 200, nil},
		{"auth", "POST", "/faults/auth", `{"reject":true}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if !ts.f.refuse || !ts.f.outOfSpace || !ts.f.rejectAuth {
					t.Fatalf("faults %+v", ts.f)
				}
			})
		}},
		{"reset", "POST", "/faults/reset", "", 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.f != (faults{}) {
					t.Fatalf("faults not cleared: %+v", ts.f)
				}
			})
		}},
		{"config", "POST", "/config", `{"wrapWidth":40,"crlf":true,"failureExitStatus":true,"failureStream":"stderr"}`, 200,
			func(t *testing.T, _ string) {
				locked(func() {
					if ts.sw != (switches{wrapWidth: 40, crlf: true, failExit: true, failStream: "stderr", copy: ts.sw.copy}) {
						t.Fatalf("switches %+v", ts.sw)
					}
				})
			}},
		{"partial config", "POST", "/config", `{"crlf":false}`, 200, func(t *testing.T, _ string) {
			locked(func() {
				if ts.sw != (switches{wrapWidth: 40, failExit: true, failStream: "stderr", copy: ts.sw.copy}) {
					t.Fatalf("switches %+v", ts.sw)
				}
			})
		}},
		{"bad stream", "POST", "/config", `{"failureStream":"tty"}`, 400, nil},
		{"state", "GET", "/state", "", 200, func(t *testing.T, body string) {
			var st struct{ Disks []Disk }
			if err := json.Unmarshal([]byte(body), &st); err != nil {
				t.Fatal(err)
			}
			if len(st.Disks) != 1 || st.Disks[0].Slot != "pvc-1" || st.Disks[0].FileSize != 1<<30 {
				t.Fatalf("state %s", body)
			}
		}},
		{"stats", "GET", "/stats", "", 200, func(t *testing.T, body string) {
			if !strings.Contains(body, `"activeConnections":1`) {
				t.Fatalf("stats %s", body)
			}
		}},
		{"commands", "GET", "/commands", "", 200, func(t *testing.T, body string) {
			if !strings.Contains(body, "/disk add type=file") {
				t.Fatalf("commands %s", body)
			}
		}},
		{"wrong method", "GET", "/faults/drop", "", 405, nil},
		{"drop", "POST", "/faults/drop", "", 200, func(t *testing.T, _ string) { awaitClosed(t, c) }},
		{"restart", "POST", "/faults/restart", `{"delay":"20ms"}`, 200, func(t *testing.T, _ string) {
			if err := ts.WaitListening(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			mustOK(t, dial(t, ts), "/disk print detail")
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, hs.URL+tc.path, strings.NewReader(tc.body))
			if err != nil {
				t.Fatal(err)
			}
			resp, err := hs.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tc.code {
				t.Fatalf("%s %s: %d %s, want %d", tc.method, tc.path, resp.StatusCode, b, tc.code)
			}
			if tc.check != nil {
				tc.check(t, string(b))
			}
		})
	}
}
