//go:build vmguest

// Package guest holds the tests that run inside the qemu guest of hack/vm.sh, where the kernel has
// NVMe/TCP: the RDS simulator exports its disks through the kernel target (nvmet) on loopback and
// the driver's node service attaches them with its real NVMe/TCP initiator (nvme-cli, sysfs), as
// rds-csi --nvme-backend=nvme does. test/vm builds them with the vmguest tag and runs them there.
package guest

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/internal/allinone"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/volid"
)

const nodeID = "vm-node"

// The initiator's defaults are rds-csi's flag defaults (--nvme-ctrl-loss-tmo -1, reconnect delay
// 2 s, keep-alive 5 s), with a 1 s reconnect delay so that an outage ends sooner after the port is
// back.
const (
	reconnectDelay = 1
	keepAlive      = 5
)

type env struct {
	ts     *rdssim.TestServer
	ctl    csi.ControllerClient
	node   csi.NodeClient
	dir    string
	nodeID string // the node the volumes are published to
}

// start serves the driver (controller and node) over a simulator that exports through nvmet.
// When the test ends, every volume must have been unstaged with no NVMe controller left behind;
// then the exports are removed.
func start(t *testing.T) *env {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the guest tests run as root inside the VM (hack/vm.sh)")
	}
	ts := rdssim.StartForTest(t, func(c *rdssim.Config) {
		c.PoolSize = 1 << 40
		c.NVMeTCPExport = true
	})
	t.Cleanup(func() {
		if err := ts.UnexportNVMe(); err != nil {
			t.Errorf("removing the NVMe/TCP exports: %v", err)
		}
	})
	ini, err := nvme.NewCLI(nvme.CLIConfig{CtrlLossTmo: -1, ReconnectDelay: reconnectDelay, KeepAliveTmo: keepAlive})
	if err != nil {
		t.Fatal(err)
	}
	srv := allinone.ServeNode(t, ts, nodeID, nil, &driver.NodeConfig{Initiator: ini, StateDir: t.TempDir()})
	sock, dir := srv.Socket, srv.Dir
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// Runs before the exports go (cleanups run last-in first-out): a controller left behind would
	// otherwise be cut by the unexport and reconnect forever in the next test.
	t.Cleanup(func() { noControllersLeft(t) })
	return &env{ts: ts, ctl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), dir: dir, nodeID: nodeID}
}

// noControllersLeft fails the test if any NVMe controller of this driver's NQNs is still there,
// and disconnects it so that the next test starts clean.
func noControllersLeft(t *testing.T) {
	t.Helper()
	out := listSubsys(t)
	for _, line := range strings.Split(out, "\n") {
		if i := strings.Index(line, "NQN="+volid.NQNPrefix); i >= 0 {
			nqn := strings.Fields(line[i+len("NQN="):])[0]
			t.Errorf("an NVMe subsystem of this driver is still connected after the test: %s", nqn)
			_, _ = exec.Command("nvme", "disconnect", "-n", nqn).CombinedOutput()
		}
	}
}

func listSubsys(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("nvme", "list-subsys").CombinedOutput()
	if err != nil && !bytes.Contains(out, []byte("No NVMe")) && len(bytes.TrimSpace(out)) > 0 {
		t.Fatalf("nvme list-subsys: %v: %s", err, out)
	}
	return string(out)
}

// assertDisconnected checks, the way an operator would, that no controller of the volume's NQN
// remains: neither nvme list-subsys nor sysfs knows it.
func assertDisconnected(t *testing.T, id string) {
	t.Helper()
	nqn := volid.NQN(id)
	if out := listSubsys(t); strings.Contains(out, "NQN="+nqn) {
		t.Fatalf("after unstage, nvme list-subsys still shows %s:\n%s", nqn, out)
	}
	ctrls, _ := filepath.Glob("/sys/class/nvme/nvme*/subsysnqn")
	for _, c := range ctrls {
		if b, err := os.ReadFile(c); err == nil && strings.TrimSpace(string(b)) == nqn {
			t.Fatalf("after unstage, controller %s of %s is still in sysfs", filepath.Dir(c), nqn)
		}
	}
}

func mountCap(fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

var blockCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// volume is a created volume with the contexts stage and publish need.
type volume struct {
	id             string
	cap            *csi.VolumeCapability
	volCtx, pubCtx map[string]string
	stage, target  string
	filePath       string // on the RDS
}

// create makes a volume and publishes it to the node; it is deleted when the test ends.
func (e *env) create(t *testing.T, name string, size int64, c *csi.VolumeCapability, params map[string]string) *volume {
	t.Helper()
	ctx := context.Background()
	r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{c},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}, Parameters: params})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	v := &volume{id: r.Volume.VolumeId, cap: c, volCtx: r.Volume.VolumeContext,
		stage: filepath.Join(e.dir, "stage", name), target: filepath.Join(e.dir, "target", name)}
	t.Cleanup(func() {
		if _, err := e.ctl.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: v.id}); err != nil {
			t.Errorf("DeleteVolume %s: %v", v.id, err)
		}
	})
	pub, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: e.nodeID,
		VolumeCapability: c, VolumeContext: v.volCtx})
	if err != nil {
		t.Fatalf("ControllerPublish %s: %v", name, err)
	}
	v.pubCtx = pub.PublishContext
	t.Cleanup(func() {
		if _, err := e.ctl.ControllerUnpublishVolume(context.Background(), &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: e.nodeID}); err != nil {
			t.Errorf("ControllerUnpublish %s: %v", v.id, err)
		}
	})
	v.filePath = v.pubCtx[driver.ContextFilePath]
	return v
}

func (e *env) stage(ctx context.Context, v *volume) error {
	_, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stage,
		VolumeCapability: v.cap, PublishContext: v.pubCtx, VolumeContext: v.volCtx})
	return err
}

func (e *env) publish(ctx context.Context, v *volume) error {
	_, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stage,
		TargetPath: v.target, VolumeCapability: v.cap, PublishContext: v.pubCtx, VolumeContext: v.volCtx})
	return err
}

// attach stages and publishes; detach, registered for the end of the test, undoes both.
func (e *env) attach(t *testing.T, v *volume) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	t.Cleanup(func() { e.detach(t, v) })
	if err := e.stage(ctx, v); err != nil {
		t.Fatalf("NodeStage %s: %v", v.id, err)
	}
	if err := e.publish(ctx, v); err != nil {
		t.Fatalf("NodePublish %s: %v", v.id, err)
	}
}

// detach unpublishes and unstages; both are idempotent, so it may run twice.
func (e *env) detach(t *testing.T, v *volume) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.target}); err != nil {
		t.Errorf("NodeUnpublish %s: %v", v.id, err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stage}); err != nil {
		t.Errorf("NodeUnstage %s: %v", v.id, err)
	}
}

// device is the block device the node service staged a filesystem volume from (mountinfo of the
// staging path).
func device(t *testing.T, v *volume) string {
	t.Helper()
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 10 || f[4] != v.stage {
			continue
		}
		for i, x := range f {
			if x == "-" && i+2 < len(f) {
				return f[i+2]
			}
		}
	}
	t.Fatalf("%s is not mounted", v.stage)
	return ""
}

func randomBytes(t *testing.T, n int) []byte {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

// writeSynced writes a file and makes it durable on the volume.
func writeSynced(t *testing.T, path string, data []byte) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(data); err != nil {
		t.Fatal(err)
	}
	if err := f.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

func readEqual(t *testing.T, path string, want []byte) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("reading %s: %v", path, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s holds %d bytes that differ from the %d written", path, len(got), len(want))
	}
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %v", what, within)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// controllerStates lists the states of the NVMe controllers of a volume, from sysfs.
func controllerStates(id string) []string {
	nqn := volid.NQN(id)
	var states []string
	ctrls, _ := filepath.Glob("/sys/class/nvme/nvme*")
	for _, c := range ctrls {
		b, err := os.ReadFile(filepath.Join(c, "subsysnqn"))
		if err != nil || strings.TrimSpace(string(b)) != nqn {
			continue
		}
		st, _ := os.ReadFile(filepath.Join(c, "state"))
		states = append(states, strings.TrimSpace(string(st)))
	}
	return states
}
