package nvme

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

const (
	fileA = "/storage-pool/kubernetes-volumes/pvc-11111111-1111-1111-1111-111111111111.img"
	fileB = "/storage-pool/kubernetes-volumes/pvc-22222222-2222-2222-2222-222222222222.img"
)

// newTestLoop builds a loop initiator over the recorded "loop" tree, with root holding fileA and
// fileB.
func newTestLoop(t *testing.T, r *fakeRunner) (*Loop, string) {
	t.Helper()
	root := t.TempDir()
	root, _ = filepath.EvalSymlinks(root)
	for _, f := range []string{fileA, fileB} {
		p := filepath.Join(root, f)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	sys := t.TempDir()
	copyTree(t, "loop", sys, root)
	l, err := NewLoop(LoopConfig{Root: root, SysfsRoot: sys, DevRoot: "/dev", Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	return l, root
}

func TestLoopDeviceAfterRestart(t *testing.T) {
	tests := []struct {
		nqn, want string
		wantErr   error
	}{
		{nqn: nqnA, want: "/dev/loop0"},
		{nqn: nqnB, want: "/dev/loop3"},       // <slot>.img under the root; loop12's file is elsewhere
		{nqn: nqnC, wantErr: ErrNotConnected}, // its backing file was deleted
		{nqn: "nqn.2001-01.com.example:pvc-1", wantErr: ErrNotConnected},
		{nqn: "bad nqn", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.nqn, func(t *testing.T) {
			r := &fakeRunner{}
			l, _ := newTestLoop(t, r)
			got, err := l.Device(context.Background(), tc.nqn)
			if !errors.Is(err, tc.wantErr) || got != tc.want {
				t.Fatalf("Device = %q, %v; want %q, %v", got, err, tc.want, tc.wantErr)
			}
			sameCalls(t, r.Calls(), nil)
		})
	}
}

func TestLoopConnect(t *testing.T) {
	t.Run("attached file is reused", func(t *testing.T) {
		r := &fakeRunner{}
		l, _ := newTestLoop(t, r)
		dev, err := l.Connect(context.Background(), Target{NQN: nqnA, FilePath: fileA})
		if err != nil || dev != "/dev/loop0" {
			t.Fatalf("Connect = %q, %v", dev, err)
		}
		sameCalls(t, r.Calls(), nil)
	})
	t.Run("new file is attached", func(t *testing.T) {
		r := &fakeRunner{respond: func(string) ([]byte, error) { return []byte("/dev/loop7\n"), nil }}
		l, root := newTestLoop(t, r)
		dev, err := l.Connect(context.Background(), Target{NQN: nqnB, FilePath: fileB})
		if err != nil || dev != "/dev/loop7" {
			t.Fatalf("Connect = %q, %v", dev, err)
		}
		sameCalls(t, r.Calls(), []string{"losetup --find --show --direct-io=off " + filepath.Join(root, fileB)})
		// Once the file is known, only that exact file counts: loop3 holds another pool's file.
		if got, err := l.Device(context.Background(), nqnB); !errors.Is(err, ErrNotConnected) {
			t.Fatalf("Device = %q, %v; want ErrNotConnected (sysfs has no loop for %s)", got, err, fileB)
		}
	})
	for _, tc := range []struct {
		name    string
		target  Target
		out     string
		wantErr error
	}{
		{name: "no file path", target: Target{NQN: nqnB}, wantErr: ErrInvalid},
		{name: "relative file path", target: Target{NQN: nqnB, FilePath: "storage-pool/x.img"}, wantErr: ErrInvalid},
		{name: "escaping file path", target: Target{NQN: nqnB, FilePath: "/storage-pool/../../etc/passwd"}, wantErr: ErrInvalid},
		{name: "missing file", target: Target{NQN: nqnB, FilePath: "/storage-pool/kubernetes-volumes/gone.img"}, wantErr: ErrNotFound},
		{name: "bad NQN", target: Target{NQN: "x", FilePath: fileB}, wantErr: ErrInvalid},
		{name: "losetup prints garbage", target: Target{NQN: nqnB, FilePath: fileB}, out: "/etc/passwd"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{respond: func(string) ([]byte, error) { return []byte(tc.out), nil }}
			l, _ := newTestLoop(t, r)
			_, err := l.Connect(context.Background(), tc.target)
			if err == nil || (tc.wantErr != nil && !errors.Is(err, tc.wantErr)) {
				t.Fatalf("Connect error %v, want %v", err, tc.wantErr)
			}
			if tc.out == "" {
				sameCalls(t, r.Calls(), nil)
			}
		})
	}
}

func TestLoopDisconnectAndRescan(t *testing.T) {
	r := &fakeRunner{}
	l, _ := newTestLoop(t, r)
	r.respond = func(line string) ([]byte, error) { // losetup -d clears the device, as the kernel does
		if dev, ok := strings.CutPrefix(line, "losetup -d /dev/"); ok {
			return nil, os.RemoveAll(filepath.Join(l.cfg.SysfsRoot, "block", dev, "loop"))
		}
		return nil, nil
	}
	ctx := context.Background()
	if err := l.Rescan(ctx, nqnA); err != nil {
		t.Fatal(err)
	}
	if err := l.Rescan(ctx, nqnC); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Rescan of a detached volume: %v", err)
	}
	if err := l.Disconnect(ctx, nqnA); err != nil {
		t.Fatal(err)
	}
	if err := l.Disconnect(ctx, nqnC); err != nil {
		t.Fatalf("Disconnect of a detached volume: %v", err)
	}
	if err := l.Disconnect(ctx, "nqn.2001-01.com.example:pvc-11111111-1111-1111-1111-111111111111"); !errors.Is(err, ErrNotOwned) {
		t.Fatalf("Disconnect of a foreign NQN: %v", err)
	}
	sameCalls(t, r.Calls(), []string{"losetup -c /dev/loop0", "losetup -d /dev/loop0"})
}

// TestLoopReal attaches a sparse file for real.
func TestLoopReal(t *testing.T) {
	root, p := realLoopFile(t, 0)
	if err := os.Truncate(p, 8<<20); err != nil {
		t.Fatal(err)
	}
	l, err := NewLoop(LoopConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		if err := l.Disconnect(context.Background(), nqnA); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	dev, err := l.Connect(ctx, Target{NQN: nqnA, FilePath: fileA})
	if err != nil {
		t.Fatal(err)
	}
	if again, err := l.Connect(ctx, Target{NQN: nqnA, FilePath: fileA}); err != nil || again != dev {
		t.Fatalf("second Connect = %q, %v; want %q", again, err, dev)
	}
	restarted, err := NewLoop(LoopConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	if got, err := restarted.Device(ctx, nqnA); err != nil || got != dev {
		t.Fatalf("Device after a restart = %q, %v; want %q", got, err, dev)
	}
	sizeOf := func() string {
		b, err := os.ReadFile(filepath.Join("/sys/block", filepath.Base(dev), "size"))
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(string(b))
	}
	if got := sizeOf(); got != "16384" {
		t.Fatalf("size %s sectors, want 16384", got)
	}
	if err := os.Truncate(p, 16<<20); err != nil {
		t.Fatal(err)
	}
	if err := restarted.Rescan(ctx, nqnA); err != nil {
		t.Fatal(err)
	}
	if got := sizeOf(); got != "32768" {
		t.Fatalf("size after rescan %s sectors, want 32768", got)
	}
	if err := restarted.Disconnect(ctx, nqnA); err != nil {
		t.Fatal(err)
	}
	if got, err := l.Device(ctx, nqnA); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Device after Disconnect = %q, %v", got, err)
	}
}

// A loop device that something still holds open survives losetup -d until its last close: the
// disconnect is not reported done before the device is gone.
func TestLoopDisconnectWaitsForTheLastClose(t *testing.T) {
	root, _ := realLoopFile(t, 1<<20)
	l, err := NewLoop(LoopConfig{Root: root})
	if err != nil {
		t.Fatal(err)
	}
	dev, err := l.Connect(context.Background(), Target{NQN: nqnA, FilePath: fileA})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = l.Disconnect(context.Background(), nqnA) })
	holder, err := os.Open(dev)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if err := l.Disconnect(ctx, nqnA); err == nil {
		t.Fatal("Disconnect reported success while the device was still held open")
	}
	if got, err := l.Device(context.Background(), nqnA); err != nil || got != dev {
		t.Fatalf("Device while held = %q, %v; want %q", got, err, dev)
	}
	if err := holder.Close(); err != nil {
		t.Fatal(err)
	}
	if err := l.Disconnect(context.Background(), nqnA); err != nil {
		t.Fatalf("Disconnect after the last close: %v", err)
	}
	if got, err := l.Device(context.Background(), nqnA); !errors.Is(err, ErrNotConnected) {
		t.Fatalf("Device after Disconnect = %q, %v", got, err)
	}
}

// realLoopFile skips unless real loop devices can be attached, and returns a root holding fileA
// (size bytes of zeros) and fileA's path.
func realLoopFile(t *testing.T, size int) (root, path string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("attaching loop devices needs root")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed")
	}
	root = t.TempDir()
	path = filepath.Join(root, fileA)
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, make([]byte, size), 0o600); err != nil {
		t.Fatal(err)
	}
	return root, path
}
