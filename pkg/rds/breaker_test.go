package rds

import (
	"testing"
	"time"
)

func TestBreaker(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(3, 5*time.Second)
	b.now = func() time.Time { return now }

	for i := 0; i < 2; i++ {
		b.failure()
		if !b.allow() {
			t.Fatalf("breaker opened after %d failures, threshold is 3", i+1)
		}
	}
	b.failure()
	if b.allow() {
		t.Fatal("breaker still closed after 3 consecutive failures")
	}
	if got := b.state(); got != breakerOpen {
		t.Fatalf("state = %v, want open", got)
	}

	now = now.Add(6 * time.Second)
	if got := b.state(); got != breakerHalfOpen {
		t.Fatalf("state after cooldown = %v, want half-open", got)
	}
	if !b.allow() {
		t.Fatal("half-open breaker refused the trial call")
	}
	if b.allow() {
		t.Fatal("half-open breaker let a second call through while the trial is in flight")
	}
	b.failure()
	if b.allow() {
		t.Fatal("failed trial did not reopen the breaker")
	}

	now = now.Add(6 * time.Second)
	if !b.allow() {
		t.Fatal("no trial after the second cooldown")
	}
	b.success()
	if got := b.state(); got != breakerClosed {
		t.Fatalf("state after successful trial = %v, want closed", got)
	}
	for i := 0; i < 5; i++ {
		if !b.allow() {
			t.Fatal("closed breaker refused a call")
		}
	}
}

func TestBreakerTrialWithoutVerdictIsReleased(t *testing.T) {
	now := time.Unix(1000, 0)
	b := newBreaker(1, time.Second)
	b.now = func() time.Time { return now }
	b.failure()
	now = now.Add(2 * time.Second)
	if !b.allow() {
		t.Fatal("no trial after cooldown")
	}
	b.done() // e.g. the trial timed out waiting for a session
	if !b.allow() {
		t.Fatal("a trial that ended without a verdict blocked the breaker for good")
	}
}
