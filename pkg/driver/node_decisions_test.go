package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// These tests drive the node's decisions (what to format, when to repair a stale mount, what to
// refuse) over the fake Mounter: no root, no devices, and they run under -short. The loop device
// tests prove the same against the real mount(8), mkfs, blkid and the kernel.

const fakeDev = "/dev/nvme-fake0n1"

type fakeNodeEnv struct {
	ns  *nodeService
	m   *fakeMounter
	ini *fakeInitiator
	dir string
}

func newFakeMountNode(t *testing.T) *fakeNodeEnv {
	t.Helper()
	e := &fakeNodeEnv{m: newFakeMounter(), ini: &fakeInitiator{dev: fakeDev}, dir: t.TempDir()}
	e.m.addDevice(fakeDev, 7001)
	ns, err := newNodeService("node-1", NodeConfig{Initiator: e.ini, Mounter: e.m,
		SysfsRoot: t.TempDir(), StateDir: t.TempDir()})
	must(t, err)
	e.ns = ns
	return e
}

func (e *fakeNodeEnv) staging() string { return filepath.Join(e.dir, "staging") }

func (e *fakeNodeEnv) stage(c *csi.VolumeCapability) error {
	_, err := e.ns.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: vid, StagingTargetPath: e.staging(), VolumeCapability: c,
		PublishContext: map[string]string{ContextNVMeAddress: "10.0.0.5"}})
	return err
}

func (e *fakeNodeEnv) publish(target string, c *csi.VolumeCapability, ro bool) error {
	_, err := e.ns.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: vid, StagingTargetPath: e.staging(), TargetPath: target, VolumeCapability: c, Readonly: ro,
		PublishContext: map[string]string{ContextNVMeAddress: "10.0.0.5"}})
	return err
}

func (e *fakeNodeEnv) unpublish(target string) error {
	_, err := e.ns.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: vid, TargetPath: target})
	return err
}

func (e *fakeNodeEnv) unstage() error {
	_, err := e.ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: vid, StagingTargetPath: e.staging()})
	return err
}

// stagedOn checks that the topmost mount on the staging path is dev with fsType.
func (e *fakeNodeEnv) stagedOn(t *testing.T, dev, fsType string) {
	t.Helper()
	at := e.m.mountsAt(e.staging())
	if len(at) == 0 || at[len(at)-1].Source != dev || at[len(at)-1].FsType != fsType {
		t.Fatalf("staging path holds %+v, want %s as %s", at, dev, fsType)
	}
	if st, why, err := e.ns.checkMount(e.staging(), dev, false); err != nil || st != mountedOK {
		t.Fatalf("checkMount of the staging path: %v %s %v", st, why, err)
	}
}

func (e *fakeNodeEnv) recorded() bool {
	again, _ := e.ns.journal.interrupted(vid)
	return again
}

func TestNodeFakeFormatsABlankDeviceWithoutDiscard(t *testing.T) {
	for _, tc := range []struct{ fs, opts string }{{"ext4", "-E nodiscard"}, {"xfs", "-K"}} {
		t.Run(tc.fs, func(t *testing.T) {
			e := newFakeMountNode(t)
			must(t, e.stage(nodeMountCap(tc.fs, snw)))
			if got := e.m.ran("format"); len(got) != 1 || got[0] != "format "+fakeDev+" "+tc.fs+" "+tc.opts {
				t.Fatalf("formats %q, want one with %s", got, tc.opts)
			}
			if len(e.m.ran("edges")) != 1 {
				t.Fatal("formatted without reading the device's ends back as zeros")
			}
			e.stagedOn(t, fakeDev, tc.fs)
			if e.recorded() {
				t.Fatal("the format record outlived a complete format")
			}
			// Staging again finds the filesystem: nothing is formatted or mounted twice.
			must(t, e.stage(nodeMountCap(tc.fs, snw)))
			if len(e.m.ran("format")) != 1 || len(e.m.ran("mount")) != 0 || len(e.m.mountsAt(e.staging())) != 1 {
				t.Fatalf("a second stage changed something: %q", e.m.calls)
			}
		})
	}
}

// A device blkid calls blank is formatted only when its ends read back as zeros, and never for a
// read-only access mode.
func TestNodeFakeNeverFormatsOnAGuess(t *testing.T) {
	for _, tc := range []struct {
		name    string
		dev     func(d *fakeDevice)
		c       *csi.VolumeCapability
		want    codes.Code
		wantMsg string
	}{
		{name: "unknown data", want: codes.FailedPrecondition, wantMsg: "is not blank",
			dev: func(d *fakeDevice) { d.edges = &notBlankError{dev: fakeDev, offset: 300 << 10} }},
		{name: "unreadable device", want: codes.Internal, wantMsg: "could not be read",
			dev: func(d *fakeDevice) { d.edges = fmt.Errorf("%w: reading at byte 0: EIO", errUnreadable) }},
		{name: "blkid cannot tell", want: codes.Internal, wantMsg: "cannot tell",
			dev: func(d *fakeDevice) {
				d.probe = status.Error(codes.Internal, "cannot tell whether it is blank, so it is left alone")
			}},
		{name: "read-only access mode", want: codes.FailedPrecondition, wantMsg: "read-only",
			c: nodeMountCap("ext4", csi.VolumeCapability_AccessMode_SINGLE_NODE_READER_ONLY)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newFakeMountNode(t)
			if tc.dev != nil {
				tc.dev(e.m.device(fakeDev))
			}
			c := tc.c
			if c == nil {
				c = nodeMountCap("ext4", snw)
			}
			err := e.stage(c)
			nodeWantCode(t, err, tc.want)
			if !strings.Contains(err.Error(), tc.wantMsg) {
				t.Fatalf("error %q does not say %q", err, tc.wantMsg)
			}
			if f := e.m.ran("format"); len(f) > 0 {
				t.Fatalf("formatted: %q", f)
			}
			if len(e.m.mountsAt(e.staging())) != 0 {
				t.Fatal("mounted after a failed stage")
			}
			if e.recorded() {
				t.Fatal("a format was recorded although none began")
			}
		})
	}
}

// Only this node's own interrupted format, proven by its record, excuses a device that is not
// blank; nothing excuses one that cannot be read.
func TestNodeFakeInterruptedFormatIsRedone(t *testing.T) {
	t.Run("the format is killed, then redone", func(t *testing.T) {
		e := newFakeMountNode(t)
		e.m.formatErr = errors.New("mkfs.ext4: signal: killed")
		nodeWantCode(t, e.stage(nodeMountCap("ext4", snw)), codes.Internal)
		if !e.recorded() {
			t.Fatal("no record of the format that was interrupted")
		}
		if e.m.device(fakeDev).edges == nil {
			t.Fatal("the fake did not leave half a filesystem")
		}
		e.m.formatErr = nil
		must(t, e.stage(nodeMountCap("ext4", snw)))
		if f := e.m.ran("format"); len(f) != 2 {
			t.Fatalf("formats %q, want the interrupted one and its redo", f)
		}
		e.stagedOn(t, fakeDev, "ext4")
		if e.recorded() {
			t.Fatal("the record outlived the format that completed")
		}
	})
	t.Run("the record of a format that completed", func(t *testing.T) {
		e := newFakeMountNode(t)
		d := e.m.device(fakeDev)
		d.fsType, d.edges = "ext4", &notBlankError{dev: fakeDev}
		must(t, e.ns.journal.begin(vid, fakeDev))
		must(t, e.stage(nodeMountCap("ext4", snw)))
		if f := e.m.ran("format"); len(f) > 0 {
			t.Fatalf("an existing filesystem was formatted: %q", f)
		}
		e.stagedOn(t, fakeDev, "ext4")
		if e.recorded() {
			t.Fatal("the record of a format that completed was kept")
		}
	})
	t.Run("killed after the superblock: the filesystem does not mount", func(t *testing.T) {
		e := newFakeMountNode(t)
		d := e.m.device(fakeDev)
		d.fsType, d.edges = "ext4", &notBlankError{dev: fakeDev}
		must(t, e.ns.journal.begin(vid, fakeDev))
		e.m.mountErr = errors.New("mount(2) system call failed: Structure needs cleaning")
		err := e.stage(nodeMountCap("ext4", snw))
		nodeWantCode(t, err, codes.FailedPrecondition)
		if !strings.Contains(err.Error(), "never finished") {
			t.Fatalf("error %q does not name the interrupted format", err)
		}
		if f := e.m.ran("format"); len(f) > 0 {
			t.Fatalf("a filesystem that does not mount was formatted on a guess: %q", f)
		}
		if !e.recorded() {
			t.Fatal("the record of the interrupted format was dropped")
		}
	})
	t.Run("no record", func(t *testing.T) {
		e := newFakeMountNode(t)
		e.m.device(fakeDev).edges = &notBlankError{dev: fakeDev, offset: 2048}
		nodeWantCode(t, e.stage(nodeMountCap("ext4", snw)), codes.FailedPrecondition)
		if f := e.m.ran("format"); len(f) > 0 {
			t.Fatalf("unknown data was formatted: %q", f)
		}
	})
	t.Run("a record never excuses an unreadable device", func(t *testing.T) {
		e := newFakeMountNode(t)
		e.m.device(fakeDev).edges = fmt.Errorf("%w: EIO", errUnreadable)
		must(t, e.ns.journal.begin(vid, fakeDev))
		nodeWantCode(t, e.stage(nodeMountCap("ext4", snw)), codes.Internal)
		if f := e.m.ran("format"); len(f) > 0 {
			t.Fatalf("an unreadable device was formatted: %q", f)
		}
	})
}

func TestNodeFakeRefusesAnotherFilesystem(t *testing.T) {
	e := newFakeMountNode(t)
	d := e.m.device(fakeDev)
	d.fsType, d.edges = "xfs", &notBlankError{dev: fakeDev}
	must(t, e.ns.journal.begin(vid, fakeDev)) // not even a record of this node's own format excuses it
	err := e.stage(nodeMountCap("ext4", snw))
	nodeWantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "holds xfs") {
		t.Fatalf("error %q does not name what the volume holds", err)
	}
	if len(e.m.ran("format")) > 0 || len(e.m.ran("mount")) > 0 {
		t.Fatalf("touched a volume holding another filesystem: %q", e.m.calls)
	}
	// Staged as xfs, a request for ext4 is refused rather than answered with the xfs mount.
	must(t, e.stage(nodeMountCap("xfs", snw)))
	nodeWantCode(t, e.stage(nodeMountCap("ext4", snw)), codes.AlreadyExists)
}

// A staging or publish path that does not hold the volume's current device is unmounted and
// mounted again, never formatted.
func TestNodeFakeRepairsStaleMounts(t *testing.T) {
	const renumbered = "/dev/nvme-fake1n1"
	for _, tc := range []struct {
		name   string
		break_ func(e *fakeNodeEnv)
		dev    string // the volume's device after the break
	}{
		{name: "something else mounted over the staging path", dev: fakeDev,
			break_: func(e *fakeNodeEnv) { e.m.addMount(e.staging()) }},
		{name: "mount point unreadable (ENOTCONN)", dev: fakeDev,
			break_: func(e *fakeNodeEnv) { e.m.breakMount(e.staging()) }},
		{name: "device renumbered after a reconnect", dev: renumbered,
			break_: func(e *fakeNodeEnv) {
				d := e.m.addDevice(renumbered, 7002)
				d.fsType, d.edges = "ext4", &notBlankError{dev: renumbered}
				e.ini.dev = renumbered
			}},
	} {
		for _, via := range []string{"stage", "publish"} {
			t.Run(tc.name+", repaired by "+via, func(t *testing.T) {
				e := newFakeMountNode(t)
				c := nodeMountCap("ext4", snw)
				must(t, e.stage(c))
				tc.break_(e)
				before := len(e.m.calls)
				target := filepath.Join(e.dir, "pod")
				if via == "stage" {
					must(t, e.stage(c))
				} else {
					must(t, e.publish(target, c, false))
				}
				if len(e.m.ran("format")) != 1 {
					t.Fatalf("the repair formatted the volume: %q", e.m.calls)
				}
				if !strings.HasPrefix(strings.Join(e.m.calls[before:], "\n"), "unmount "+e.staging()) {
					t.Fatalf("calls after the break %q: the stale mount was not unmounted first", e.m.calls[before:])
				}
				e.stagedOn(t, tc.dev, "ext4")
				if via == "publish" {
					at := e.m.mountsAt(target)
					if len(at) != 1 || at[0].Source != tc.dev {
						t.Fatalf("published %+v, want a bind of %s", at, tc.dev)
					}
				}
			})
		}
	}
	t.Run("a healthy staging mount is left alone", func(t *testing.T) {
		e := newFakeMountNode(t)
		must(t, e.stage(nodeMountCap("ext4", snw)))
		before := len(e.m.calls)
		must(t, e.stage(nodeMountCap("ext4", snw)))
		if calls := e.m.calls[before:]; len(calls) != 0 {
			t.Fatalf("a second stage of a staged volume ran %q", calls)
		}
	})
	t.Run("a stale block staging mark", func(t *testing.T) {
		e := newFakeMountNode(t)
		c := nodeBlockCap(snw)
		must(t, e.stage(c))
		mark := blockStagingFile(e.staging(), vid)
		d := e.m.addDevice(renumbered, 7002)
		e.ini.dev = renumbered
		must(t, e.stage(c))
		at := e.m.mountsAt(mark)
		if len(at) != 1 || at[0].dev != renumbered {
			t.Fatalf("block staging mark holds %+v, want %s alone", at, renumbered)
		}
		if len(e.m.ran("format")) > 0 || len(e.m.ran("probe")) > 0 || d.fsType != "" {
			t.Fatalf("a block volume was probed or formatted: %q", e.m.calls)
		}
	})
}

// The read-only flag lives on the block device and a device name is reused (loop devices are): a
// flag left by an earlier read-only publish is cleared before the device is used again, but never
// while something on the node still uses the device.
func TestNodeFakeClearsAStaleReadOnlyFlag(t *testing.T) {
	t.Run("unused device", func(t *testing.T) {
		e := newFakeMountNode(t)
		e.m.device(fakeDev).ro = true
		must(t, e.stage(nodeMountCap("ext4", snw)))
		if e.m.device(fakeDev).ro {
			t.Fatal("the stale read-only flag was kept")
		}
		if s := e.m.ran("setro"); len(s) != 1 || s[0] != "setro "+fakeDev+" false" {
			t.Fatalf("read-only changes %q", s)
		}
		if s, f := strings.Join(e.m.calls, "\n"), "setro "+fakeDev+" false\nprobe"; !strings.Contains(s, f) {
			t.Fatalf("the flag was not cleared before the device was probed and formatted: %q", e.m.calls)
		}
	})
	t.Run("device in use elsewhere", func(t *testing.T) {
		e := newFakeMountNode(t)
		d := e.m.device(fakeDev)
		d.fsType, d.edges, d.ro = "ext4", &notBlankError{dev: fakeDev}, true
		other := filepath.Join(e.dir, "elsewhere")
		must(t, os.MkdirAll(other, 0o750))
		must(t, e.m.Mount(fakeDev, other, "ext4", []string{"ro"}))
		_ = e.stage(nodeMountCap("ext4", snw))
		if !d.ro || len(e.m.ran("setro")) > 0 {
			t.Fatalf("the read-only flag of a device in use was changed: %q", e.m.calls)
		}
	})
	t.Run("a read-only block publish hands the device back writable", func(t *testing.T) {
		e := newFakeMountNode(t)
		c := nodeBlockCap(snw)
		must(t, e.stage(c))
		target := filepath.Join(e.dir, "pod", "dev")
		must(t, e.publish(target, c, true))
		if !e.m.device(fakeDev).ro {
			t.Fatal("a read-only raw block publish left the device writable")
		}
		must(t, e.unpublish(target))
		must(t, e.unstage())
		if e.m.device(fakeDev).ro {
			t.Fatal("the device was disconnected still read-only")
		}
		if len(e.ini.disconnects) != 1 {
			t.Fatalf("disconnects %v", e.ini.disconnects)
		}
	})
}

// A staging mount that a process on the node still uses is not unmounted, forced or lazily
// detached: the unstage fails FailedPrecondition, the device stays connected, and the retry after
// the process is gone completes.
func TestNodeFakeUnstageOfABusyMountIsRefused(t *testing.T) {
	e := newFakeMountNode(t)
	must(t, e.stage(nodeMountCap("xfs", snw)))
	e.m.mu.Lock()
	e.m.umountErr = fmt.Errorf("unmount failed: exit status 32\nOutput: umount: %s: target is busy.", e.staging())
	e.m.mu.Unlock()
	err := e.unstage()
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "in use by a process") {
		t.Fatalf("unstage of a busy mount: %v, want FailedPrecondition saying it is in use", err)
	}
	e.stagedOn(t, fakeDev, "xfs")
	e.ini.mu.Lock()
	disconnects := len(e.ini.disconnects)
	e.ini.mu.Unlock()
	if disconnects != 0 {
		t.Fatalf("a busy unstage disconnected the device: %d disconnects", disconnects)
	}
	e.m.mu.Lock()
	e.m.umountErr = nil
	e.m.mu.Unlock()
	must(t, e.unstage())
	if at := e.m.mountsAt(e.staging()); len(at) != 0 {
		t.Fatalf("after the retry the staging path still holds %+v", at)
	}
}
