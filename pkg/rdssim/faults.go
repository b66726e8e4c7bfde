package rdssim

import (
	"context"
	"fmt"
	"regexp"
	"time"

	"k8s.io/klog/v2"
)

// DefaultFailText is used by FailNext when no text is given.
const DefaultFailText = "failure: simulated failure"

// SetLatency delays every command by d (0 disables).
func (s *Server) SetLatency(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.latency = max(d, 0)
}

// SetHang makes commands matching the regular expression never answer until
// their session closes. "" clears.
func (s *Server) SetHang(pattern string) error {
	var re *regexp.Regexp
	if pattern != "" {
		var err error
		if re, err = regexp.Compile(pattern); err != nil {
			return err
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.hang = re
	return nil
}

// DropConnections closes every SSH connection now.
func (s *Server) DropConnections() {
	s.mu.Lock()
	conns := s.connsLocked()
	s.mu.Unlock()
	klog.InfoS("rdssim fault: dropping connections", "count", len(conns))
	closeAll(conns)
}

// CutMode says where a cut command loses its answer.
type CutMode int

// The ways a command can be cut (CutCommand).
const (
	// CutBeforeRun drops the connection when the command arrives: it never runs.
	CutBeforeRun CutMode = iota
	// CutAfterRun runs the command, then drops the connection before any answer.
	CutAfterRun
	// CutMidOutput runs the command, sends half its output, then closes the session without an
	// exit status; the connection stays up.
	CutMidOutput
)

func (m CutMode) String() string {
	switch m {
	case CutBeforeRun:
		return "before-run"
	case CutAfterRun:
		return "after-run"
	case CutMidOutput:
		return "mid-output"
	}
	return fmt.Sprintf("CutMode(%d)", int(m))
}

// ParseCutMode reads a CutMode from its String form.
func ParseCutMode(s string) (CutMode, error) {
	for _, m := range []CutMode{CutBeforeRun, CutAfterRun, CutMidOutput} {
		if m.String() == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("rdssim: cut mode must be before-run, after-run or mid-output, not %q", s)
}

// CutCommand makes the n-th command from now (1: the next one) lose its answer as mode says;
// n <= 0 clears. Commands are counted as they arrive, whatever their session.
func (s *Server) CutCommand(n int, mode CutMode) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.cutIn, s.f.cutMode = max(n, 0), mode
}

// SetCopyModel sets how long `/disk add copy-from=` takes per GiB of source (0: instant) and
// whether a copy whose session ends goes on by itself (true) or stops half-written (false).
func (s *Server) SetCopyModel(perGiB time.Duration, finishDetached bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.copy = copyModel{perGiB: max(perGiB, 0), finishDetached: finishDetached}
}

// SetRefuse makes new TCP connections close at once (existing ones stay).
func (s *Server) SetRefuse(refuse bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.refuse = refuse
}

// FailNext makes the next n commands fail with text (DefaultFailText if
// empty) without executing them. n <= 0 clears.
func (s *Server) FailNext(n int, text string) {
	if text == "" {
		text = DefaultFailText
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.failCount = max(n, 0)
	s.f.failText = text
}

// SetOutOfSpace makes every add and grow fail with "failure: not enough space".
func (s *Server) SetOutOfSpace(enabled bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.outOfSpace = enabled
}

// SetRejectAuth makes every login fail (an RDS that no longer knows our key).
func (s *Server) SetRejectAuth(reject bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.f.rejectAuth = reject
}

// ResetFaults clears every fault (latency, hang, refuse, fail-next,
// out-of-space, reject-auth). Switches and a pending Restart are kept.
func (s *Server) ResetFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.f.silent != nil {
		close(s.f.silent)
	}
	s.f = faults{}
}

// SetSilent makes the RDS a black hole, as a hung appliance or a lost route does: TCP connections
// are accepted but the SSH handshake is never answered, and on existing connections session opens
// and commands get no answer. Clearing it lets stalled handshakes and session opens proceed.
func (s *Server) SetSilent(silent bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case silent && s.f.silent == nil:
		s.f.silent = make(chan struct{})
	case !silent && s.f.silent != nil:
		close(s.f.silent)
		s.f.silent = nil
	}
}

// Restart simulates a reboot: it drops every connection and stops listening
// at once, then, after delay, reloads the state from disk and listens again
// on the same address. It returns immediately; use WaitListening to await
// the new listener. A later Restart supersedes a pending one.
func (s *Server) Restart(delay time.Duration) {
	s.mu.Lock()
	if s.closed || s.addr == "" {
		s.mu.Unlock()
		return
	}
	s.stopListeningLocked()
	s.restartGen++
	gen := s.restartGen
	conns := s.connsLocked()
	s.wg.Add(1)
	s.mu.Unlock()
	klog.InfoS("rdssim fault: restart", "delay", delay, "connections", len(conns))
	closeAll(conns)
	go func() {
		defer s.wg.Done()
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-s.done:
			return
		}
		for {
			s.mu.Lock()
			if s.closed || gen != s.restartGen {
				s.mu.Unlock()
				return
			}
			if err := s.store.load(); err != nil {
				klog.ErrorS(err, "rdssim restart: keeping in-memory state")
			}
			err := s.listenLocked(s.addr)
			s.mu.Unlock()
			if err == nil {
				klog.InfoS("rdssim listening again", "addr", s.addr)
				return
			}
			klog.ErrorS(err, "rdssim restart: listen failed, retrying", "addr", s.addr)
			select {
			case <-time.After(50 * time.Millisecond):
			case <-s.done:
				return
			}
		}
	}()
}

// WaitListening blocks until the server is listening (at once if it is),
// ctx ends, or the server is closed.
func (s *Server) WaitListening(ctx context.Context) error {
	s.mu.Lock()
	up, closed := s.up, s.closed
	s.mu.Unlock()
	if closed {
		return ErrServerClosed
	}
	select {
	case <-up:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-s.done:
		return ErrServerClosed
	}
}

// Listening reports whether the server accepts connections now.
func (s *Server) Listening() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ln != nil
}

// Disks returns a copy of the disk entries, in creation order.
func (s *Server) Disks() []Disk { return s.store.snapshot() }

// SetFailureMode sets the unverified failure behaviour: exit status 1 on
// failure or 0, and the stream ("stdout" or "stderr") for the error text.
func (s *Server) SetFailureMode(exitStatus bool, stream string) error {
	if stream != "stdout" && stream != "stderr" {
		return fmt.Errorf("rdssim: failure stream must be stdout or stderr, not %q", stream)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.failExit, s.sw.failStream = exitStatus, stream
	return nil
}

// SetWrapWidth sets the print output width in columns (0: no wrapping).
func (s *Server) SetWrapWidth(width int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.wrapWidth = max(width, 0)
}

// SetCRLF makes output lines end in CRLF (true) or LF.
func (s *Server) SetCRLF(crlf bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.sw.crlf = crlf
}

// Commands returns the command lines received so far (the most recent ones
// if there were very many), including failed and rejected ones.
func (s *Server) Commands() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.cmdLog...)
}

// Stats returns connection and command counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats
	st.ActiveConnections = len(s.conns)
	return st
}
