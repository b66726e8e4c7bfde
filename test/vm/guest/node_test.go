//go:build vmguest

package guest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"

	"github.com/srvlab/rds-csi/pkg/driver"
)

// A volume written, unstaged and staged again over NVMe/TCP holds what was written; the namespace
// is a real NVMe device, and after unstage no controller of its NQN remains.
func TestStageWriteUnstageRestage(t *testing.T) {
	for _, fs := range []struct {
		name string
		size int64
	}{{"ext4", 64 << 20}, {"xfs", 320 << 20}} {
		t.Run(fs.name, func(t *testing.T) {
			e := start(t)
			v := e.create(t, "restage-"+fs.name, fs.size, mountCap(fs.name), nil)
			e.attach(t, v)
			if dev := device(t, v); !strings.HasPrefix(dev, "/dev/nvme") {
				t.Fatalf("staged from %s, not an NVMe namespace", dev)
			}
			data := randomBytes(t, 1<<20)
			writeSynced(t, filepath.Join(v.target, "data.bin"), data)
			e.detach(t, v)
			assertDisconnected(t, v.id)
			e.attach(t, v)
			readEqual(t, filepath.Join(v.target, "data.bin"), data)
		})
	}
}

// An ext4 volume grows while mounted: the RDS file grows, the target revalidates the namespace,
// the node rescans it and resize2fs grows the mounted filesystem; the data stays.
func TestExt4OnlineExpansion(t *testing.T) {
	e := start(t)
	v := e.create(t, "grow-ext4", 64<<20, mountCap("ext4"), nil)
	e.attach(t, v)
	data := randomBytes(t, 1<<20)
	writeSynced(t, filepath.Join(v.target, "data.bin"), data)
	var before unix.Statfs_t
	if err := unix.Statfs(v.target, &before); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const newSize = 192 << 20
	cr, err := e.ctl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.id,
		CapacityRange: &csi.CapacityRange{RequiredBytes: newSize}, VolumeCapability: v.cap})
	if err != nil {
		t.Fatalf("ControllerExpandVolume: %v", err)
	}
	if !cr.NodeExpansionRequired {
		t.Fatal("ControllerExpandVolume says no node expansion is needed for a filesystem volume")
	}
	nr, err := e.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: v.id, VolumePath: v.target,
		StagingTargetPath: v.stage, CapacityRange: &csi.CapacityRange{RequiredBytes: newSize}, VolumeCapability: v.cap})
	if err != nil {
		t.Fatalf("NodeExpandVolume: %v", err)
	}
	if nr.CapacityBytes < newSize {
		t.Fatalf("NodeExpandVolume reports %d bytes, want at least %d", nr.CapacityBytes, newSize)
	}
	var after unix.Statfs_t
	if err := unix.Statfs(v.target, &after); err != nil {
		t.Fatal(err)
	}
	grown := int64(after.Blocks) * after.Bsize
	if was := int64(before.Blocks) * before.Bsize; grown < was+100<<20 {
		t.Fatalf("the mounted ext4 has %d bytes after expansion, %d before: not grown online", grown, was)
	}
	readEqual(t, filepath.Join(v.target, "data.bin"), data)
}

// A raw block volume is the NVMe namespace itself: what is written through the published device
// file is there after unstage and restage.
func TestRawBlockVolume(t *testing.T) {
	e := start(t)
	v := e.create(t, "raw", 64<<20, blockCap, nil)
	e.attach(t, v)
	data := randomBytes(t, 1<<20)
	const off = 17 << 20
	rw := func(write bool) []byte {
		f, err := os.OpenFile(v.target, os.O_RDWR|syscall.O_DIRECT, 0)
		if err != nil {
			t.Fatalf("opening the published device %s: %v", v.target, err)
		}
		defer f.Close()
		fi, err := f.Stat()
		if err != nil || fi.Mode()&os.ModeDevice == 0 {
			t.Fatalf("%s is not a device (%v, %v)", v.target, fi.Mode(), err)
		}
		buf := alignedBuffer(len(data))
		if write {
			copy(buf, data)
			if _, err := f.WriteAt(buf, off); err != nil {
				t.Fatalf("writing the device: %v", err)
			}
			if err := f.Sync(); err != nil {
				t.Fatal(err)
			}
			return nil
		}
		if _, err := f.ReadAt(buf, off); err != nil {
			t.Fatalf("reading the device: %v", err)
		}
		return buf
	}
	rw(true)
	e.detach(t, v)
	assertDisconnected(t, v.id)
	e.attach(t, v)
	if got := rw(false); string(got) != string(data) {
		t.Fatal("the raw block volume does not hold what was written before the restage")
	}
}

// alignedBuffer is a page-aligned buffer, as O_DIRECT wants.
func alignedBuffer(n int) []byte {
	const align = 4096
	b := make([]byte, n+align)
	off := align - int(uintptr(unsafe.Pointer(&b[0]))%align)
	if off == align {
		off = 0
	}
	return b[off : off+n]
}

// Eight volumes staged at once, connected in an order other than the one their devices were first
// numbered in: each mount holds its own volume's data (devices are found by NQN, never by name).
func TestEightVolumesConnectOrder(t *testing.T) {
	e := start(t)
	const n = 8
	vols := make([]*volume, n)
	for i := range vols {
		vols[i] = e.create(t, fmt.Sprintf("many-%d", i), 32<<20, mountCap("ext4"), nil)
	}
	first := map[string]string{}
	for _, v := range vols {
		e.attach(t, v)
		writeSynced(t, filepath.Join(v.target, "id"), []byte(v.id))
		first[v.id] = device(t, v)
	}
	for _, v := range vols {
		e.detach(t, v)
		assertDisconnected(t, v.id)
	}
	// The first half is staged one by one in reverse; the rest all at once.
	for i := n - 1; i >= n/2; i-- {
		e.attach(t, vols[i])
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, v := range vols[:n/2] {
		wg.Go(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			if err := e.stage(ctx, v); err != nil {
				errs <- fmt.Errorf("NodeStage %s: %v", v.id, err)
				return
			}
			if err := e.publish(ctx, v); err != nil {
				errs <- fmt.Errorf("NodePublish %s: %v", v.id, err)
			}
		})
		t.Cleanup(func() { e.detach(t, v) })
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	moved := 0
	for _, v := range vols {
		got, err := os.ReadFile(filepath.Join(v.target, "id"))
		if err != nil {
			t.Fatalf("reading the data of %s: %v", v.id, err)
		}
		if string(got) != v.id {
			t.Fatalf("the mount of %s (device %s) holds the data of %s", v.id, device(t, v), got)
		}
		if device(t, v) != first[v.id] {
			moved++
		}
	}
	if moved == 0 {
		t.Fatal("every volume got its first device name again: the test did not change the numbering")
	}
	t.Logf("%d of %d volumes on another device than at first", moved, n)
}

// Reads of the namespace fail (on the target it is backed by a device-mapper error device): the
// node service does not format it. mkfs is wrapped to record every call; once the namespace is
// backed by the volume's file again, the same stage formats it, which shows that the record works.
func TestUnreadableDeviceIsNeverFormatted(t *testing.T) {
	e := start(t)
	log := recordMkfs(t)
	v := e.create(t, "unreadable", 64<<20, mountCap("ext4"), nil)
	file := e.ts.HostPath(v.filePath)
	nsDir := filepath.Join("/sys/kernel/config/nvmet/subsystems", v.pubCtx[driver.ContextNQN], "namespaces", "1")
	if got := readAttr(t, filepath.Join(nsDir, "device_path")); got != file {
		t.Fatalf("the simulator exports %s from %q, not from its file %s", v.id, got, file)
	}
	const dm = "rdsvm-error"
	run(t, "dmsetup", "create", dm, "--table", fmt.Sprintf("0 %d error", (64<<20)/512))
	t.Cleanup(func() { _, _ = runErr("dmsetup", "remove", "--retry", dm) })
	swap := func(dev string) {
		t.Helper()
		writeAttr(t, filepath.Join(nsDir, "enable"), "0")
		writeAttr(t, filepath.Join(nsDir, "device_path"), dev)
		writeAttr(t, filepath.Join(nsDir, "enable"), "1")
	}
	swap("/dev/mapper/" + dm)
	restored := false
	t.Cleanup(func() {
		if !restored {
			e.detach(t, v)
			swap(file)
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	err := e.stage(ctx, v)
	if err == nil {
		t.Fatal("NodeStage of a volume that cannot be read succeeded")
	}
	t.Logf("NodeStage refused: %v", err)
	if calls := readLog(t, log); calls != "" {
		t.Fatalf("mkfs ran on a device whose reads fail:\n%s", calls)
	}
	e.detach(t, v)
	assertDisconnected(t, v.id)
	swap(file)
	restored = true

	e.attach(t, v)
	calls := readLog(t, log)
	if n := strings.Count(calls, "\n"); n != 1 || !strings.Contains(calls, "/dev/nvme") {
		t.Fatalf("the readable blank volume should have been formatted once, mkfs calls:\n%s", calls)
	}
}

// recordMkfs puts mkfs wrappers first on PATH (the node service looks mkfs up on each call); each
// call is appended to the returned log file before the real mkfs runs.
func recordMkfs(t *testing.T) string {
	dir := t.TempDir()
	log := filepath.Join(dir, "mkfs.log")
	for _, tool := range []string{"mkfs.ext4", "mkfs.xfs", "mke2fs"} {
		real, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		script := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\nexec %s \"$@\"\n", tool, log, real)
		if err := os.WriteFile(filepath.Join(dir, tool), []byte(script), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return log
}

func readLog(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	return string(b)
}

func readAttr(t *testing.T, p string) string {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(b))
}

func writeAttr(t *testing.T, p, v string) {
	t.Helper()
	if err := os.WriteFile(p, []byte(v), 0); err != nil {
		t.Fatalf("writing %q to %s: %v", v, p, err)
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := runErr(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return out
}

func runErr(name string, args ...string) (string, error) {
	out, err := exec.Command(name, args...).CombinedOutput()
	return string(out), err
}
