package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	mount "k8s.io/mount-utils"
)

// stallingMounter makes one mount or umount of one path hang until the test releases it, as
// mount(8) and umount(8) do on a device whose I/O never completes. Everything else goes to the
// real mounter.
type stallingMounter struct {
	mount.Interface
	mu      sync.Mutex
	op      string         // "mount" or "unmount": the call that stalls, once
	path    string         // on this path
	calls   map[string]int // "op path" → calls
	entered chan struct{}  // closed when the stalled call starts
	release chan error     // nil: the stalled call goes on and does its job; an error: it fails without doing it
}

func stallOn(t *testing.T, e *nodeEnv, op, path string) *stallingMounter {
	hm := e.ns.mounter.(*hostMounter)
	s := &stallingMounter{Interface: hm.sfm.Interface, op: op, path: path, calls: map[string]int{},
		entered: make(chan struct{}), release: make(chan error, 1)}
	hm.sfm.Interface = s
	// A test that fails while the call stalls must still let it finish, so cleanup can unmount.
	t.Cleanup(func() {
		select {
		case s.release <- nil:
		default:
		}
	})
	return s
}

// hold stalls the chosen call; it returns the error that call must fail with.
func (s *stallingMounter) hold(op, path string) error {
	s.mu.Lock()
	s.calls[op+" "+path]++
	stall := s.op == op && s.path == path
	if stall {
		s.op = ""
	}
	s.mu.Unlock()
	if !stall {
		return nil
	}
	close(s.entered)
	return <-s.release
}

func (s *stallingMounter) count(op, path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.calls[op+" "+path]
}

func (s *stallingMounter) Unmount(target string) error {
	if err := s.hold("unmount", target); err != nil {
		return err
	}
	return s.Interface.Unmount(target)
}

func (s *stallingMounter) Mount(source, target, fstype string, options []string) error {
	if err := s.hold("mount", target); err != nil {
		return err
	}
	return s.Interface.Mount(source, target, fstype, options)
}

func (s *stallingMounter) MountSensitive(source, target, fstype string, options, sensitive []string) error {
	if err := s.hold("mount", target); err != nil {
		return err
	}
	return s.Interface.MountSensitive(source, target, fstype, options, sensitive)
}

// expiringCtx is a call whose gRPC deadline passes when the test says so, so that no test waits
// on a clock.
type expiringCtx struct {
	context.Context
	done chan struct{}
	once sync.Once
}

func newExpiringCtx() *expiringCtx {
	return &expiringCtx{Context: context.Background(), done: make(chan struct{})}
}

func (c *expiringCtx) expire()               { c.once.Do(func() { close(c.done) }) }
func (c *expiringCtx) Done() <-chan struct{} { return c.done }
func (c *expiringCtx) Err() error {
	select {
	case <-c.done:
		return context.DeadlineExceeded
	default:
		return nil
	}
}

// returnsWithin runs a node call that must give up on a stalled mount or umount by itself. The
// limit only turns a call that blocks (the bug under test) into a failure instead of a test
// timeout; a working call returns as soon as its context ends.
func returnsWithin(t *testing.T, call func() error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- call() }()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("the call did not return once its deadline passed: it waits for a hung mount or umount")
		return nil
	}
}

// expireWhenStalled ends the call's deadline once the stalled mount or umount has started.
func expireWhenStalled(s *stallingMounter) *expiringCtx {
	ctx := newExpiringCtx()
	go func() {
		<-s.entered
		ctx.expire()
	}()
	return ctx
}

func expired() *expiringCtx {
	ctx := newExpiringCtx()
	ctx.expire()
	return ctx
}

// TestNodeLoopUnstageAfterHungUmount: an umount that hangs makes NodeUnstageVolume return
// DeadlineExceeded with the volume still staged and attached; a retry while it still hangs starts
// no second umount and changes nothing; once the hung umount ends, whether it unmounted or failed,
// a retry completes the unstage.
func TestNodeLoopUnstageAfterHungUmount(t *testing.T) {
	for _, tc := range []struct {
		name     string
		outcome  error // what the hung umount finally returns
		umounts  int   // umount calls on the staging path in all
		stillMnt bool  // the staging path is still mounted once the hung umount ended
	}{
		{name: "umount finishes late", umounts: 1},
		{name: "umount fails late", outcome: errors.New("umount: killed"), umounts: 2, stillMnt: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-hung-umount"
			e.newVolume(t, id, 64<<20)
			c := nodeMountCap("ext4", snw)
			staging := e.path(id, "staging")
			must(t, e.stage(id, c))

			s := stallOn(t, e, "unmount", staging)
			nodeWantCode(t, returnsWithin(t, func() error { return e.unstageCtx(expireWhenStalled(s), id) }), codes.DeadlineExceeded)
			if mps := mountsUnder(t, e.base); len(mps) != 1 || mps[0] != staging {
				t.Fatalf("mounts while the umount hangs: %v", mps)
			}
			if !e.attached(id) {
				t.Fatal("disconnected while its umount hangs")
			}

			err := e.unstageCtx(expired(), id)
			nodeWantCode(t, err, codes.DeadlineExceeded)
			if !strings.Contains(err.Error(), "still running") {
				t.Fatalf("a retry during the hang says %q", err)
			}
			if n := s.count("unmount", staging); n != 1 {
				t.Fatalf("%d umounts of the staging path while the first one hangs, want 1", n)
			}
			if !e.attached(id) {
				t.Fatal("a retry disconnected the volume while its umount hangs")
			}

			s.release <- tc.outcome
			<-waitUnmountDone(e, id)
			if got := len(mountsUnder(t, e.base)) == 1; got != tc.stillMnt {
				t.Fatalf("staging still mounted once the hung umount ended: %v, want %v", got, tc.stillMnt)
			}
			must(t, e.unstage(id))
			if mps := mountsUnder(t, e.base); len(mps) != 0 {
				t.Fatalf("left mounted: %v", mps)
			}
			if e.attached(id) {
				t.Fatal("device still attached after the retried unstage")
			}
			if n := s.count("unmount", staging); n != tc.umounts {
				t.Fatalf("%d umounts of the staging path, want %d", n, tc.umounts)
			}
			if _, err := os.Stat(staging); err != nil {
				t.Fatalf("the staging directory belongs to the CO: %v", err)
			}
		})
	}
}

// waitUnmountDone returns a channel closed once no operation is left running for the volume.
func waitUnmountDone(e *nodeEnv, id string) <-chan struct{} {
	e.ns.pendingMu.Lock()
	p := e.ns.pending[id]
	e.ns.pendingMu.Unlock()
	if p == nil {
		done := make(chan struct{})
		close(done)
		return done
	}
	return p.done
}

// TestNodeLoopStageAfterHungMount: a mount that hangs makes NodeStageVolume return
// DeadlineExceeded; an unstage during the hang changes nothing (it would otherwise find the
// staging path empty, disconnect, and have the late mount appear on a disconnected device); once
// the mount ends, unstage removes it, and a retried stage succeeds without formatting again.
func TestNodeLoopStageAfterHungMount(t *testing.T) {
	e := newNodeEnv(t)
	id := "pvc-hung-mount"
	e.newVolume(t, id, 64<<20)
	c := nodeMountCap("ext4", snw)
	staging := e.path(id, "staging")

	s := stallOn(t, e, "mount", staging)
	nodeWantCode(t, returnsWithin(t, func() error { return e.stageCtx(expireWhenStalled(s), id, c) }), codes.DeadlineExceeded)
	if !e.exec.ran("mkfs.ext4") {
		t.Fatal("the volume was not formatted before its mount hung")
	}
	// This time the node's own mount timeout ends the wait, not the call's deadline: the call
	// could go on, and must not.
	e.ns.mountTimeout = 50 * time.Millisecond
	err := e.unstage(id)
	e.ns.mountTimeout = time.Minute
	nodeWantCode(t, err, codes.DeadlineExceeded)
	if !strings.Contains(err.Error(), "still running") {
		t.Fatalf("an unstage during the hang says %q", err)
	}
	if !e.attached(id) {
		t.Fatal("unstage disconnected the volume while its mount hangs")
	}

	s.release <- nil // the mount happens, late
	must(t, e.unstage(id))
	if mps := mountsUnder(t, e.base); len(mps) != 0 {
		t.Fatalf("the late mount survived the unstage: %v", mps)
	}
	if e.attached(id) {
		t.Fatal("device still attached after unstage")
	}

	e.exec.commands = nil
	must(t, e.stage(id, c))
	if e.exec.ran("mkfs") {
		t.Fatalf("the retried stage formatted the volume again: %v", e.exec.commands)
	}
	must(t, os.WriteFile(filepath.Join(staging, "f"), []byte("x"), 0o644))
	must(t, e.unstage(id))
}
