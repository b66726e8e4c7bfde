package driver

import (
	"bytes"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// TestNodeLoopNeverFormatsOnAGuess: only a positive "blank" from blkid (exit status 2, no output)
// on a device whose first and last MiB read back as zeros leads to mkfs; every other answer fails
// the stage and leaves the device as it was.
func TestNodeLoopNeverFormatsOnAGuess(t *testing.T) {
	const volSize = 512 << 20
	tests := []struct {
		name    string
		prepare func(t *testing.T, file string)     // writes something onto the backing file
		blkid   func(args []string) ([]byte, error) // nil: the real blkid
		// attached runs once the device is attached, before anything reads it.
		attached func(t *testing.T, file, dev string)
		fs       string
		want     codes.Code
		wantMsg  string // in the error message
	}{
		// blkid -p exits 2 with no output on a device it cannot read, exactly as on a blank one:
		// a loop device whose backing file shrank after the attach fails reads past the new end
		// with EIO, as an NVMe namespace does when its path goes away.
		{name: "device unreadable", want: codes.Internal, wantMsg: "could not be read", attached: func(t *testing.T, file, dev string) {
			must(t, os.Truncate(file, 0))
			wantBlkidBlank(t, dev)
		}},
		{name: "device unreadable at its end", want: codes.Internal, wantMsg: "could not be read", attached: func(t *testing.T, file, dev string) {
			must(t, os.Truncate(file, 1<<20))
			wantBlkidBlank(t, dev)
		}},
		{name: "unknown data in the first MiB", want: codes.FailedPrecondition, wantMsg: "is not blank", prepare: func(t *testing.T, file string) {
			writeAt(t, file, bytes.Repeat([]byte("user data, no signature "), 100), 300<<10)
		}, attached: func(t *testing.T, _, dev string) { wantBlkidBlank(t, dev) }},
		{name: "unknown data in the last MiB", want: codes.FailedPrecondition, wantMsg: "is not blank", prepare: func(t *testing.T, file string) {
			writeAt(t, file, []byte{0x01}, volSize-1)
		}, attached: func(t *testing.T, _, dev string) { wantBlkidBlank(t, dev) }},
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
			file := e.newVolume(t, id, volSize)
			if tc.prepare != nil {
				tc.prepare(t, file)
			}
			if tc.blkid != nil {
				e.exec.answer["blkid"] = tc.blkid
			}
			var before []byte
			e.ns.initiator = &hookInitiator{Initiator: e.loop, connected: func(dev string) {
				if tc.attached != nil {
					tc.attached(t, file, dev)
				}
				before = fileEdges(t, file)
			}}
			fs := tc.fs
			if fs == "" {
				fs = "ext4"
			}
			err := e.stage(id, nodeMountCap(fs, snw))
			nodeWantCode(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tc.wantMsg)
			}
			if e.exec.ran("mkfs") {
				t.Fatalf("mkfs ran: %v", e.exec.commands)
			}
			if !bytes.Equal(before, fileEdges(t, file)) {
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

// fileEdges returns the size and the first and last MiB of the file (as much as there is), where
// every signature and superblock lives.
func fileEdges(t *testing.T, file string) []byte {
	t.Helper()
	f, err := os.Open(file)
	must(t, err)
	defer f.Close()
	fi, err := f.Stat()
	must(t, err)
	size := fi.Size()
	head := make([]byte, min(size, 1<<20))
	_, err = f.ReadAt(head, 0)
	must(t, err)
	tail := make([]byte, min(size, 1<<20))
	_, err = f.ReadAt(tail, size-int64(len(tail)))
	must(t, err)
	return append(append([]byte(strconv.FormatInt(size, 10)+":"), head...), tail...)
}

// wantBlkidBlank checks that blkid -p, on its own, would let dev be formatted (exit status 2, no
// output): what stops the stage in these cases is the driver's own read of the device.
func wantBlkidBlank(t *testing.T, dev string) {
	t.Helper()
	out, err := exec.Command("blkid", "-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", dev).CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 2 || len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("blkid -p %s = %q, %v; the test needs a device blkid calls blank", dev, out, err)
	}
}

// hookInitiator runs connected once a volume is attached, before the node service reads it.
type hookInitiator struct {
	nvme.Initiator
	connected func(dev string)
}

func (h *hookInitiator) Connect(ctx context.Context, tg nvme.Target) (string, error) {
	dev, err := h.Initiator.Connect(ctx, tg)
	if err == nil && h.connected != nil {
		h.connected(dev)
	}
	return dev, err
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
			e.ns.mounter = &statHook{Mounter: e.ns.mounter, stat: func(p string) (os.FileInfo, error) {
				if p == staging && once.CompareAndSwap(false, true) {
					return nil, &os.PathError{Op: "stat", Path: p, Err: syscall.ENOTCONN}
				}
				return os.Stat(p)
			}}
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
				h, err := e.ns.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: id, StagingTargetPath: staging})
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

// statHook makes the real Mounter's Stat answer what the test says.
type statHook struct {
	Mounter
	stat func(string) (os.FileInfo, error)
}

func (h *statHook) Stat(p string) (os.FileInfo, error) { return h.stat(p) }

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
	h, err := e.ns.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{
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
