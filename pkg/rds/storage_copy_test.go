package rds

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/routeros"
)

// copyTime is how long the simulator takes to copy cutSize bytes in these tests: far longer than
// the calls wait, and than the client's command deadline.
const copyTime = 1500 * time.Millisecond

func perGiB(d time.Duration, size int64) time.Duration {
	return time.Duration(float64(d) * float64(1<<30) / float64(size))
}

func copySpec() routeros.DiskSpec {
	sp := spec(cutDst, 0)
	sp.Export = false
	return sp
}

// copies counts the copy commands the RDS received.
func copies(ts *rdssim.TestServer) int {
	n := 0
	for _, c := range ts.Commands() {
		if strings.Contains(c, "copy-from=") {
			n++
		}
	}
	return n
}

// imgFiles lists the .img files in the simulator's data directory.
func imgFiles(t *testing.T, ts *rdssim.TestServer) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir(ts.DataDir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".img") {
			out = append(out, filepath.Base(p))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func sameContent(t *testing.T, ts *rdssim.TestServer, a, b string) {
	t.Helper()
	x, err1 := os.ReadFile(ts.HostPath(spec(a, 1).FilePath))
	y, err2 := os.ReadFile(ts.HostPath(spec(b, 1).FilePath))
	if err1 != nil || err2 != nil || !bytes.Equal(x, y) {
		t.Fatalf("%s and %s differ (%v, %v)", a, b, err1, err2)
	}
}

// writeSource puts recognisable data into the source's file, so a half-made copy shows.
func writeSource(t *testing.T, ts *rdssim.TestServer) {
	t.Helper()
	f, err := os.OpenFile(ts.HostPath(spec(cutSrc, 1).FilePath), os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	for off := int64(0); off < cutSize; off += 1 << 20 {
		if _, err := f.WriteAt(bytes.Repeat([]byte{byte(off>>20) + 1}, 4096), off); err != nil {
			t.Fatal(err)
		}
	}
}

// A copy slower than the call's deadline and than the command deadline: the call fails with
// DeadlineExceeded, the copy goes on, retries join it, and the RDS copies once.
func TestCopySlowerThanTheCallIsMadeOnce(t *testing.T) {
	s, ts := newStorage(t)
	mustCreate(t, s, cutSrc, cutSize)
	writeSource(t, ts)
	ts.SetCopyModel(perGiB(copyTime, cutSize), false)

	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		d, err := s.CopyDisk(ctx, cutSrc, copySpec())
		cancel()
		if err == nil || routeros.IsAlreadyExists(err) && d != nil { // made by this call or found
			if d.Slot != cutDst || d.Size != cutSize {
				t.Fatalf("CopyDisk = %+v", d)
			}
			break
		}
		if routeros.KindOf(err) != routeros.KindDeadlineExceeded {
			t.Fatalf("attempt %d: %v, want DeadlineExceeded while the copy runs", attempt, err)
		}
		if p, err := s.PendingCopies(context.Background(), "pvc-"); err != nil || len(p) != 1 || p[0] != cutDst {
			t.Fatalf("PendingCopies while copying = %v, %v; want [%s]", p, err, cutDst)
		}
		if attempt > 100 { // 20 s of 200 ms calls
			t.Fatal("the copy never finished")
		}
	}
	if n := copies(ts); n != 1 {
		t.Fatalf("the RDS received %d copy commands, want 1", n)
	}
	wantDisk(t, ts, cutDst, cutSize)
	sameContent(t, ts, cutSrc, cutDst)
	// Done: a later call reports the disk and starts nothing.
	if d, err := s.CopyDisk(context.Background(), cutSrc, copySpec()); !routeros.IsAlreadyExists(err) || d == nil {
		t.Fatalf("CopyDisk after completion = %+v, %v; want the disk and AlreadyExists", d, err)
	}
	if n := copies(ts); n != 1 {
		t.Fatalf("the RDS received %d copy commands, want 1", n)
	}
}

// A copy that outlives its own deadline is abandoned; the half-written file it leaves belongs to
// this request and is removed, so that the retry can copy again and nothing leaks.
func TestCopyPastItsDeadlineLeavesNothing(t *testing.T) {
	ts := rdssim.StartForTest(t)
	s := NewStorage(startClient(t, fastConfig(ts)), WithCopyTimeout(300*time.Millisecond))
	mustCreate(t, s, cutSrc, cutSize)
	writeSource(t, ts)
	ts.SetCopyModel(perGiB(copyTime, cutSize), false)

	_, err := s.CopyDisk(context.Background(), cutSrc, copySpec())
	if routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("CopyDisk past its deadline = %v, want DeadlineExceeded", err)
	}
	if got := imgFiles(t, ts); len(got) != 1 {
		t.Fatalf("files after the abandoned copy: %v, want only the source", got)
	}
	// With a faster RDS the retry copies.
	ts.SetCopyModel(perGiB(50*time.Millisecond, cutSize), false)
	if _, err := s.CopyDisk(context.Background(), cutSrc, copySpec()); err != nil {
		t.Fatalf("retry: %v", err)
	}
	wantDisk(t, ts, cutDst, cutSize)
	sameContent(t, ts, cutSrc, cutDst)
	if err := s.DeleteDisk(context.Background(), cutDst, ""); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteDisk(context.Background(), cutSrc, ""); err != nil {
		t.Fatal(err)
	}
	if got := imgFiles(t, ts); len(got) != 0 || len(ts.Disks()) != 0 {
		t.Fatalf("after deletes: files %v, disks %+v", got, ts.Disks())
	}
}

// After a controller restart nothing in memory tells of the copy: the half-written file it left
// (the RDS stopped the copy when its session closed) is found as a pending copy, and the next
// CopyDisk replaces it rather than fail with "file already exists" forever.
func TestCopyCutByRestartIsRedone(t *testing.T) {
	ts := rdssim.StartForTest(t)
	first, err := NewClient(fastConfig(ts))
	if err != nil {
		t.Fatal(err)
	}
	first.Start()
	s1 := NewStorage(first)
	mustCreate(t, s1, cutSrc, cutSize)
	writeSource(t, ts)
	ts.SetCopyModel(perGiB(copyTime, cutSize), false)
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = s1.CopyDisk(ctx, cutSrc, copySpec())
	cancel()
	if routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("first CopyDisk = %v, want DeadlineExceeded", err)
	}
	_ = first.Close() // the controller dies; its session, and so the copy, ends half-way

	s2 := NewStorage(startClient(t, fastConfig(ts)))
	pending, err := s2.PendingCopies(context.Background(), "pvc-")
	if len(pending) != 1 || pending[0] != cutDst {
		t.Fatalf("PendingCopies after restart = %v, %v; want [%s]", pending, err, cutDst)
	}
	ts.SetCopyModel(perGiB(50*time.Millisecond, cutSize), false)
	retryUntilOK(t, func() error { _, err := s2.CopyDisk(context.Background(), cutSrc, copySpec()); return err })
	wantDisk(t, ts, cutDst, cutSize)
	sameContent(t, ts, cutSrc, cutDst)
	if p, err := s2.PendingCopies(context.Background(), "pvc-"); err != nil || len(p) != 0 {
		t.Fatalf("PendingCopies after the copy = %v, %v", p, err)
	}
}

// On an RDS whose copies go on after their session ends, an abandoned copy is never removed
// while it writes (the RDS says the file is in use: Busy), and a retry finds the finished disk.
func TestCopyThatGoesOnByItselfIsFound(t *testing.T) {
	ts := rdssim.StartForTest(t)
	s := NewStorage(startClient(t, fastConfig(ts)), WithCopyTimeout(300*time.Millisecond))
	mustCreate(t, s, cutSrc, cutSize)
	writeSource(t, ts)
	ts.SetCopyModel(perGiB(copyTime, cutSize), true)
	_, err := s.CopyDisk(context.Background(), cutSrc, copySpec())
	if routeros.KindOf(err) != routeros.KindDeadlineExceeded {
		t.Fatalf("CopyDisk past its deadline = %v, want DeadlineExceeded", err)
	}
	deadline := time.Now().Add(20 * time.Second)
	for attempt := 0; ; attempt++ {
		_, err := s.CopyDisk(context.Background(), cutSrc, copySpec())
		if err == nil || routeros.IsAlreadyExists(err) {
			break
		}
		if k := routeros.KindOf(err); k != routeros.KindBusy && k != routeros.KindDeadlineExceeded {
			t.Fatalf("retry %d: %v, want Busy or DeadlineExceeded while the RDS copies", attempt, err)
		}
		if time.Now().After(deadline) {
			t.Fatal("the copy was never found")
		}
		time.Sleep(20 * time.Millisecond) // a CO's retry interval
	}
	if n := copies(ts); n != 1 {
		t.Fatalf("the RDS received %d copy commands, want 1", n)
	}
	wantDisk(t, ts, cutDst, cutSize)
	sameContent(t, ts, cutSrc, cutDst)
}
