package rds

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/routeros"
)

// A storage operation under test: setup prepares the RDS, op runs the operation, and check says
// whether the RDS now holds what a success promised.
type cutCase struct {
	name  string
	setup func(t *testing.T, s *Storage)
	op    func(ctx context.Context, s *Storage) error
	check func(t *testing.T, s *Storage, ts *rdssim.TestServer)
}

const (
	cutSrc  = "pvc-c0000000-0000-0000-0000-000000000001"
	cutDst  = "pvc-c0000000-0000-0000-0000-000000000002"
	cutSize = int64(8 << 20)
)

func mustCreate(t *testing.T, s *Storage, slot string, size int64) {
	t.Helper()
	if _, err := s.CreateDisk(context.Background(), spec(slot, size)); err != nil {
		t.Fatalf("setup: CreateDisk(%s): %v", slot, err)
	}
}

// wantDisk fails unless slot exists with size bytes and its file has exactly that size.
func wantDisk(t *testing.T, ts *rdssim.TestServer, slot string, size int64) {
	t.Helper()
	for _, d := range ts.Disks() {
		if d.Slot == slot {
			if d.FileSize != size {
				t.Fatalf("disk %s is %d bytes, want %d", slot, d.FileSize, size)
			}
			if st, err := os.Stat(ts.HostPath(d.FilePath)); err != nil || st.Size() != size {
				t.Fatalf("file of %s: %v (%v), want %d bytes", slot, st, err, size)
			}
			return
		}
	}
	t.Fatalf("disk %s missing on the RDS; disks: %+v", slot, ts.Disks())
}

// wantGone fails unless neither the disk nor its file exists.
func wantGone(t *testing.T, ts *rdssim.TestServer, slot string) {
	t.Helper()
	for _, d := range ts.Disks() {
		if d.Slot == slot {
			t.Fatalf("disk %s still on the RDS", slot)
		}
	}
	if _, err := os.Stat(ts.HostPath(spec(slot, 1).FilePath)); !os.IsNotExist(err) {
		t.Fatalf("file of %s still on the RDS (%v)", slot, err)
	}
}

func cutCases() []cutCase {
	none := func(*testing.T, *Storage) {}
	withSrc := func(t *testing.T, s *Storage) { mustCreate(t, s, cutSrc, cutSize) }
	return []cutCase{
		{"create", none,
			func(ctx context.Context, s *Storage) error {
				d, err := s.CreateDisk(ctx, spec(cutDst, cutSize))
				if routeros.IsAlreadyExists(err) && d != nil && d.Size == cutSize {
					return nil // a retried create that finds its disk is a success
				}
				return err
			},
			func(t *testing.T, _ *Storage, ts *rdssim.TestServer) { wantDisk(t, ts, cutDst, cutSize) }},
		{"get", withSrc,
			func(ctx context.Context, s *Storage) error {
				d, err := s.GetDisk(ctx, cutSrc)
				if err == nil && (d.Slot != cutSrc || d.Size != cutSize) {
					return fmt.Errorf("GetDisk returned %+v", d)
				}
				return err
			},
			func(*testing.T, *Storage, *rdssim.TestServer) {}},
		{"list", withSrc,
			func(ctx context.Context, s *Storage) error {
				ds, err := s.ListDisks(ctx, "pvc-")
				if err == nil && (len(ds) != 1 || ds[0].Slot != cutSrc) {
					return fmt.Errorf("ListDisks returned %+v", ds)
				}
				return err
			},
			func(*testing.T, *Storage, *rdssim.TestServer) {}},
		{"resize", withSrc,
			func(ctx context.Context, s *Storage) error {
				d, err := s.ResizeDisk(ctx, cutSrc, 2*cutSize)
				if err == nil && d.Size != 2*cutSize {
					return fmt.Errorf("ResizeDisk returned %+v", d)
				}
				return err
			},
			func(t *testing.T, _ *Storage, ts *rdssim.TestServer) { wantDisk(t, ts, cutSrc, 2*cutSize) }},
		{"copy", withSrc,
			func(ctx context.Context, s *Storage) error {
				sp := spec(cutDst, 0)
				sp.Export = false
				d, err := s.CopyDisk(ctx, cutSrc, sp)
				if routeros.IsAlreadyExists(err) && d != nil {
					return nil
				}
				return err
			},
			func(t *testing.T, _ *Storage, ts *rdssim.TestServer) {
				wantDisk(t, ts, cutDst, cutSize)
				a, _ := os.ReadFile(ts.HostPath(spec(cutSrc, 1).FilePath))
				b, _ := os.ReadFile(ts.HostPath(spec(cutDst, 1).FilePath))
				if !bytes.Equal(a, b) {
					t.Fatal("the copy's content differs from its source")
				}
			}},
		{"delete", withSrc,
			func(ctx context.Context, s *Storage) error {
				return s.DeleteDisk(ctx, cutSrc, spec(cutSrc, 1).FilePath)
			},
			func(t *testing.T, _ *Storage, ts *rdssim.TestServer) { wantGone(t, ts, cutSrc) }},
		{"pending copies (file listing)", withSrc,
			func(ctx context.Context, s *Storage) error {
				p, err := s.PendingCopies(ctx, "pvc-")
				if err == nil && len(p) != 0 {
					return fmt.Errorf("PendingCopies = %v, want none", p)
				}
				return err
			},
			func(*testing.T, *Storage, *rdssim.TestServer) {}},
		{"pool capacity", none,
			func(ctx context.Context, s *Storage) error {
				c, err := s.PoolCapacity(ctx, "storage-pool")
				if err == nil && c.Total <= 0 {
					return fmt.Errorf("PoolCapacity = %+v", c)
				}
				return err
			},
			func(*testing.T, *Storage, *rdssim.TestServer) {}},
	}
}

// retryable is what a failure caused by a cut connection may be: anything else would make the CO
// give up or act on a wrong answer.
func retryable(err error) bool {
	switch routeros.KindOf(err) {
	case routeros.KindUnavailable, routeros.KindDeadlineExceeded, routeros.KindBusy:
		return true
	}
	return false
}

// TestStorageCutAtEveryCommand cuts each command of each storage operation in each way (the
// command never runs; it runs and the connection drops; it runs and the session ends mid-output
// without an exit status). Afterwards the call either succeeded and the RDS holds what it
// promised, or it failed with a retryable error and a retry converges.
func TestStorageCutAtEveryCommand(t *testing.T) {
	modes := []rdssim.CutMode{rdssim.CutBeforeRun, rdssim.CutAfterRun, rdssim.CutMidOutput}
	for _, c := range cutCases() {
		t.Run(c.name, func(t *testing.T) {
			// A clean run counts the operation's commands.
			s, ts := newStorage(t)
			c.setup(t, s)
			before := ts.Stats().Commands
			if err := c.op(context.Background(), s); err != nil {
				t.Fatalf("clean run: %v", err)
			}
			c.check(t, s, ts)
			n := int(ts.Stats().Commands - before)
			if n == 0 {
				t.Fatal("the operation sent no command")
			}
			for i := 1; i <= n; i++ {
				for _, mode := range modes {
					t.Run(fmt.Sprintf("command %d of %d %s", i, n, mode), func(t *testing.T) {
						s, ts := newStorage(t)
						c.setup(t, s)
						ts.CutCommand(i, mode)
						ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
						defer cancel()
						err := c.op(ctx, s)
						ts.CutCommand(0, mode)
						if err == nil {
							c.check(t, s, ts)
							return
						}
						if !retryable(err) {
							t.Fatalf("cut gave a non-retryable error (%s): %v", routeros.KindOf(err), err)
						}
						retryUntilOK(t, func() error { return c.op(ctx, s) })
						c.check(t, s, ts)
					})
				}
			}
		})
	}
}

// retryUntilOK retries op, as a CO does, while it fails with retryable errors (the client
// reconnects in the background), and fails the test on any other error or after 50 attempts.
func retryUntilOK(t *testing.T, op func() error) {
	t.Helper()
	var err error
	for attempt := 0; attempt < 50; attempt++ {
		if err = op(); err == nil {
			return
		}
		if !retryable(err) {
			t.Fatalf("retry %d failed with a non-retryable error (%s): %v", attempt, routeros.KindOf(err), err)
		}
		time.Sleep(20 * time.Millisecond) // a CO's retry backoff, not a wait for a condition
	}
	t.Fatalf("no success after 50 retries: %v", err)
}

// TestClientExitMissingIsUnavailable: a session that closes without an exit status after part of
// its output is never read as an answer, even though the connection stays up.
func TestClientExitMissingIsUnavailable(t *testing.T) {
	s, ts := newStorage(t)
	mustCreate(t, s, cutSrc, cutSize)
	ts.CutCommand(1, rdssim.CutMidOutput)
	_, err := s.GetDisk(context.Background(), cutSrc)
	if routeros.KindOf(err) != routeros.KindUnavailable {
		t.Fatalf("GetDisk after a session without exit status = %v, want Unavailable", err)
	}
	if d, err := s.GetDisk(context.Background(), cutSrc); err != nil || d.Size != cutSize {
		t.Fatalf("GetDisk afterwards = %+v, %v", d, err)
	}
}
