package driver

import (
	"bytes"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"unsafe"
)

// attachLoop attaches file as a loop device (buffered, as the loop backend does) until the test
// ends. It skips without root or losetup.
func attachLoop(t *testing.T, file string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root for loop devices")
	}
	if _, err := exec.LookPath("losetup"); err != nil {
		t.Skip("losetup is not installed")
	}
	out, err := exec.Command("losetup", "--find", "--show", "--direct-io=off", file).CombinedOutput()
	if err != nil {
		t.Fatalf("losetup: %v %s", err, out)
	}
	dev := strings.TrimSpace(string(out))
	t.Cleanup(func() {
		if out, err := exec.Command("losetup", "-d", dev).CombinedOutput(); err != nil {
			t.Errorf("losetup -d %s: %v %s", dev, err, out)
		}
	})
	return dev
}

func sparseFile(t *testing.T, size int64) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "disk.img")
	f, err := os.Create(p)
	must(t, err)
	must(t, f.Truncate(size))
	must(t, f.Close())
	return p
}

func TestNodeDeviceEdgesBlank(t *testing.T) {
	const size = 32 << 20
	tests := []struct {
		name      string
		size      int64
		before    func(t *testing.T, file string) // before the attach
		after     func(t *testing.T, file string) // after the attach
		unread    bool                            // errUnreadable expected
		nonZeroAt int64                           // -1: blank expected
	}{
		{name: "blank", size: size, nonZeroAt: -1},
		{name: "first byte", size: size, nonZeroAt: 0, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, 0) }},
		{name: "end of the first MiB", size: size, nonZeroAt: 1<<20 - 1, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, 1<<20-1) }},
		{name: "start of the last MiB", size: size, nonZeroAt: size - 1<<20, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, size-1<<20) }},
		{name: "last byte", size: size, nonZeroAt: size - 1, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, size-1) }},
		// The middle is not read: this is a check for a transient read error, not a scrub.
		{name: "data in the middle only", size: size, nonZeroAt: -1, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, size/2) }},
		{name: "device smaller than two MiB", size: 1536 << 10, nonZeroAt: 1536<<10 - 1, before: func(t *testing.T, f string) { writeAt(t, f, []byte{1}, 1536<<10-1) }},
		{name: "unreadable end", size: size, unread: true, after: func(t *testing.T, f string) { must(t, os.Truncate(f, 4<<20)) }},
		{name: "unreadable everywhere", size: size, unread: true, after: func(t *testing.T, f string) { must(t, os.Truncate(f, 0)) }},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := sparseFile(t, tc.size)
			if tc.before != nil {
				tc.before(t, file)
			}
			dev := attachLoop(t, file)
			if tc.after != nil {
				tc.after(t, file)
			}
			err := deviceEdgesBlank(dev)
			var nb *notBlankError
			switch {
			case tc.unread:
				if !errors.Is(err, errUnreadable) {
					t.Fatalf("deviceEdgesBlank = %v, want errUnreadable", err)
				}
			case tc.nonZeroAt < 0:
				if err != nil {
					t.Fatalf("deviceEdgesBlank = %v, want blank", err)
				}
			case !errors.As(err, &nb) || nb.offset != tc.nonZeroAt:
				t.Fatalf("deviceEdgesBlank = %v, want non-zero data at %d", err, tc.nonZeroAt)
			}
		})
	}
	t.Run("not a device", func(t *testing.T) {
		if err := deviceEdgesBlank(filepath.Join(t.TempDir(), "missing")); !errors.Is(err, errUnreadable) {
			t.Fatalf("deviceEdgesBlank of a missing path = %v", err)
		}
	})
}

func TestNodeAlignedBuffer(t *testing.T) {
	for i := 0; i < 16; i++ {
		b := alignedBuffer(blankEdge, directIOAlign)
		if len(b) != blankEdge || cap(b) != blankEdge {
			t.Fatalf("len %d cap %d", len(b), cap(b))
		}
		if addr := uintptr(unsafe.Pointer(&b[0])); addr%directIOAlign != 0 {
			t.Fatalf("buffer at %#x is not %d-aligned", addr, directIOAlign)
		}
	}
}

// TestNodeLoopFormatsBlankWithoutDiscard: a blank volume is formatted, and mkfs discards nothing.
// mkfs discards the whole device by default, which on a loop device punches the backing file
// empty; a marker written in the middle of the volume (where neither the blank check nor mkfs
// look) is gone then, and survives only when mkfs was told not to discard.
func TestNodeLoopFormatsBlankWithoutDiscard(t *testing.T) {
	for _, tc := range []struct{ fs, option string }{{"ext4", "-E nodiscard"}, {"xfs", "-K"}} {
		t.Run(tc.fs, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-nodiscard-" + tc.fs
			file := e.newVolume(t, id, 512<<20)
			marker := []byte("rds-csi: not discarded")
			const at = 100<<20 + 12345
			writeAt(t, file, marker, at)

			must(t, e.stage(id, nodeMountCap(tc.fs, snw)))
			if got := blkidValue(t, e.device(t, id), "TYPE"); got != tc.fs {
				t.Fatalf("blank device formatted as %q, want %s", got, tc.fs)
			}
			mkfs := e.exec.command("mkfs." + tc.fs)
			if !strings.Contains(mkfs, " "+tc.option+" ") {
				t.Fatalf("mkfs ran as %q, without %s", mkfs, tc.option)
			}
			got := make([]byte, len(marker))
			f, err := os.Open(file)
			must(t, err)
			_, err = f.ReadAt(got, at)
			_ = f.Close()
			must(t, err)
			if !bytes.Equal(got, marker) {
				t.Fatalf("the middle of the volume was discarded by mkfs: %q", got)
			}
			must(t, e.unstage(id))
		})
	}
}
