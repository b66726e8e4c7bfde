package attachment

import (
	"context"
	"sort"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// DefaultReconcileInterval is the period of the reconcile passes that run without any trigger.
const DefaultReconcileInterval = 5 * time.Minute

// Trigger reasons.
const (
	ReasonControllerStart  = "controller-start"
	ReasonPeriodic         = "periodic"
	ReasonRDSReconnect     = "rds-reconnect"
	ReasonNodeNotReady     = "node-not-ready"
	ReasonNodeDeleted      = "node-deleted"
	ReasonNodeOutOfService = "node-out-of-service"
	ReasonMigrationTimeout = "migration-timeout"
)

// PassFunc is one reconcile pass. It gets the reasons that triggered it, sorted, and should
// return soon after ctx ends.
type PassFunc func(ctx context.Context, reasons []string) error

// PassInfo describes a finished pass.
type PassInfo struct {
	Seq      uint64 // 1 for the first pass
	Reasons  []string
	Start    time.Time
	End      time.Time
	Err      error
	Duration time.Duration
}

// Reconciler runs passes one at a time: on every Trigger and on a period. Triggers coalesce: any
// number of them while a pass runs give exactly one more pass. Trigger never blocks, and is safe
// before Start (the pass runs once started) and after Stop (it does nothing).
type Reconciler struct {
	pass     PassFunc
	interval time.Duration
	metrics  *Metrics

	kick chan struct{} // capacity 1: a pending pass

	mu      sync.Mutex
	reasons map[string]struct{}
	started bool
	stopped bool
	cancel  context.CancelFunc
	last    PassInfo
	done    chan struct{} // closed and replaced when a pass finishes
	wg      sync.WaitGroup
}

// NewReconciler returns a stopped reconciler. interval is the period of untriggered passes: 0
// means DefaultReconcileInterval, negative disables them. metrics may be nil.
func NewReconciler(pass PassFunc, interval time.Duration, metrics *Metrics) *Reconciler {
	if interval == 0 {
		interval = DefaultReconcileInterval
	}
	return &Reconciler{
		pass: pass, interval: interval, metrics: metrics,
		kick: make(chan struct{}, 1), reasons: map[string]struct{}{}, done: make(chan struct{}),
	}
}

// Trigger asks for a pass. It returns at once.
func (r *Reconciler) Trigger(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.stopped {
		return
	}
	r.reasons[reason] = struct{}{}
	r.metrics.triggered(reason)
	select {
	case r.kick <- struct{}{}:
	default: // a pass is pending already: this trigger is part of it
	}
}

// Start runs passes in a goroutine until ctx ends or Stop is called. A second Start, or a Start
// after Stop, does nothing.
func (r *Reconciler) Start(ctx context.Context) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.started || r.stopped {
		return
	}
	r.started = true
	ctx, r.cancel = context.WithCancel(ctx)
	r.wg.Add(1)
	go r.run(ctx)
}

// Stop ends the loop, cancelling a running pass, and waits for it. It is safe to call at any
// time and more than once.
func (r *Reconciler) Stop() {
	r.mu.Lock()
	r.stopped = true
	cancel := r.cancel
	r.mu.Unlock()
	if cancel != nil {
		cancel()
	}
	r.wg.Wait()
}

// LastPass returns the last finished pass (Seq 0 if none).
func (r *Reconciler) LastPass() PassInfo {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.last
}

// WaitPass waits until pass number seq (1-based) has finished, and returns it.
func (r *Reconciler) WaitPass(ctx context.Context, seq uint64) (PassInfo, error) {
	for {
		r.mu.Lock()
		last, done := r.last, r.done
		r.mu.Unlock()
		if last.Seq >= seq {
			return last, nil
		}
		select {
		case <-done:
		case <-ctx.Done():
			return last, ctx.Err()
		}
	}
}

// WaitReasonSince waits for a pass that finished after pass number after, was triggered (among
// others) by reason and started at or after since (zero: any time): a trigger that cannot have
// happened before since (an RDS reconnect after a restart) is then surely part of it.
func (r *Reconciler) WaitReasonSince(ctx context.Context, after uint64, reason string, since time.Time) (PassInfo, error) {
	for seq := after + 1; ; seq++ {
		p, err := r.WaitPass(ctx, seq)
		if err != nil {
			return p, err
		}
		seq = p.Seq
		if p.Start.Before(since) {
			continue
		}
		for _, x := range p.Reasons {
			if x == reason {
				return p, nil
			}
		}
	}
}

func (r *Reconciler) run(ctx context.Context) {
	defer r.wg.Done()
	var tick <-chan time.Time
	if r.interval > 0 {
		t := time.NewTicker(r.interval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick:
			r.Trigger(ReasonPeriodic) // through kick, so that it coalesces with the others
			continue
		case <-r.kick:
		}
		if ctx.Err() != nil {
			return
		}
		r.runPass(ctx)
	}
}

func (r *Reconciler) runPass(ctx context.Context) {
	r.mu.Lock()
	reasons := make([]string, 0, len(r.reasons))
	for k := range r.reasons {
		reasons = append(reasons, k)
	}
	clear(r.reasons)
	select {
	case <-r.kick: // triggers that came after the loop woke up are part of this pass
	default:
	}
	seq := r.last.Seq + 1
	r.mu.Unlock()
	sort.Strings(reasons)

	start := time.Now()
	err := r.pass(ctx, reasons)
	end := time.Now()
	if err != nil && ctx.Err() == nil {
		klog.ErrorS(err, "Reconcile pass failed", "reasons", reasons)
	}
	klog.V(2).InfoS("Reconcile pass finished", "seq", seq, "reasons", reasons, "duration", end.Sub(start), "err", err)

	r.mu.Lock()
	r.last = PassInfo{Seq: seq, Reasons: reasons, Start: start, End: end, Err: err, Duration: end.Sub(start)}
	close(r.done)
	r.done = make(chan struct{})
	r.mu.Unlock()
}
