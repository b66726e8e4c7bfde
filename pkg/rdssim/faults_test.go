package rdssim

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// awaitClosed waits until the server has closed the client connection.
func awaitClosed(t *testing.T, c *ssh.Client) {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- c.Wait() }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("connection not closed by the server")
	}
}

func TestFaults(t *testing.T) {
	for _, tc := range []struct {
		name string
		test func(t *testing.T, ts *TestServer)
	}{
		{"latency", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			const d = 150 * time.Millisecond
			ts.SetLatency(d)
			start := time.Now()
			mustOK(t, c, "/system resource print")
			if el := time.Since(start); el < d {
				t.Fatalf("command took %v, latency is %v", el, d)
			}
			ts.SetLatency(0)
		}},
		{"latency from config", func(t *testing.T, _ *TestServer) {
			ts := StartForTest(t, func(c *Config) { c.Latency = 100 * time.Millisecond })
			c := dial(t, ts)
			start := time.Now()
			mustOK(t, c, "/disk print detail")
			if el := time.Since(start); el < 100*time.Millisecond {
				t.Fatalf("command took %v", el)
			}
		}},
		{"silent: handshakes and session opens stall until cleared", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			ts.SetSilent(true)
			opened := make(chan error, 1)
			go func() {
				s, err := c.NewSession()
				if err == nil {
					err = s.Run("/system resource print")
				}
				opened <- err
			}()
			dialed := make(chan error, 1)
			go func() {
				c2, err := ts.Dial()
				if err == nil {
					_ = c2.Close()
				}
				dialed <- err
			}()
			eventually(t, "the new connection to be accepted", func() bool { return ts.Stats().TotalConnections >= 2 })
			select {
			case err := <-opened:
				t.Fatalf("session open answered while silent: %v", err)
			case err := <-dialed:
				t.Fatalf("handshake answered while silent: %v", err)
			default:
			}
			ts.SetSilent(false)
			for name, ch := range map[string]chan error{"stalled session": opened, "stalled handshake": dialed} {
				select {
				case err := <-ch:
					if err != nil {
						t.Fatalf("%s after the silence: %v", name, err)
					}
				case <-time.After(10 * time.Second):
					t.Fatalf("%s still blocked after the silence ended", name)
				}
			}
		}},
		{"hang until session closes", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			if err := ts.SetHang("^/disk print"); err != nil {
				t.Fatal(err)
			}
			s, err := c.NewSession()
			if err != nil {
				t.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- s.Run("/disk print detail") }()
			eventually(t, "hung command to arrive", func() bool {
				return slices.Contains(ts.Commands(), "/disk print detail")
			})
			mustOK(t, c, "/system resource print") // others proceed
			select {
			case err := <-done:
				t.Fatalf("hung command answered: %v", err)
			default:
			}
			_ = s.Close()
			select {
			case err := <-done:
				if err == nil {
					t.Fatal("hung command reported success")
				}
			case <-time.After(10 * time.Second):
				t.Fatal("hung command still blocked after session close")
			}
			if err := ts.SetHang(""); err != nil {
				t.Fatal(err)
			}
			mustOK(t, c, "/disk print detail")
			if err := ts.SetHang("("); err == nil {
				t.Fatal("bad regex accepted")
			}
		}},
		{"drop connections", func(t *testing.T, ts *TestServer) {
			c1, c2 := dial(t, ts), dial(t, ts)
			mustOK(t, c1, "/disk print detail")
			ts.DropConnections()
			awaitClosed(t, c1)
			awaitClosed(t, c2)
			if _, err := RunOn(c1, "/disk print detail"); err == nil {
				t.Fatal("dropped connection still works")
			}
			mustOK(t, dial(t, ts), "/disk print detail")
		}},
		{"refuse", func(t *testing.T, ts *TestServer) {
			old := dial(t, ts)
			ts.SetRefuse(true)
			if c, err := ts.Dial(); err == nil {
				c.Close()
				t.Fatal("connection accepted while refusing")
			}
			mustOK(t, old, "/disk print detail") // existing connections stay
			ts.SetRefuse(false)
			mustOK(t, dial(t, ts), "/disk print detail")
		}},
		{"fail next", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			ts.FailNext(2, "failure: boom")
			for i := 0; i < 2; i++ {
				if r := run(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G")); r.Stdout != "failure: boom\n" {
					t.Fatalf("attempt %d: %+v", i, r)
				}
			}
			if len(ts.Disks()) != 0 {
				t.Fatal("failed command was executed")
			}
			mustOK(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G"))
			ts.FailNext(1, "")
			if r := run(t, c, "/disk print"); r.Stdout != DefaultFailText+"\n" {
				t.Fatalf("default text: %+v", r)
			}
		}},
		{"out of space", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			mustOK(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G"))
			ts.SetOutOfSpace(true)
			for _, cmd := range []string{
				addCmd("pvc-2", "/storage-pool/pvc-2.img", "1G"),
				"/disk set pvc-1 file-size=2G",
				"/disk add type=file copy-from=pvc-1 file-path=/storage-pool/pvc-3.img slot=pvc-3",
			} {
				if r := run(t, c, cmd); r.Stdout != "failure: not enough space\n" {
					t.Fatalf("%s: %+v", cmd, r)
				}
			}
			mustOK(t, c, "/disk set pvc-1 file-size=1G") // no growth
			mustOK(t, c, "/disk print detail")
			ts.ResetFaults()
			mustOK(t, c, addCmd("pvc-2", "/storage-pool/pvc-2.img", "1G"))
		}},
		{"restart", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			mustOK(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G"))
			addr := ts.Addr()
			const delay = 300 * time.Millisecond
			start := time.Now()
			ts.Restart(delay)
			if ts.Listening() {
				t.Fatal("still listening right after Restart")
			}
			awaitClosed(t, c)
			if c2, err := ts.Dial(); err == nil {
				c2.Close()
				t.Fatal("accepted a connection while restarting")
			}
			if err := ts.WaitListening(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			if el := time.Since(start); el < delay {
				t.Fatalf("listening again after %v, delay %v", el, delay)
			}
			if ts.Addr() != addr {
				t.Fatalf("address changed: %s -> %s", addr, ts.Addr())
			}
			c = dial(t, ts)
			items := parseDetail(t, mustOK(t, c, "/disk print detail where slot=pvc-1"))
			if len(items) != 1 || items[0]["file-size"] != "1024.0MiB" {
				t.Fatalf("state lost: %v", items)
			}
		}},
		{"restart superseded", func(t *testing.T, ts *TestServer) {
			ts.Restart(time.Hour)
			ts.Restart(10 * time.Millisecond)
			if err := ts.WaitListening(testCtx(t)); err != nil {
				t.Fatal(err)
			}
			mustOK(t, dial(t, ts), "/disk print detail")
			ctx, cancel := context.WithTimeout(context.Background(), time.Millisecond)
			defer cancel()
			ts.Restart(time.Hour)
			if err := ts.WaitListening(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("WaitListening during restart: %v", err)
			}
			ts.Restart(0)
			if err := ts.WaitListening(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}},
		{"restart ends hung commands", func(t *testing.T, ts *TestServer) {
			c := dial(t, ts)
			_ = ts.SetHang(".")
			done := make(chan error, 1)
			go func() { _, err := RunOn(c, "/disk print detail"); done <- err }()
			eventually(t, "hung command", func() bool { return len(ts.Commands()) > 0 })
			ts.Restart(0)
			if err := <-done; err == nil {
				t.Fatal("hung command succeeded across restart")
			}
			if err := ts.WaitListening(testCtx(t)); err != nil {
				t.Fatal(err)
			}
		}},
		{"close ends waits", func(t *testing.T, ts *TestServer) {
			ts.Restart(time.Hour)
			go func() { _ = ts.Close() }()
			if err := ts.WaitListening(testCtx(t)); !errors.Is(err, ErrServerClosed) {
				t.Fatalf("WaitListening after Close: %v", err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) { tc.test(t, StartForTest(t)) })
	}
}
