//go:build linux

package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"time"
)

// hangPatterns are the command families a hang fault stalls; "." stalls every command, Probe's too.
var hangPatterns = []string{`^/disk add`, `^/disk (set|remove)`, `^/disk print`, `^/file`, `.`}

// faultLoop injects one fault at a time, after a random calm period, until stop is closed. Kinds
// come from a shuffled deck, so that every kind is injected once per round of six.
func (s *soak) faultLoop(ctx context.Context, stop <-chan struct{}) {
	rng := rand.New(rand.NewPCG(uint64(s.cfg.seed), 1<<40))
	var deck []string
	for {
		calm := time.Duration(float64(s.cfg.faultEvery) * (0.5 + rng.Float64()))
		select {
		case <-stop:
			return
		case <-ctx.Done():
			return
		case <-time.After(calm):
		}
		if len(deck) == 0 {
			deck = append([]string(nil), faultKinds...)
			rng.Shuffle(len(deck), func(i, j int) { deck[i], deck[j] = deck[j], deck[i] })
		}
		kind := deck[0]
		deck = deck[1:]
		s.inject(ctx, rng, kind)
	}
}

// inject applies one fault, holds it for a random while when it is a state, clears it, waits for
// the driver to say it is ready again and closes the fault's window a grace period later.
func (s *soak) inject(ctx context.Context, rng *rand.Rand, kind string) {
	hold := time.Duration(1000+rng.IntN(3000)) * time.Millisecond
	pause := func() {
		select {
		case <-time.After(hold):
		case <-ctx.Done():
		}
	}
	sim := s.env.sim
	var w *window
	switch kind {
	case faultDrop:
		w = s.stats.openWindow(kind, "")
		sim.DropConnections()
	case faultHang:
		pat := hangPatterns[rng.IntN(len(hangPatterns))]
		w = s.stats.openWindow(kind, fmt.Sprintf("%q for %v", pat, hold))
		_ = sim.SetHang(pat)
		pause()
		_ = sim.SetHang("")
	case faultRestart:
		delay := time.Duration(300+rng.IntN(2200)) * time.Millisecond
		w = s.stats.openWindow(kind, fmt.Sprintf("down %v", delay))
		sim.Restart(delay)
		wctx, cancel := context.WithTimeout(ctx, delay+30*time.Second)
		if err := sim.WaitListening(wctx); err != nil {
			s.stats.violation("soak error", "simulator not listening after a restart: %v", err)
		}
		cancel()
	case faultLatency:
		lat := time.Duration(100+rng.Int64N(int64(s.cfg.rdsTimeout*3/2/time.Millisecond))) * time.Millisecond
		w = s.stats.openWindow(kind, fmt.Sprintf("%v per command for %v", lat, hold))
		sim.SetLatency(lat)
		pause()
		sim.SetLatency(0)
	case faultOutOfSpace:
		w = s.stats.openWindow(kind, fmt.Sprintf("for %v", hold))
		sim.SetOutOfSpace(true)
		pause()
		sim.SetOutOfSpace(false)
	case faultKill:
		s.restartMu.Lock()
		w = s.stats.openWindow(kind, "")
		s.env.drv.kill9()
		// Bumped once the old process is gone: a publish sent before this point may have been
		// answered by it, and is restored before it is relied on.
		s.epoch.Add(1)
		if err := s.env.drv.start(); err != nil {
			s.stats.violation("soak error", "restarting the driver: %v", err)
		}
		s.restartMu.Unlock()
	}
	if err := s.env.awaitReady(ctx, time.Minute); err != nil {
		s.stats.violation("no recovery after "+kind, "driver not ready a minute after the fault was cleared: %v", err)
	}
	s.stats.closeWindow(w, time.Now().Add(s.grace))
}
