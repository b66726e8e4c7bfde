package attachment

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

// passLog records passes; when gate is set, every pass waits for a value on it (or ctx).
type passLog struct {
	mu      sync.Mutex
	reasons [][]string
	gate    chan struct{}
}

func (p *passLog) pass(ctx context.Context, reasons []string) error {
	p.mu.Lock()
	p.reasons = append(p.reasons, reasons)
	p.mu.Unlock()
	if p.gate != nil {
		select {
		case <-p.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	return nil
}

func (p *passLog) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.reasons)
}

func (p *passLog) all() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.reasons)
}

// TestTriggersCoalesce: any number of triggers while a pass runs give exactly one more pass.
func TestTriggersCoalesce(t *testing.T) {
	for _, n := range []int{1, 2, 10, 1000} {
		t.Run(fmt.Sprintf("%d triggers during a pass", n), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &passLog{gate: make(chan struct{})}
				r := NewReconciler(p.pass, -1, nil)
				r.Start(t.Context())
				r.Trigger("first")
				synctest.Wait() // the first pass is running, blocked on the gate
				if got := p.count(); got != 1 {
					t.Fatalf("passes started = %d, want 1", got)
				}
				for i := range n {
					r.Trigger(fmt.Sprintf("during-%d", i%3))
				}
				p.gate <- struct{}{} // end the first pass
				synctest.Wait()      // the second one is running
				if got := p.count(); got != 2 {
					t.Fatalf("passes started = %d, want 2", got)
				}
				p.gate <- struct{}{}
				synctest.Wait()
				if pending := len(r.kick) > 0; pending || p.count() != 2 {
					t.Fatalf("after the second pass: pending=%t passes=%d, want no third pass", pending, p.count())
				}
				r.Stop()
				want := []string{"during-0"}
				if n > 1 {
					want = append(want, "during-1")
				}
				if n > 2 {
					want = append(want, "during-2")
				}
				if got := p.all()[1]; !slices.Equal(got, want) {
					t.Fatalf("second pass reasons = %v, want %v", got, want)
				}
				if r.LastPass().Seq != 2 {
					t.Fatalf("LastPass().Seq = %d, want 2", r.LastPass().Seq)
				}
			})
		})
	}
}

func TestTriggerNeverBlocks(t *testing.T) {
	cases := []struct {
		name  string
		setup func(r *Reconciler, p *passLog)
	}{
		{"before start", func(*Reconciler, *passLog) {}},
		{"while a pass is stuck", func(r *Reconciler, _ *passLog) {
			r.Start(context.Background())
			r.Trigger("stuck")
			synctest.Wait()
		}},
		{"after stop", func(r *Reconciler, _ *passLog) { r.Start(context.Background()); r.Stop() }},
		{"stopped without start", func(r *Reconciler, _ *passLog) { r.Stop() }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				p := &passLog{gate: make(chan struct{})}
				r := NewReconciler(p.pass, -1, nil)
				tc.setup(r, p)
				done := make(chan struct{})
				go func() {
					for i := range 10000 {
						r.Trigger(fmt.Sprint("t", i%7))
					}
					close(done)
				}()
				synctest.Wait()
				select {
				case <-done:
				default:
					t.Fatal("Trigger blocked")
				}
				r.Stop() // cancels a stuck pass
			})
		})
	}
}

func TestTriggerBeforeStartRunsOnePassOnStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &passLog{}
		r := NewReconciler(p.pass, -1, nil)
		r.Trigger(ReasonControllerStart)
		r.Trigger(ReasonRDSReconnect)
		r.Trigger(ReasonControllerStart)
		synctest.Wait()
		if p.count() != 0 {
			t.Fatal("a pass ran before Start")
		}
		r.Start(t.Context())
		if _, err := r.WaitPass(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		r.Stop()
		got := p.all()
		if len(got) != 1 || !slices.Equal(got[0], []string{ReasonControllerStart, ReasonRDSReconnect}) {
			t.Fatalf("passes = %v, want one with both reasons", got)
		}
	})
}

func TestTriggerAfterStopRunsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &passLog{}
		r := NewReconciler(p.pass, time.Minute, nil)
		r.Start(t.Context())
		r.Trigger("a")
		if _, err := r.WaitPass(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		r.Stop()
		r.Stop() // twice is fine
		r.Trigger("late")
		r.Start(t.Context()) // no restart after stop
		time.Sleep(10 * time.Minute)
		synctest.Wait()
		if n := p.count(); n != 1 {
			t.Fatalf("passes = %d, want 1", n)
		}
	})
}

func TestStopCancelsARunningPass(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &passLog{gate: make(chan struct{})} // never opened: only ctx ends the pass
		r := NewReconciler(p.pass, -1, nil)
		r.Start(context.Background())
		r.Trigger("x")
		synctest.Wait()
		r.Stop()
		if info := r.LastPass(); info.Seq != 1 || info.Err == nil {
			t.Fatalf("LastPass = %+v, want pass 1 ended by cancellation", info)
		}
	})
}

func TestPeriodicPasses(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &passLog{}
		r := NewReconciler(p.pass, 5*time.Minute, nil)
		start := time.Now()
		r.Start(t.Context())
		info, err := r.WaitPass(t.Context(), 2)
		if err != nil {
			t.Fatal(err)
		}
		if d := info.End.Sub(start); d != 10*time.Minute {
			t.Fatalf("second periodic pass after %v, want 10m", d)
		}
		if !slices.Equal(info.Reasons, []string{ReasonPeriodic}) {
			t.Fatalf("reasons = %v", info.Reasons)
		}
		r.Stop()
	})
}

func TestWaitReasonSince(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		p := &passLog{}
		r := NewReconciler(p.pass, -1, nil)
		r.Start(t.Context())
		r.Trigger("a")
		if _, err := r.WaitPass(t.Context(), 1); err != nil {
			t.Fatal(err)
		}
		go func() {
			r.Trigger("b")
			synctest.Wait()
			r.Trigger(ReasonNodeDeleted)
		}()
		info, err := r.WaitReasonSince(t.Context(), 1, ReasonNodeDeleted, time.Time{})
		if err != nil || !slices.Contains(info.Reasons, ReasonNodeDeleted) {
			t.Fatalf("WaitReasonSince = %+v, %v", info, err)
		}
		ctx, cancel := context.WithTimeout(t.Context(), time.Hour)
		defer cancel()
		if _, err := r.WaitReasonSince(ctx, info.Seq, "never", time.Time{}); err == nil {
			t.Fatal("WaitReasonSince for a reason never triggered returned without error")
		}
		r.Stop()
	})
}
