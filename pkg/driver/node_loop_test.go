package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

func TestNodeLoopFilesystemLifecycle(t *testing.T) {
	for _, fs := range []string{"ext4", "xfs"} {
		t.Run(fs, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-life-" + fs
			e.newVolume(t, id, 512<<20)
			c := nodeMountCap(fs, snw)

			must(t, e.stage(id, c))
			dev := e.device(t, id)
			if got := blkidValue(t, dev, "TYPE"); got != fs {
				t.Fatalf("blank device formatted as %q, want %s", got, fs)
			}
			uuid := blkidValue(t, dev, "UUID")

			other := map[string]string{"ext4": "xfs", "xfs": "ext4"}[fs]
			nodeWantCode(t, e.stage(id, nodeMountCap(other, snw)), codes.AlreadyExists)
			e.exec.commands = nil
			must(t, e.stage(id, c)) // a healthy staged volume: nothing to do
			if e.exec.ran("mkfs") || e.exec.ran("blkid") {
				t.Fatalf("second stage ran %v", e.exec.commands)
			}

			target := e.path(id, "pod-a", "mount")
			must(t, os.MkdirAll(filepath.Dir(target), 0o750))
			must(t, e.publish(id, target, c, false))
			must(t, e.publish(id, target, c, false)) // idempotent
			must(t, os.WriteFile(filepath.Join(target, "data.txt"), []byte("kept across restage"), 0o644))

			roTarget := e.path(id, "pod-b", "mount")
			must(t, e.publish(id, roTarget, c, true))
			if b, err := os.ReadFile(filepath.Join(roTarget, "data.txt")); err != nil || string(b) != "kept across restage" {
				t.Fatalf("read through the read-only target: %q, %v", b, err)
			}
			err := os.WriteFile(filepath.Join(roTarget, "nope.txt"), []byte("x"), 0o644)
			if !errors.Is(err, syscall.EROFS) {
				t.Fatalf("write through a read-only publish: %v, want EROFS", err)
			}
			nodeWantCode(t, e.publish(id, roTarget, c, false), codes.AlreadyExists)

			st, err := e.ns.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
			must(t, err)
			var bytes, inodes *csi.VolumeUsage
			for _, u := range st.GetUsage() {
				switch u.GetUnit() {
				case csi.VolumeUsage_BYTES:
					bytes = u
				case csi.VolumeUsage_INODES:
					inodes = u
				}
			}
			if bytes == nil || bytes.Total < 400<<20 || bytes.Total > 512<<20 || bytes.Used <= 0 || bytes.Available <= 0 {
				t.Fatalf("byte usage %v", bytes)
			}
			if inodes == nil || inodes.Total <= 0 || inodes.Used <= 0 {
				t.Fatalf("inode usage %v", inodes)
			}
			h, err := e.ns.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: id, VolumePublishPath: target, StagingTargetPath: e.path(id, "staging")})
			must(t, err)
			if len(h.GetVolumeHealth().GetHealthStatuses()) != 0 {
				t.Fatalf("healthy volume reported %v", h.GetVolumeHealth().GetHealthStatuses())
			}

			for _, tg := range []string{target, roTarget} {
				must(t, e.unpublish(id, tg))
				must(t, e.unpublish(id, tg)) // idempotent
				if _, err := os.Lstat(tg); !os.IsNotExist(err) {
					t.Fatalf("target %s left behind: %v", tg, err)
				}
			}
			must(t, e.unstage(id))
			if e.attached(id) {
				t.Fatal("device still attached after unstage")
			}
			must(t, e.unstage(id)) // idempotent

			e.exec.commands = nil
			must(t, e.stage(id, c))
			if e.exec.ran("mkfs") {
				t.Fatal("restage formatted the volume again")
			}
			if got := blkidValue(t, e.device(t, id), "UUID"); got != uuid {
				t.Fatalf("filesystem UUID %q after restage, want %q", got, uuid)
			}
			must(t, e.publish(id, target, c, false))
			if b, err := os.ReadFile(filepath.Join(target, "data.txt")); err != nil || string(b) != "kept across restage" {
				t.Fatalf("data after restage: %q, %v", b, err)
			}
			must(t, e.unpublish(id, target))
			must(t, e.unstage(id))
		})
	}
}

func TestNodeLoopRawBlock(t *testing.T) {
	e := newNodeEnv(t)
	id := "pvc-block"
	e.newVolume(t, id, 64<<20)
	c := nodeBlockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	must(t, e.stage(id, c))
	must(t, e.stage(id, c))
	dev := e.device(t, id)

	target := e.path(id, "pod-a", "dev")
	must(t, e.publish(id, target, c, false))
	must(t, e.publish(id, target, c, false))
	f, err := os.OpenFile(target, os.O_RDWR, 0)
	must(t, err)
	_, err = f.WriteAt([]byte("raw block bytes"), 4096)
	must(t, err)
	must(t, f.Sync())
	must(t, f.Close())
	got := make([]byte, 15)
	f, err = os.Open(dev)
	must(t, err)
	_, err = f.ReadAt(got, 4096)
	_ = f.Close()
	if err != nil || string(got) != "raw block bytes" {
		t.Fatalf("read back through %s: %q, %v", dev, got, err)
	}

	for _, req := range []*csi.NodeGetVolumeHealthRequest{
		{VolumeId: id},
		{VolumeId: id, VolumePublishPath: target, StagingTargetPath: e.path(id, "staging")},
	} {
		h, err := e.ns.NodeGetVolumeHealth(context.Background(), req)
		must(t, err)
		if hs := h.GetVolumeHealth().GetHealthStatuses(); h.GetVolumeHealth().GetVolumeId() != id || len(hs) != 0 {
			t.Fatalf("health of a healthy block volume: %v", h.GetVolumeHealth())
		}
	}
	st, err := e.ns.NodeGetVolumeStats(context.Background(), &csi.NodeGetVolumeStatsRequest{VolumeId: id, VolumePath: target})
	must(t, err)
	if u := st.GetUsage(); len(u) != 1 || u[0].GetTotal() != 64<<20 || u[0].GetUnit() != csi.VolumeUsage_BYTES {
		t.Fatalf("block stats %v", u)
	}

	// Read-only cannot be enforced per bind mount of a device node: not while a writer is there.
	roTarget := e.path(id, "pod-b", "dev")
	nodeWantCode(t, e.publish(id, roTarget, c, true), codes.FailedPrecondition)
	must(t, e.unpublish(id, target))
	must(t, e.publish(id, roTarget, c, true))
	f, err = os.OpenFile(roTarget, os.O_WRONLY, 0)
	if err == nil {
		_, err = f.WriteAt([]byte("x"), 0)
		_ = f.Close()
	}
	if err == nil {
		t.Fatal("wrote through a read-only raw block publish")
	}
	nodeWantCode(t, e.publish(id, target, c, false), codes.FailedPrecondition)
	must(t, e.unpublish(id, roTarget))
	must(t, e.publish(id, target, c, false)) // the last reader is gone: writable again
	must(t, e.unpublish(id, target))
	for _, tg := range []string{target, roTarget} {
		if _, err := os.Lstat(tg); !os.IsNotExist(err) {
			t.Fatalf("target %s left behind: %v", tg, err)
		}
	}
	must(t, e.unstage(id))
	if e.attached(id) {
		t.Fatal("device still attached after unstage")
	}
	if _, err := os.Lstat(blockStagingFile(e.path(id, "staging"), id)); !os.IsNotExist(err) {
		t.Fatalf("staging mark left behind: %v", err)
	}
}

// hasSysResource reports whether this process may grow a mounted ext4 (EXT4_IOC_RESIZE_FS needs
// CAP_SYS_RESOURCE).
func hasSysResource(t *testing.T) bool {
	b, err := os.ReadFile("/proc/self/status")
	must(t, err)
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			must(t, err)
			return caps&(1<<24) != 0 // CAP_SYS_RESOURCE
		}
	}
	return false
}

func TestNodeLoopExpandOnline(t *testing.T) {
	for _, fs := range []string{"xfs", "ext4"} {
		t.Run(fs, func(t *testing.T) {
			e := newNodeEnv(t)
			if fs == "ext4" && !hasSysResource(t) {
				t.Skip("online ext4 grow needs CAP_SYS_RESOURCE (EXT4_IOC_RESIZE_FS), which this sandbox lacks")
			}
			id := "pvc-grow-" + fs
			file := e.newVolume(t, id, 512<<20)
			c := nodeMountCap(fs, snw)
			must(t, e.stage(id, c))
			target := e.path(id, "pod", "mount")
			must(t, e.publish(id, target, c, false))
			before := statfsTotal(t, target)

			must(t, os.Truncate(file, 1<<30)) // the RDS grew the file
			resp, err := e.ns.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{
				VolumeId: id, VolumePath: target, StagingTargetPath: e.path(id, "staging"),
				CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}, VolumeCapability: c,
			})
			must(t, err)
			if resp.GetCapacityBytes() != 1<<30 {
				t.Fatalf("capacity %d, want %d", resp.GetCapacityBytes(), 1<<30)
			}
			if after := statfsTotal(t, target); after < before+400<<20 {
				t.Fatalf("filesystem %d bytes after expand, was %d", after, before)
			}
			// Asking for more than the device has is retried later, not an error of the volume.
			_, err = e.ns.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{
				VolumeId: id, VolumePath: target, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 << 30}})
			nodeWantCode(t, err, codes.Unavailable)
			must(t, e.unpublish(id, target))
			must(t, e.unstage(id))
		})
	}
}

func TestNodeLoopExpandRawBlock(t *testing.T) {
	e := newNodeEnv(t)
	id := "pvc-grow-block"
	file := e.newVolume(t, id, 32<<20)
	c := nodeBlockCap(snw)
	must(t, e.stage(id, c))
	target := e.path(id, "pod", "dev")
	must(t, e.publish(id, target, c, false))
	must(t, os.Truncate(file, 64<<20))
	resp, err := e.ns.NodeExpandVolume(context.Background(), &csi.NodeExpandVolumeRequest{
		VolumeId: id, VolumePath: target, VolumeCapability: c})
	must(t, err)
	if resp.GetCapacityBytes() != 64<<20 {
		t.Fatalf("capacity %d, want %d", resp.GetCapacityBytes(), 64<<20)
	}
	if e.exec.ran("resize2fs") || e.exec.ran("xfs_growfs") {
		t.Fatal("a raw block volume was treated as a filesystem")
	}
	must(t, e.unpublish(id, target))
	must(t, e.unstage(id))
}

func statfsTotal(t *testing.T, p string) int64 {
	t.Helper()
	var st syscall.Statfs_t
	must(t, syscall.Statfs(p, &st))
	return int64(st.Blocks) * int64(st.Bsize)
}
