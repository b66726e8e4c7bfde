package rds

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/routeros"
)

// fastConfig makes reconnects and breaker cooldowns quick enough for tests.
func fastConfig(ts *rdssim.TestServer) Config {
	return Config{
		Address: ts.Addr(), User: ts.User, Signer: ts.Signer, HostKey: ts.HostKey,
		MaxSessions: 4, CommandTimeout: 3 * time.Second, DialTimeout: 2 * time.Second,
		KeepaliveInterval: time.Second, BackoffInitial: 10 * time.Millisecond, BackoffMax: 100 * time.Millisecond,
		BreakerThreshold: 3, BreakerCooldown: 100 * time.Millisecond,
	}
}

func startClient(t *testing.T, cfg Config) *Client {
	t.Helper()
	c, err := NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	c.Start()
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// stateRecorder collects connection events for assertions.
type stateRecorder struct {
	mu     sync.Mutex
	events []State
	ch     chan State
}

func record(c *Client) *stateRecorder {
	r := &stateRecorder{ch: make(chan State, 100)}
	c.Subscribe(func(s State) {
		r.mu.Lock()
		r.events = append(r.events, s)
		r.mu.Unlock()
		r.ch <- s
	})
	return r
}

func (r *stateRecorder) await(t *testing.T, want State) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case s := <-r.ch:
			if s == want {
				return
			}
		case <-timeout:
			t.Fatalf("no %v event within 10s", want)
		}
	}
}

func awaitCond(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestNewClientRequiresHostKeyVerification(t *testing.T) {
	signer, err := rdssim.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	_, err = NewClient(Config{Address: "127.0.0.1:1", User: "admin", Signer: signer})
	if err == nil || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("NewClient without any host-key setting: err = %v, want a refusal about the host key", err)
	}
	c, err := NewClient(Config{Address: "127.0.0.1:1", User: "admin", Signer: signer, InsecureSkipHostKeyVerification: true})
	if err != nil {
		t.Fatalf("explicit opt-out refused: %v", err)
	}
	_ = c.Close()
}

func TestHostKeyMismatchNeverConnects(t *testing.T) {
	ts := rdssim.StartForTest(t)
	other, err := rdssim.GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(ts)
	cfg.HostKey = other.PublicKey()
	c := startClient(t, cfg)
	_, err = NewStorage(c).GetDisk(context.Background(), "pvc-x")
	if routeros.KindOf(err) != routeros.KindUnavailable || !strings.Contains(err.Error(), "host key") {
		t.Fatalf("GetDisk with a wrong pinned host key: err = %v, want Unavailable about the host key", err)
	}
	if ts.Stats().Commands != 0 {
		t.Fatalf("the simulator ran %d commands for a client that should not trust it", ts.Stats().Commands)
	}
}

func TestKnownHostsFile(t *testing.T) {
	ts := rdssim.StartForTest(t)
	kh := t.TempDir() + "/known_hosts"
	line := knownHostsLine(ts.Addr(), ts.HostKey)
	if err := writeFile(kh, line); err != nil {
		t.Fatal(err)
	}
	cfg := fastConfig(ts)
	cfg.HostKey = nil
	cfg.KnownHostsFile = kh
	c := startClient(t, cfg)
	if _, err := NewStorage(c).ListDisks(context.Background(), "pvc-"); err != nil {
		t.Fatalf("ListDisks with a known_hosts file: %v", err)
	}
}

func TestConcurrentCallersShareOneConnection(t *testing.T) {
	ts := rdssim.StartForTest(t)
	c := startClient(t, fastConfig(ts))
	s := NewStorage(c)
	ctx := context.Background()
	if _, err := s.CreateDisk(ctx, spec("pvc-conc", 1<<30)); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var failures atomic.Int32
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 5; j++ {
				d, err := s.GetDisk(ctx, "pvc-conc")
				if err != nil || d.Size != 1<<30 {
					failures.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if n := failures.Load(); n != 0 {
		t.Fatalf("%d of 160 concurrent GetDisk calls failed", n)
	}
	if n := ts.Stats().TotalConnections; n != 1 {
		t.Fatalf("the client opened %d SSH connections for 160 commands, want 1 kept-alive connection", n)
	}
}

func TestSessionBoundIsRespected(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.MaxSessions = 2
	cfg.CommandTimeout = 2 * time.Second
	c := startClient(t, cfg)
	s := NewStorage(c)
	if err := ts.SetHang(`slot="?pvc-hang`); err != nil {
		t.Fatal(err)
	}
	// Two hung commands hold both sessions...
	var wg sync.WaitGroup
	for i := 0; i < 2; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _ = s.GetDisk(context.Background(), "pvc-hang")
		}()
	}
	awaitCond(t, "both hung commands to reach the RDS", func() bool { return ts.Stats().Commands == 2 })
	// ...so a third command waits for a session and never reaches the RDS.
	before := ts.Stats().Commands
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	_, err := s.GetDisk(ctx, "pvc-other")
	if err == nil || !strings.Contains(err.Error(), "waiting for a free RDS session") {
		t.Fatalf("third command with 2 sessions busy: err = %v, want a wait for a free session", err)
	}
	if after := ts.Stats().Commands; after != before {
		t.Fatalf("the simulator received %d commands beyond the session bound", after-before)
	}
	wg.Wait()
}

func TestHungCommandIsAbandoned(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.CommandTimeout = 300 * time.Millisecond
	c := startClient(t, cfg)
	s := NewStorage(c)
	ctx := context.Background()
	if _, err := s.CreateDisk(ctx, spec("pvc-ok", 1<<30)); err != nil {
		t.Fatal(err)
	}
	if err := ts.SetHang(`slot="?pvc-hang`); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := s.GetDisk(ctx, "pvc-hang")
		errc <- err
	}()
	// Other commands proceed while one hangs.
	if _, err := s.GetDisk(ctx, "pvc-ok"); err != nil {
		t.Fatalf("a command beside the hung one failed: %v", err)
	}
	err := <-errc
	if routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("hung command: err = %v, want deadline exceeded", err)
	}
	if err := ts.SetHang(""); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetDisk(ctx, "pvc-ok"); err != nil {
		t.Fatalf("command after the hang cleared: %v", err)
	}
	if c.State() != Connected {
		t.Fatal("a hung command took the connection down")
	}
}

func TestDroppedConnectionReconnectsAndNotifies(t *testing.T) {
	ts := rdssim.StartForTest(t)
	reg := prometheus.NewRegistry()
	cfg := fastConfig(ts)
	cfg.Registerer = reg
	c := startClient(t, cfg)
	rec := record(c)
	rec.await(t, Connected)
	if got := testutil.ToFloat64(c.metrics.connected); got != 1 {
		t.Fatalf("connected gauge = %v, want 1", got)
	}

	ts.DropConnections()
	rec.await(t, Disconnected)
	rec.await(t, Connected)
	if _, err := NewStorage(c).ListDisks(context.Background(), ""); err != nil {
		t.Fatalf("command after reconnect: %v", err)
	}
	if err := c.Probe(context.Background()); err != nil {
		t.Fatalf("Probe after reconnect: %v", err)
	}
	if got := testutil.ToFloat64(c.metrics.reconnects); got < 2 {
		t.Fatalf("reconnects counter = %v, want >= 2 (first connect and the reconnect)", got)
	}
}

func TestBreakerFailsFastWhileDownAndClosesAfterRecovery(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.BreakerCooldown = time.Hour // stays open until the background reconnect succeeds
	c := startClient(t, cfg)
	rec := record(c)
	rec.await(t, Connected)
	s := NewStorage(c)

	ts.SetRefuse(true)
	ts.DropConnections()
	rec.await(t, Disconnected)
	awaitCond(t, "breaker to open", func() bool { return c.breaker.state() == breakerOpen })

	_, err := s.ListDisks(context.Background(), "")
	if routeros.KindOf(err) != routeros.KindUnavailable || !strings.Contains(err.Error(), "circuit breaker") {
		t.Fatalf("call while the RDS is down: err = %v, want a fast Unavailable from the breaker", err)
	}
	if err := c.Probe(context.Background()); err == nil {
		t.Fatal("Probe is ready while the RDS refuses connections")
	}

	ts.SetRefuse(false)
	rec.await(t, Connected)
	if _, err := s.ListDisks(context.Background(), ""); err != nil {
		t.Fatalf("call after recovery: %v", err)
	}
	if st := c.breaker.state(); st != breakerClosed {
		t.Fatalf("breaker state after recovery = %v, want closed", st)
	}
}

// TestSilentRDSIsDroppedAndBreakerOpens: an RDS that stops answering altogether (a black hole:
// TCP accepted, nothing answered) is noticed by the first command that times out, not at the next
// keepalive: the connection is dropped, calls fail fast with Unavailable from the breaker, and
// the client recovers by itself when the RDS answers again.
func TestSilentRDSIsDroppedAndBreakerOpens(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.KeepaliveInterval = time.Hour // only the timed-out command can reveal the silence
	cfg.CommandTimeout = 300 * time.Millisecond
	cfg.DialTimeout = 300 * time.Millisecond
	cfg.BreakerCooldown = time.Hour // stays open until the background reconnect succeeds
	c := startClient(t, cfg)
	rec := record(c)
	rec.await(t, Connected)
	s := NewStorage(c)
	ctx := context.Background()

	ts.SetSilent(true)
	if _, err := s.ListDisks(ctx, ""); routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("first command to a silent RDS: err = %v, want deadline exceeded", err)
	}
	rec.await(t, Disconnected)
	awaitCond(t, "breaker to open", func() bool { return c.breaker.state() == breakerOpen })
	_, err := s.ListDisks(ctx, "")
	if routeros.KindOf(err) != routeros.KindUnavailable || !strings.Contains(err.Error(), "circuit breaker") {
		t.Fatalf("call while the RDS is silent: err = %v, want a fast Unavailable from the breaker", err)
	}

	ts.SetSilent(false)
	rec.await(t, Connected)
	if _, err := s.ListDisks(ctx, ""); err != nil {
		t.Fatalf("call after the RDS answers again: %v", err)
	}
}

func TestRestartMidOperation(t *testing.T) {
	ts := rdssim.StartForTest(t)
	c := startClient(t, fastConfig(ts))
	rec := record(c)
	rec.await(t, Connected)
	s := NewStorage(c)
	ctx := context.Background()
	ts.SetLatency(200 * time.Millisecond)

	errc := make(chan error, 1)
	go func() {
		_, err := s.CreateDisk(ctx, spec("pvc-restart", 1<<30))
		errc <- err
	}()
	awaitCond(t, "the create to reach the simulator", func() bool { return ts.Stats().Commands > 0 })
	ts.Restart(300 * time.Millisecond)
	err := <-errc
	// The restart may cut the command (Unavailable) or outlast its deadline (DeadlineExceeded);
	// either way the caller must not read it as an answer.
	if k := routeros.KindOf(err); err != nil && k != routeros.KindUnavailable && k != routeros.KindDeadlineExceeded {
		t.Fatalf("create during restart: err = %v, want success, Unavailable or DeadlineExceeded", err)
	}
	rec.await(t, Disconnected)
	if err := ts.WaitListening(ctx); err != nil {
		t.Fatal(err)
	}
	rec.await(t, Connected)
	ts.SetLatency(0)
	// The retry finishes the job whatever the first attempt did; nothing leaks.
	d, err := s.CreateDisk(ctx, spec("pvc-restart", 1<<30))
	if err != nil && !routeros.IsAlreadyExists(err) {
		t.Fatalf("retried create: %v", err)
	}
	if d == nil || d.Size != 1<<30 {
		t.Fatalf("retried create returned %+v", d)
	}
	if err := s.DeleteDisk(ctx, "pvc-restart", ""); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.Disks()); n != 0 {
		t.Fatalf("%d disks left after delete", n)
	}
}

func TestUnreachableAtStart(t *testing.T) {
	ts := rdssim.StartForTest(t)
	ts.SetRefuse(true)
	c := startClient(t, fastConfig(ts))
	rec := record(c)
	if err := c.Probe(context.Background()); err == nil {
		t.Fatal("Probe ready before any connection")
	}
	_, err := NewStorage(c).ListDisks(context.Background(), "")
	if routeros.KindOf(err) != routeros.KindUnavailable {
		t.Fatalf("call with the RDS down: err = %v, want Unavailable", err)
	}
	ts.SetRefuse(false)
	rec.await(t, Connected)
	if err := c.Probe(context.Background()); err != nil {
		t.Fatalf("Probe after the RDS came up: %v", err)
	}
}

func TestCloseFailsLaterCalls(t *testing.T) {
	ts := rdssim.StartForTest(t)
	c := startClient(t, fastConfig(ts))
	_ = c.Close()
	_, err := NewStorage(c).ListDisks(context.Background(), "")
	if routeros.KindOf(err) != routeros.KindUnavailable {
		t.Fatalf("call after Close: err = %v, want Unavailable", err)
	}
	if err := c.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

func TestContextCancelWhileWaitingForSession(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.MaxSessions = 1
	c := startClient(t, cfg)
	c.sessions <- struct{}{} // occupy the only session
	defer func() { <-c.sessions }()
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := NewStorage(c).ListDisks(ctx, "")
	if !errors.Is(err, context.DeadlineExceeded) || routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("err = %v, want a deadline error classified as DeadlineExceeded", err)
	}
}

// TestEventsKeepOrderAndTheLatestState: with listeners far behind, the oldest queued events go,
// the order is kept, and the latest state is always among those delivered.
func TestEventsKeepOrderAndTheLatestState(t *testing.T) {
	c := &Client{events: make(chan State, 64), started: true}
	const n = 101 // odd: the last state is Connected
	c.mu.Lock()
	for i := range n {
		c.emitLocked([]State{Connected, Disconnected}[i%2])
	}
	c.mu.Unlock()
	if len(c.events) != cap(c.events) {
		t.Fatalf("%d events queued, want %d", len(c.events), cap(c.events))
	}
	var got []State
	for len(c.events) > 0 {
		got = append(got, <-c.events)
	}
	for i := 1; i < len(got); i++ {
		if got[i] == got[i-1] {
			t.Fatalf("events out of order at %d: %v", i, got)
		}
	}
	if got[len(got)-1] != Connected {
		t.Fatalf("latest state %v not delivered last: %v", Connected, got)
	}
}
