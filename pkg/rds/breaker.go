package rds

import (
	"sync"
	"time"
)

// breaker fails calls fast while the RDS is unreachable. It opens after `threshold` consecutive
// connection failures, lets one trial call through after `cooldown`, and closes on any success.
type breaker struct {
	mu        sync.Mutex
	threshold int
	cooldown  time.Duration
	failures  int
	openUntil time.Time
	trial     bool // a half-open trial call is in flight
	now       func() time.Time
}

type breakerState int

const (
	breakerClosed breakerState = iota
	breakerOpen
	breakerHalfOpen
)

func newBreaker(threshold int, cooldown time.Duration) *breaker {
	return &breaker{threshold: threshold, cooldown: cooldown, now: time.Now}
}

// allow reports whether a call may proceed.
func (b *breaker) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.failures < b.threshold {
		return true
	}
	if b.now().Before(b.openUntil) || b.trial {
		return false
	}
	b.trial = true
	return true
}

// done ends a call that neither proved nor disproved the connection (e.g. it timed out waiting
// for a session), so that a half-open breaker is not left waiting for a verdict forever.
func (b *breaker) done() {
	b.mu.Lock()
	b.trial = false
	b.mu.Unlock()
}

func (b *breaker) success() {
	b.mu.Lock()
	b.failures, b.trial = 0, false
	b.mu.Unlock()
}

func (b *breaker) failure() {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.failures++
	b.trial = false
	if b.failures >= b.threshold {
		b.openUntil = b.now().Add(b.cooldown)
	}
}

func (b *breaker) state() breakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.failures < b.threshold:
		return breakerClosed
	case b.now().Before(b.openUntil) || b.trial:
		return breakerOpen
	default:
		return breakerHalfOpen
	}
}
