package rds

import (
	"context"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// TestRestartIsUsedWithoutWaitingABackoff: with a reconnect backoff of an hour, the client is
// ready and commands succeed after each restart of the RDS: it dials as soon as a TCP probe is
// answered, and a connection that lived StableAfter is no failure to back off from.
func TestRestartIsUsedWithoutWaitingABackoff(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.BackoffInitial, cfg.BackoffMax = time.Hour, time.Hour
	cfg.BreakerCooldown = time.Hour
	cfg.StableAfter = 50 * time.Millisecond
	cfg.KeepaliveInterval = time.Hour
	c := startClient(t, cfg)
	rec := record(c)
	rec.await(t, Connected)
	s := NewStorage(c)
	ctx := context.Background()
	for i := range 3 {
		time.Sleep(cfg.StableAfter) // the connection has lived long enough to count as stable
		ts.Restart(300 * time.Millisecond)
		rec.await(t, Disconnected)
		// Commands while it is down fail, and open the breaker (an hour's cooldown).
		for range cfg.BreakerThreshold {
			if _, err := s.ListDisks(ctx, ""); err == nil {
				t.Fatalf("restart %d: command succeeded while the RDS was down", i)
			}
		}
		if err := ts.WaitListening(ctx); err != nil {
			t.Fatal(err)
		}
		rec.await(t, Connected)
		if err := c.Probe(ctx); err != nil {
			t.Fatalf("restart %d: Probe after reconnect: %v", i, err)
		}
		if _, err := s.ListDisks(ctx, ""); err != nil {
			t.Fatalf("restart %d: command after reconnect: %v", i, err)
		}
	}
}

// TestFailuresPastTheTCPConnectBackOff: an RDS that accepts TCP connections but refuses the
// login, or drops each connection as soon as it is made, is not dialled again (nor probed) until
// the backoff has passed.
func TestFailuresPastTheTCPConnectBackOff(t *testing.T) {
	t.Run("login refused", func(t *testing.T) {
		ts := rdssim.StartForTest(t)
		ts.SetRejectAuth(true)
		cfg := fastConfig(ts)
		cfg.BackoffInitial, cfg.BackoffMax = time.Hour, time.Hour
		c := startClient(t, cfg)
		awaitCond(t, "the first login attempt", func() bool { return ts.Stats().TotalConnections >= 1 })
		n := ts.Stats().TotalConnections
		time.Sleep(20 * c.cfg.ProbeInterval)
		if got := ts.Stats().TotalConnections; got != n {
			t.Fatalf("%d more connections during the backoff after a refused login", got-n)
		}
		if err := c.Probe(context.Background()); err == nil {
			t.Fatal("Probe ready while the RDS refuses the login")
		}
	})
	t.Run("connection dropped young", func(t *testing.T) {
		ts := rdssim.StartForTest(t)
		cfg := fastConfig(ts)
		cfg.BackoffInitial, cfg.BackoffMax = time.Hour, time.Hour
		cfg.StableAfter = time.Hour
		c := startClient(t, cfg)
		rec := record(c)
		rec.await(t, Connected)
		n := ts.Stats().TotalConnections
		ts.DropConnections()
		rec.await(t, Disconnected)
		time.Sleep(20 * c.cfg.ProbeInterval)
		if got := ts.Stats().TotalConnections; got != n {
			t.Fatalf("%d new connections during the backoff after a connection that died young", got-n)
		}
		if c.State() != Disconnected {
			t.Fatal("reconnected during the backoff")
		}
	})
}

// TestProbesFindTheRDSAfterALongOutage: an RDS down for longer than the largest backoff is used
// as soon as it listens again: while nothing answers, probing goes on every ProbeInterval.
func TestProbesFindTheRDSAfterALongOutage(t *testing.T) {
	ts := rdssim.StartForTest(t)
	cfg := fastConfig(ts)
	cfg.BackoffInitial, cfg.BackoffMax = time.Hour, time.Hour
	cfg.StableAfter = time.Millisecond
	c := startClient(t, cfg)
	rec := record(c)
	rec.await(t, Connected)
	time.Sleep(10 * time.Millisecond)
	ts.Restart(2 * time.Second)
	rec.await(t, Disconnected)
	if err := ts.WaitListening(context.Background()); err != nil {
		t.Fatal(err)
	}
	rec.await(t, Connected)
	if err := c.Probe(context.Background()); err != nil {
		t.Fatal(err)
	}
}
