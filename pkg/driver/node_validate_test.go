package driver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	utilexec "k8s.io/utils/exec"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// fakeInitiator attaches nothing: Device says "not connected" unless dev is set.
type fakeInitiator struct {
	mu          sync.Mutex
	connectErr  error
	dev         string
	targets     []nvme.Target
	disconnects []string
}

func (f *fakeInitiator) Connect(_ context.Context, t nvme.Target) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets = append(f.targets, t)
	if f.connectErr != nil {
		return "", f.connectErr
	}
	return f.dev, nil
}

func (f *fakeInitiator) Device(context.Context, string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.dev == "" {
		return "", nvme.ErrNotConnected
	}
	return f.dev, nil
}

func (f *fakeInitiator) Disconnect(_ context.Context, nqn string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.disconnects = append(f.disconnects, nqn)
	return nil
}

func (f *fakeInitiator) Rescan(context.Context, string) error { return nvme.ErrNotConnected }

func newFakeNode(t *testing.T, ini *fakeInitiator) *nodeService {
	t.Helper()
	ns, err := newNodeService("node-1", NodeConfig{Initiator: ini, MaxVolumesPerNode: 16})
	if err != nil {
		t.Fatal(err)
	}
	return ns
}

const vid = "pvc-0f1e2d3c-aaaa-bbbb-cccc-000000000001"

func TestNodeRequestValidation(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	good := nodeMountCap("ext4", snw)
	stage := func(mod func(r *csi.NodeStageVolumeRequest)) func(n *nodeService) error {
		return func(n *nodeService) error {
			r := &csi.NodeStageVolumeRequest{VolumeId: vid, StagingTargetPath: dir + "/s", VolumeCapability: good,
				PublishContext: map[string]string{ContextNVMeAddress: "10.0.0.5"}}
			mod(r)
			_, err := n.NodeStageVolume(ctx, r)
			return err
		}
	}
	publish := func(mod func(r *csi.NodePublishVolumeRequest)) func(n *nodeService) error {
		return func(n *nodeService) error {
			r := &csi.NodePublishVolumeRequest{VolumeId: vid, StagingTargetPath: dir + "/s", TargetPath: dir + "/t", VolumeCapability: good}
			mod(r)
			_, err := n.NodePublishVolume(ctx, r)
			return err
		}
	}
	noCtx := func(r *csi.NodeStageVolumeRequest) {}
	tests := []struct {
		name string
		call func(n *nodeService) error
		want codes.Code
	}{
		{"stage: no volume ID", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeId = "" }), codes.InvalidArgument},
		{"stage: volume ID not a slot", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeId = "pvc;reboot" }), codes.InvalidArgument},
		{"stage: volume ID climbing", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeId = "../etc" }), codes.InvalidArgument},
		{"stage: no staging path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "" }), codes.InvalidArgument},
		{"stage: relative staging path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "some/path" }), codes.InvalidArgument},
		{"stage: unclean staging path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = dir + "/a/../s" }), codes.InvalidArgument},
		{"stage: root as staging path", stage(func(r *csi.NodeStageVolumeRequest) { r.StagingTargetPath = "/" }), codes.InvalidArgument},
		{"stage: no capability", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nil }), codes.InvalidArgument},
		{"stage: no access type", stage(func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = &csi.VolumeCapability{AccessMode: &csi.VolumeCapability_AccessMode{Mode: snw}}
		}), codes.InvalidArgument},
		{"stage: no access mode", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nodeMountCap("ext4", 0) }), codes.InvalidArgument},
		{"stage: unknown access mode", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nodeMountCap("ext4", 99) }), codes.InvalidArgument},
		{"stage: btrfs", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nodeMountCap("btrfs", snw) }), codes.InvalidArgument},
		{"stage: fs type from volume context", stage(func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = nodeMountCap("", snw)
			r.VolumeContext = map[string]string{ContextFSType: "zfs"}
		}), codes.InvalidArgument},
		{"stage: multi-node filesystem", stage(func(r *csi.NodeStageVolumeRequest) {
			r.VolumeCapability = nodeMountCap("ext4", csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
		}), codes.InvalidArgument},
		{"stage: bad mount flag", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nodeMountCap("ext4", snw, "--bind") }), codes.InvalidArgument},
		{"stage: mount flag with a space", stage(func(r *csi.NodeStageVolumeRequest) { r.VolumeCapability = nodeMountCap("ext4", snw, "noatime x") }), codes.InvalidArgument},
		{"stage: NQN of another volume", stage(func(r *csi.NodeStageVolumeRequest) {
			r.PublishContext[ContextNQN] = "nqn.2000-02.com.mikrotik:pvc-other"
		}), codes.InvalidArgument},
		{"stage: NQN garbage", stage(func(r *csi.NodeStageVolumeRequest) { r.PublishContext[ContextNQN] = "nqn; rm -rf /" }), codes.InvalidArgument},
		{"stage: port not a number", stage(func(r *csi.NodeStageVolumeRequest) { r.PublishContext[ContextNVMePort] = "44x" }), codes.InvalidArgument},
		{"stage: port out of range", stage(func(r *csi.NodeStageVolumeRequest) { r.PublishContext[ContextNVMePort] = "0" }), codes.InvalidArgument},
		{"stage: timeout not a number", stage(func(r *csi.NodeStageVolumeRequest) {
			r.VolumeContext = map[string]string{ContextCtrlLossTmo: "forever"}
		}), codes.InvalidArgument},
		{"stage: file path climbing", stage(func(r *csi.NodeStageVolumeRequest) { r.PublishContext[ContextFilePath] = "/a/../../etc/shadow" }), codes.InvalidArgument},
		{"stage: initiator refuses the target", stage(noCtx), codes.InvalidArgument},
		{"publish: no target", publish(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "" }), codes.InvalidArgument},
		{"publish: relative target", publish(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = "t" }), codes.InvalidArgument},
		{"publish: no staging path", publish(func(r *csi.NodePublishVolumeRequest) { r.StagingTargetPath = "" }), codes.FailedPrecondition},
		{"publish: target is the staging path", publish(func(r *csi.NodePublishVolumeRequest) { r.TargetPath = r.StagingTargetPath }), codes.InvalidArgument},
		{"publish: no capability", publish(func(r *csi.NodePublishVolumeRequest) { r.VolumeCapability = nil }), codes.InvalidArgument},
		{"publish: no capability nor staging path", publish(func(r *csi.NodePublishVolumeRequest) {
			r.VolumeCapability, r.StagingTargetPath = nil, ""
		}), codes.InvalidArgument},
		{"publish: no volume ID", publish(func(r *csi.NodePublishVolumeRequest) { r.VolumeId = "" }), codes.InvalidArgument},
		{"publish: not staged", publish(func(r *csi.NodePublishVolumeRequest) {}), codes.FailedPrecondition},
		{"unpublish: no volume ID", func(n *nodeService) error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{TargetPath: dir + "/t"})
			return err
		}, codes.InvalidArgument},
		{"unpublish: no target", func(n *nodeService) error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument},
		{"unpublish: absent target", func(n *nodeService) error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vid, TargetPath: dir + "/never"})
			return err
		}, codes.OK},
		{"unstage: no staging path", func(n *nodeService) error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument},
		{"unstage: absent staging path", func(n *nodeService) error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vid, StagingTargetPath: dir + "/never"})
			return err
		}, codes.OK},
		{"stats: no volume ID", func(n *nodeService) error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumePath: "some/path"})
			return err
		}, codes.InvalidArgument},
		{"stats: no path", func(n *nodeService) error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument},
		{"stats: relative path", func(n *nodeService) error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: vid, VolumePath: "some/path"})
			return err
		}, codes.NotFound},
		{"stats: absent path", func(n *nodeService) error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: vid, VolumePath: dir + "/never"})
			return err
		}, codes.NotFound},
		{"stats: nothing mounted", func(n *nodeService) error {
			_, err := n.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: vid, VolumePath: dir})
			return err
		}, codes.NotFound},
		{"expand: no volume ID", func(n *nodeService) error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumePath: dir})
			return err
		}, codes.InvalidArgument},
		{"expand: no path", func(n *nodeService) error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vid})
			return err
		}, codes.InvalidArgument},
		{"expand: relative path", func(n *nodeService) error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vid, VolumePath: "some/path"})
			return err
		}, codes.NotFound},
		{"expand: not attached", func(n *nodeService) error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vid, VolumePath: dir})
			return err
		}, codes.NotFound},
		{"health: no volume ID", func(n *nodeService) error {
			_, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{})
			return err
		}, codes.InvalidArgument},
		{"health: not attached", func(n *nodeService) error {
			_, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: vid})
			return err
		}, codes.NotFound},
		{"health: relative path", func(n *nodeService) error {
			_, err := n.NodeGetVolumeHealth(ctx, &csi.NodeGetVolumeHealthRequest{VolumeId: vid, VolumePublishPath: "x"})
			return err
		}, codes.InvalidArgument},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			ini := &fakeInitiator{connectErr: fmt.Errorf("%w: no address", nvme.ErrInvalid)}
			n := newFakeNode(t, ini)
			nodeWantCode(t, tc.call(n), tc.want)
			if strings.HasPrefix(tc.name, "stage:") && tc.want == codes.InvalidArgument && tc.name != "stage: initiator refuses the target" && len(ini.targets) > 0 {
				t.Fatalf("an invalid request reached the initiator: %v", ini.targets)
			}
			// A refused request disconnects nothing. An unstage that succeeds asks the initiator
			// to disconnect the volume's own NQN even without a device (a controller may be
			// left without its namespace); the initiator does nothing when nothing is connected.
			if tc.want != codes.OK && len(ini.disconnects) > 0 {
				t.Fatalf("disconnected %v", ini.disconnects)
			}
			for _, nqn := range ini.disconnects {
				if nqn != "nqn.2000-02.com.mikrotik:"+vid {
					t.Fatalf("disconnected %s, not the volume's NQN", nqn)
				}
			}
		})
	}
}

func TestNodeInitiatorErrorsKeepTheirMeaning(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want codes.Code
	}{
		{fmt.Errorf("%w: no backing file", nvme.ErrNotFound), codes.NotFound},
		{fmt.Errorf("%w: connect refused", nvme.ErrUnavailable), codes.Unavailable},
		{fmt.Errorf("nvme connect: %w", context.DeadlineExceeded), codes.DeadlineExceeded},
		{fmt.Errorf("%w: bad port", nvme.ErrInvalid), codes.InvalidArgument},
		{errors.New("sysfs unreadable"), codes.Internal},
	} {
		t.Run(tc.want.String(), func(t *testing.T) {
			n := newFakeNode(t, &fakeInitiator{connectErr: tc.err})
			_, err := n.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
				VolumeId: vid, StagingTargetPath: t.TempDir(), VolumeCapability: nodeMountCap("", snw)})
			nodeWantCode(t, err, tc.want)
		})
	}
}

func TestNodeTargetFromContexts(t *testing.T) {
	ini := &fakeInitiator{connectErr: errors.New("stop here")}
	n := newFakeNode(t, ini)
	_, _ = n.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
		VolumeId: vid, StagingTargetPath: t.TempDir(), VolumeCapability: nodeMountCap("", snw),
		PublishContext: map[string]string{ContextNVMeAddress: "10.0.0.7", ContextFilePath: "/pool/" + vid + ".img"},
		VolumeContext: map[string]string{ContextNVMeAddress: "10.0.0.5", ContextNVMePort: "4421", ContextCtrlLossTmo: "-1",
			ContextReconnectDelay: "3", ContextKeepAliveTmo: "9", ContextNQN: "nqn.2000-02.com.mikrotik:" + vid},
	})
	want := nvme.Target{NQN: "nqn.2000-02.com.mikrotik:" + vid, Address: "10.0.0.7", Port: 4421, FilePath: "/pool/" + vid + ".img",
		CtrlLossTmo: -1, ReconnectDelay: 3, KeepAliveTmo: 9}
	if len(ini.targets) != 1 || ini.targets[0] != want {
		t.Fatalf("targets %+v, want %+v", ini.targets, want)
	}
}

// A PV written by the earlier driver (3whiskeywhiskey/rds-csi), staged with the publish context
// of a VolumeAttachment it made (keys rds-csi does not read): the target comes from its volume
// attributes, a 0 ctrlLossTmo or keepAliveTmo is the kernel's default as it meant (not this
// node's defaults), and its volumePath gives the backing file.
func TestNodeTargetFromEarlierDriversPV(t *testing.T) {
	file := "/storage-pool/metal-csi/" + vid + ".img"
	for _, tc := range []struct {
		ctrlLoss, keepAlive string
		want                nvme.Target
	}{
		{"-1", "0", nvme.Target{CtrlLossTmo: -1, ReconnectDelay: 5, KeepAliveTmo: kernelKeepAliveTmo}},
		{"0", "0", nvme.Target{CtrlLossTmo: kernelCtrlLossTmo, ReconnectDelay: 5, KeepAliveTmo: kernelKeepAliveTmo}},
		{"120", "10", nvme.Target{CtrlLossTmo: 120, ReconnectDelay: 5, KeepAliveTmo: 10}},
	} {
		ini := &fakeInitiator{connectErr: errors.New("stop here")}
		n := newFakeNode(t, ini)
		_, _ = n.NodeStageVolume(context.Background(), &csi.NodeStageVolumeRequest{
			VolumeId: vid, StagingTargetPath: t.TempDir(), VolumeCapability: nodeMountCap("", snw),
			PublishContext: map[string]string{"nvme_address": "10.0.0.5", "nvme_port": "4420", "nvme_nqn": "nqn.2000-02.com.mikrotik:" + vid, "fs_type": "ext4"},
			VolumeContext: map[string]string{"rdsAddress": "10.0.0.4", ContextNVMeAddress: "10.0.0.5", ContextNVMePort: "4420",
				ContextNQN: "nqn.2000-02.com.mikrotik:" + vid, "volumePath": file, ContextCtrlLossTmo: tc.ctrlLoss,
				ContextReconnectDelay: "5", ContextKeepAliveTmo: tc.keepAlive, "migrationTimeoutSeconds": "300"},
		})
		want := tc.want
		want.NQN, want.Address, want.Port, want.FilePath = "nqn.2000-02.com.mikrotik:"+vid, "10.0.0.5", 4420, file
		if len(ini.targets) != 1 || ini.targets[0] != want {
			t.Errorf("ctrlLossTmo %s keepAliveTmo %s: targets %+v, want %+v", tc.ctrlLoss, tc.keepAlive, ini.targets, want)
		}
	}
	// A volumePath that is not the volume's file is not taken for it.
	v, err := (&nodeService{}).parseNodeVolume(vid, nodeMountCap("", snw), nil, map[string]string{"volumePath": "/storage-pool/metal-csi"})
	must(t, err)
	if v.target.FilePath != "" {
		t.Errorf("file path %q from a directory", v.target.FilePath)
	}
}

func TestNodeParseVolume(t *testing.T) {
	for _, tc := range []struct {
		name   string
		c      *csi.VolumeCapability
		volCtx map[string]string
		fs     string
		opts   string
		ro     bool
	}{
		{name: "default", c: nodeMountCap("", snw), fs: "ext4"},
		{name: "capability wins", c: nodeMountCap("xfs", snw), volCtx: map[string]string{ContextFSType: "ext4"}, fs: "xfs", opts: "nouuid"},
		{name: "volume context", c: nodeMountCap("", snw), volCtx: map[string]string{ContextFSType: "xfs"}, fs: "xfs", opts: "nouuid"},
		{name: "flags and reader", c: nodeMountCap("ext4", csi.VolumeCapability_AccessMode_MULTI_NODE_READER_ONLY, "noatime", "discard"), fs: "ext4", opts: "noatime,discard,ro", ro: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			v, err := (&nodeService{}).parseNodeVolume(vid, tc.c, nil, tc.volCtx)
			must(t, err)
			if v.fsType != tc.fs || strings.Join(v.mountOptions(), ",") != tc.opts || v.readOnly != tc.ro || v.target.Port != 4420 {
				t.Fatalf("got fs %q opts %q ro %v port %d", v.fsType, v.mountOptions(), v.readOnly, v.target.Port)
			}
		})
	}
}

func TestNodeAbortsAConcurrentOperation(t *testing.T) {
	n := newFakeNode(t, &fakeInitiator{})
	must(t, n.locks.lock(vid))
	defer n.locks.unlock(vid)
	ctx, dir := context.Background(), t.TempDir()
	calls := map[string]func() error{
		"stage": func() error {
			_, err := n.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: vid, StagingTargetPath: dir, VolumeCapability: nodeMountCap("", snw)})
			return err
		},
		"unstage": func() error {
			_, err := n.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: vid, StagingTargetPath: dir})
			return err
		},
		"publish": func() error {
			_, err := n.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: vid, StagingTargetPath: dir, TargetPath: dir + "/t", VolumeCapability: nodeMountCap("", snw)})
			return err
		},
		"unpublish": func() error {
			_, err := n.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: vid, TargetPath: dir + "/t"})
			return err
		},
		"expand": func() error {
			_, err := n.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: vid, VolumePath: dir})
			return err
		},
	}
	for name, call := range calls {
		t.Run(name, func(t *testing.T) { nodeWantCode(t, call(), codes.Aborted) })
	}
}

func TestNodeInfoAndCapabilities(t *testing.T) {
	n := newFakeNode(t, &fakeInitiator{})
	info, err := n.NodeGetInfo(context.Background(), &csi.NodeGetInfoRequest{})
	must(t, err)
	if info.GetNodeId() != "node-1" || info.GetMaxVolumesPerNode() != 16 {
		t.Fatalf("info %v", info)
	}
	caps, err := n.NodeGetCapabilities(context.Background(), &csi.NodeGetCapabilitiesRequest{})
	must(t, err)
	got := map[csi.NodeServiceCapability_RPC_Type]bool{}
	for _, c := range caps.GetCapabilities() {
		got[c.GetRpc().GetType()] = true
	}
	for _, want := range []csi.NodeServiceCapability_RPC_Type{csi.NodeServiceCapability_RPC_STAGE_UNSTAGE_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_STATS, csi.NodeServiceCapability_RPC_EXPAND_VOLUME,
		csi.NodeServiceCapability_RPC_GET_VOLUME_HEALTH, csi.NodeServiceCapability_RPC_SINGLE_NODE_MULTI_WRITER} {
		if !got[want] {
			t.Errorf("capability %v missing", want)
		}
	}
	if _, err := newNodeService("", NodeConfig{Initiator: &fakeInitiator{}}); err == nil {
		t.Error("a node service without a node ID")
	}
	if _, err := newNodeService("n", NodeConfig{}); err == nil {
		t.Error("a node service without an initiator")
	}
}

func TestNodeUnescapeMountInfo(t *testing.T) {
	for in, want := range map[string]string{`/a\040b`: "/a b", `/x\134y`: `/x\y`, `/plain`: "/plain", `/bad\04`: `/bad\04`} {
		if got := unescapeMountInfo(in); got != want {
			t.Errorf("unescape(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestNodeTimeoutExec(t *testing.T) {
	e := &timeoutExec{Interface: utilexec.New(), timeout: 50 * time.Millisecond, formatTimeout: time.Hour}
	start := time.Now()
	if err := e.Command("sleep", "10").Run(); err == nil {
		t.Fatal("a hung command was not stopped")
	}
	if time.Since(start) > 5*time.Second {
		t.Fatalf("the deadline took %v", time.Since(start))
	}
	if e.limit("mkfs.xfs") != time.Hour || e.limit("blkid") != 50*time.Millisecond {
		t.Fatal("mkfs must get the format timeout, blkid the short one")
	}
	// A command that finishes in time runs normally (a limit a loaded machine cannot miss).
	e = &timeoutExec{Interface: utilexec.New(), timeout: time.Minute, formatTimeout: time.Hour}
	out, err := e.Command("echo", "ok").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("echo: %q %v", out, err)
	}
}

// The node used to format volumes without an fs type as ext4 whatever --default-fs-type said.
func TestNodeStageUsesTheDriverDefaultFSType(t *testing.T) {
	e := newNodeEnv(t)
	d, err := New(Options{Node: true, NodeID: "node-1", DefaultParams: Defaults{FSType: "xfs"}}, nil, nil,
		&NodeConfig{Initiator: e.loop, Exec: e.exec})
	must(t, err)
	e.ns = d.node
	id := "pvc-default-fs"
	e.newVolume(t, id, 512<<20)
	must(t, e.stage(id, nodeMountCap("", snw))) // neither the capability nor a volume context names one
	if got := blkidValue(t, e.device(t, id), "TYPE"); got != "xfs" {
		t.Fatalf("volume formatted as %q, want the driver default xfs", got)
	}
	must(t, e.unstage(id))
}
