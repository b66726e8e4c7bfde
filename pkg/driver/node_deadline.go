package driver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
)

// pendingOp is a mount, umount or format of a volume. It outlives the call that started it when
// that call gave up waiting: mount-utils runs mount(8) and umount(8) without a context, and even a
// killed umount stays in the kernel until the I/O it waits for completes (an NVMe path that never
// comes back), so the operation cannot be stopped, only waited for.
type pendingOp struct {
	what string
	done chan struct{} // closed once op returned; err is set before
	err  error
}

// bounded runs op, a mount-table change of volume id described by what, and waits for it until
// ctx ends or limit passes. A call that stops waiting returns an error wrapping the context error
// (codes.DeadlineExceeded through toStatus) and leaves op running; the next call for the volume
// waits for it first (lockVolume), so that it never races a mount or umount it cannot see yet.
func (n *nodeService) bounded(ctx context.Context, id, what string, limit time.Duration, op func() error) error {
	if err := n.awaitPending(ctx, id); err != nil {
		return err
	}
	p := &pendingOp{what: what, done: make(chan struct{})}
	n.pendingMu.Lock()
	n.pending[id] = p
	n.pendingMu.Unlock()
	go func() {
		err := op()
		n.pendingMu.Lock()
		if n.pending[id] == p {
			delete(n.pending, id)
		}
		n.pendingMu.Unlock()
		p.err = err
		close(p.done)
		if err != nil {
			klog.V(4).InfoS("Volume operation finished with an error", "volume", id, "operation", what, "err", err)
		}
	}()
	if err := waitDone(ctx, p, limit); err != nil {
		klog.InfoS("Volume operation did not finish in time; it goes on, and the next call for the volume waits for it", "volume", id, "operation", what, "limit", limit)
		return fmt.Errorf("%s did not finish in time (%w); it goes on in the background and the next call for volume %s waits for it", what, err, id)
	}
	return p.err
}

// awaitPending waits, bounded by ctx and the mount timeout, for an operation on volume id that an
// earlier call left running. Its outcome is not taken on trust: the caller reads the mount table
// afresh afterwards.
func (n *nodeService) awaitPending(ctx context.Context, id string) error {
	n.pendingMu.Lock()
	p := n.pending[id]
	n.pendingMu.Unlock()
	if p == nil {
		return nil
	}
	klog.InfoS("Waiting for an earlier operation on the volume to finish", "volume", id, "operation", p.what)
	if err := waitDone(ctx, p, n.mountTimeout); err != nil {
		code := codes.DeadlineExceeded
		if errors.Is(err, context.Canceled) {
			code = codes.Canceled
		}
		return status.Errorf(code, "volume %s: an earlier %s is still running (%v); nothing was changed, retry later", id, p.what, err)
	}
	return nil
}

// waitDone returns nil once p is done, or the context error that ended the wait (a passed limit
// counts as context.DeadlineExceeded).
func waitDone(ctx context.Context, p *pendingOp, limit time.Duration) error {
	timer := time.NewTimer(limit)
	defer timer.Stop()
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		return fmt.Errorf("%w after %v", context.DeadlineExceeded, limit)
	case <-ctx.Done():
		return ctx.Err()
	}
}
