package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// TestNodeLoopNeverFormatsOnAGuess: only a positive "blank" from blkid (exit status 2, no output)
// leads to mkfs; every other answer fails the stage and leaves the device as it was.
func TestNodeLoopNeverFormatsOnAGuess(t *testing.T) {
	tests := []struct {
		name    string
		prepare func(t *testing.T, file string)     // writes something onto the backing file
		blkid   func(args []string) ([]byte, error) // nil: the real blkid
		fs      string
		want    codes.Code
	}{
		{name: "blkid fails", want: codes.Internal, blkid: func([]string) ([]byte, error) {
			return []byte("blkid: error: /dev/loop9: Input/output error"), testingexec.FakeExitError{Status: 4}
		}},
		{name: "blkid killed by its deadline", want: codes.Internal, blkid: func([]string) ([]byte, error) {
			return nil, testingexec.FakeExitError{Status: -1}
		}},
		{name: "blkid exit 2 with output", want: codes.Internal, blkid: func([]string) ([]byte, error) {
			return []byte("blkid: probing ambivalent"), testingexec.FakeExitError{Status: 2}
		}},
		{name: "blkid ok without a type", want: codes.Internal, blkid: func([]string) ([]byte, error) {
			return []byte("USAGE=other\n"), nil
		}},
		{name: "blkid ok with nothing", want: codes.Internal, blkid: func([]string) ([]byte, error) { return nil, nil }},
		{name: "blkid cannot run", want: codes.Internal, blkid: func([]string) ([]byte, error) { return nil, errors.New("executable file not found") }},
		{name: "partition table", want: codes.FailedPrecondition, prepare: func(t *testing.T, file string) {
			mbr := make([]byte, 512)
			copy(mbr[446:], []byte{0x80, 0, 2, 0, 0x83, 0, 0, 0, 1, 0, 0, 0, 0, 0x10, 0, 0})
			mbr[510], mbr[511] = 0x55, 0xaa
			writeAt(t, file, mbr, 0)
		}},
		{name: "another filesystem", fs: "ext4", want: codes.FailedPrecondition, prepare: func(t *testing.T, file string) {
			if out, err := exec.Command("mkfs.xfs", "-q", "-f", file).CombinedOutput(); err != nil {
				t.Fatalf("mkfs.xfs: %v %s", err, out)
			}
		}},
		{name: "swap signature", fs: "xfs", want: codes.FailedPrecondition, prepare: func(t *testing.T, file string) {
			writeAt(t, file, []byte("SWAPSPACE2"), 4096-10)
			writeAt(t, file, []byte{1, 0, 0, 0, 0xff, 0x7f, 0, 0}, 1024) // version 1, last page
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-guess"
			file := e.newVolume(t, id, 512<<20)
			if tc.prepare != nil {
				tc.prepare(t, file)
			}
			if tc.blkid != nil {
				e.exec.answer["blkid"] = tc.blkid
			}
			before := checksumHead(t, file)
			fs := tc.fs
			if fs == "" {
				fs = "ext4"
			}
			err := e.stage(id, nodeMountCap(fs, snw))
			nodeWantCode(t, err, tc.want)
			if e.exec.ran("mkfs") {
				t.Fatalf("mkfs ran: %v", e.exec.commands)
			}
			if !bytes.Equal(before, checksumHead(t, file)) {
				t.Fatal("the device was written to")
			}
			if mps := mountsUnder(t, e.base); len(mps) != 0 {
				t.Fatalf("mounted after a failed stage: %v", mps)
			}
		})
	}
}

func writeAt(t *testing.T, file string, b []byte, off int64) {
	t.Helper()
	f, err := os.OpenFile(file, os.O_WRONLY, 0)
	must(t, err)
	_, err = f.WriteAt(b, off)
	must(t, err)
	must(t, f.Close())
}

// checksumHead returns the first MiB of the file, where every signature and superblock lives.
func checksumHead(t *testing.T, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	must(t, err)
	defer f.Close()
	b := make([]byte, 1<<20)
	_, err = f.ReadAt(b, 0)
	must(t, err)
	return b
}

func TestNodeLoopStaleStagingRepair(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, e *nodeEnv, staging string)
		via    string // "stage" or "publish" repairs it
	}{
		{name: "another device mounted on the staging path", via: "stage", break_: mountTmpfsOver},
		{name: "another device mounted, repaired by publish", via: "publish", break_: mountTmpfsOver},
		{name: "mount point unreadable (ENOTCONN)", via: "stage", break_: func(t *testing.T, e *nodeEnv, staging string) {
			var once atomic.Bool
			e.ns.stat = func(p string) (os.FileInfo, error) {
				if p == staging && once.CompareAndSwap(false, true) {
					return nil, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOTCONN}
				}
				return os.Stat(p)
			}
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-stale"
			e.newVolume(t, id, 64<<20)
			c := nodeMountCap("ext4", snw)
			staging := e.path(id, "staging")
			must(t, e.stage(id, c))
			target := e.path(id, "pod", "mount")
			must(t, e.publish(id, target, c, false))
			must(t, os.WriteFile(filepath.Join(target, "f"), []byte("still here"), 0o644))
			must(t, e.unpublish(id, target))

			tc.break_(t, e, staging)
			if tc.via == "publish" {
				h, err := e.d.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: staging})
				must(t, err)
				if hs := h.GetVolumeHealth().GetHealthStatuses(); len(hs) != 1 || hs[0].GetReason() != "StagingMountStale" || hs[0].GetStatus() != csi.VolumeHealthErrorType_INACCESSIBLE {
					t.Fatalf("health of a stale staging mount: %v", hs)
				}
			} else {
				e.exec.commands = nil
				must(t, e.stage(id, c))
				if e.exec.ran("mkfs") {
					t.Fatal("repair formatted the volume")
				}
			}
			must(t, e.publish(id, target, c, false))
			if b, err := os.ReadFile(filepath.Join(target, "f")); err != nil || string(b) != "still here" {
				t.Fatalf("data after repair: %q, %v", b, err)
			}
			if st, _, err := e.ns.checkMount(staging, e.device(t, id), false); err != nil || st != mountedOK {
				t.Fatalf("staging after repair: %v %v", st, err)
			}
			must(t, e.unpublish(id, target))
			must(t, e.unstage(id))
			if mps := mountsUnder(t, e.base); len(mps) != 0 {
				t.Fatalf("left mounted: %v", mps)
			}
		})
	}
}

// mountTmpfsOver replaces the staging mount with something that is not the volume, as a staging
// mount of a vanished, renumbered device looks.
func mountTmpfsOver(t *testing.T, e *nodeEnv, staging string) {
	t.Helper()
	if out, err := exec.Command("umount", staging).CombinedOutput(); err != nil {
		t.Fatalf("umount: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "tmpfs", staging).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs: %v %s", err, out)
	}
}

// goneInitiator pretends the volume's device vanished from the node.
type goneInitiator struct {
	nvme.Initiator
	gone atomic.Bool
}

func (g *goneInitiator) Device(ctx context.Context, nqn string) (string, error) {
	if g.gone.Load() {
		return "", nvme.ErrNotConnected
	}
	return g.Initiator.Device(ctx, nqn)
}

func TestNodeLoopHealthWhenDeviceGone(t *testing.T) {
	e := newNodeEnv(t)
	g := &goneInitiator{Initiator: e.loop}
	e.ns.initiator = g
	id := "pvc-gone"
	e.newVolume(t, id, 64<<20)
	c := nodeMountCap("ext4", snw)
	must(t, e.stage(id, c))
	target := e.path(id, "pod", "mount")
	must(t, e.publish(id, target, c, false))
	g.gone.Store(true)
	h, err := e.d.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{
		VolumeId: id, VolumePublishPath: target, StagingTargetPath: e.path(id, "staging")})
	must(t, err)
	reasons := map[string]bool{}
	for _, s := range h.GetVolumeHealth().GetHealthStatuses() {
		reasons[s.GetReason()] = true
	}
	for _, want := range []string{"DeviceNotFound", "StagingMountStale", "PublishMountStale"} {
		if !reasons[want] {
			t.Fatalf("health %v lacks %s", h.GetVolumeHealth().GetHealthStatuses(), want)
		}
	}
	g.gone.Store(false)
	must(t, e.unpublish(id, target))
	must(t, e.unstage(id))
}

// TestNodeLoopUnstageKeepsADeviceInUse: unstage succeeds once the staging path is clean, but a
// device still mounted elsewhere on the node is not torn away.
func TestNodeLoopUnstageKeepsADeviceInUse(t *testing.T) {
	for _, block := range []bool{false, true} {
		name := map[bool]string{false: "filesystem", true: "block"}[block]
		t.Run(name, func(t *testing.T) {
			e := newNodeEnv(t)
			id := "pvc-inuse"
			e.newVolume(t, id, 64<<20)
			c, target := nodeMountCap("ext4", snw), e.path(id, "pod", "mount")
			if block {
				c, target = nodeBlockCap(snw), e.path(id, "pod", "dev")
			}
			must(t, e.stage(id, c))
			must(t, e.publish(id, target, c, false))
			must(t, e.unstage(id)) // the CO skipped NodeUnpublishVolume
			if !e.attached(id) {
				t.Fatal("a device still mounted at the publish target was disconnected")
			}
			must(t, e.unpublish(id, target))
			must(t, e.unstage(id))
			if e.attached(id) {
				t.Fatal("device still attached once nothing uses it")
			}
		})
	}
}

func TestNodeLoopSingleWriter(t *testing.T) {
	e := newNodeEnv(t)
	id := "pvc-snsw"
	e.newVolume(t, id, 64<<20)
	c := nodeMountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER)
	must(t, e.stage(id, c))
	a, b := e.path(id, "a"), e.path(id, "b")
	must(t, e.publish(id, a, c, false))
	must(t, e.publish(id, a, c, false))
	nodeWantCode(t, e.publish(id, b, c, false), codes.FailedPrecondition)
	multi := nodeMountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_MULTI_WRITER)
	must(t, e.publish(id, b, multi, false))
	must(t, e.unpublish(id, a))
	must(t, e.unpublish(id, b))
	must(t, e.unstage(id))
}

func TestNodeLoopPublishNeedsStage(t *testing.T) {
	e := newNodeEnv(t)
	id := "pvc-unstaged"
	e.newVolume(t, id, 64<<20)
	must(t, os.MkdirAll(e.path(id, "staging"), 0o750))
	nodeWantCode(t, e.publish(id, e.path(id, "t"), nodeMountCap("ext4", snw), false), codes.FailedPrecondition)
	nodeWantCode(t, e.publish(id, e.path(id, "t2"), nodeBlockCap(snw), false), codes.FailedPrecondition)
	// A volume whose backing file does not exist.
	e.files["pvc-missing"] = "/storage-pool/kubernetes-volumes/pvc-missing.img"
	nodeWantCode(t, e.stage("pvc-missing", nodeMountCap("ext4", snw)), codes.NotFound)
}
