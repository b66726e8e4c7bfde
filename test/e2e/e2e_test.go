// Package e2e drives the whole driver (controller and node in one process) through its gRPC API
// against the RDS simulator over SSH and real loop devices, filesystems and mounts. It needs root.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/internal/allinone"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

const nodeID = "e2e-node"

type env struct {
	ts   *rdssim.TestServer
	ctl  csi.ControllerClient
	node csi.NodeClient
	id   csi.IdentityClient
	dir  string
}

// start runs the driver; before, if given, acts on the simulator before the driver starts.
func start(t *testing.T, before func(*rdssim.TestServer)) *env {
	t.Helper()
	return startTuned(t, before, nil)
}

// startTuned is start with tune, if given, adjusting the RDS client configuration.
func startTuned(t *testing.T, before func(*rdssim.TestServer), tune func(*rds.Config)) *env {
	t.Helper()
	if testing.Short() {
		t.Skip("needs root, loop devices and mounts")
	}
	if os.Geteuid() != 0 {
		t.Fatal("end-to-end tests use real loop devices and mounts: run as root (CI does)")
	}
	ts := rdssim.StartForTest(t, func(c *rdssim.Config) { c.PoolSize = 1 << 40 })
	if before != nil {
		before(ts)
	}
	srv := allinone.Serve(t, ts, nodeID, func(c *rds.Config) {
		c.BackoffInitial, c.BackoffMax, c.BreakerCooldown = 10*time.Millisecond, 100*time.Millisecond, 100*time.Millisecond
		if tune != nil {
			tune(c)
		}
	})
	dir := srv.Dir
	conn, err := grpc.NewClient("unix://"+srv.Socket, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return &env{ts: ts, ctl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), id: csi.NewIdentityClient(conn), dir: dir}
}

var fsCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// attached is a volume staged and published on the node, undone by t.Cleanup whatever happens.
type attached struct {
	id, stage, target string
}

func (e *env) create(t *testing.T, name string, src *csi.VolumeContentSource) *csi.Volume {
	t.Helper()
	r, err := e.ctl.CreateVolume(context.Background(), &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{fsCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}, VolumeContentSource: src})
	if err != nil {
		t.Fatalf("CreateVolume %s: %v", name, err)
	}
	return r.Volume
}

func (e *env) attach(t *testing.T, vol *csi.Volume) *attached {
	t.Helper()
	ctx := context.Background()
	pub, err := e.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: vol.VolumeId, NodeId: nodeID,
		VolumeCapability: fsCap, VolumeContext: vol.VolumeContext})
	if err != nil {
		t.Fatalf("ControllerPublish: %v", err)
	}
	a := &attached{id: vol.VolumeId, stage: filepath.Join(e.dir, "stage", vol.VolumeId), target: filepath.Join(e.dir, "target", vol.VolumeId)}
	t.Cleanup(func() { e.detach(t, a) })
	if _, err := e.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.stage, VolumeCapability: fsCap,
		PublishContext: pub.PublishContext, VolumeContext: vol.VolumeContext}); err != nil {
		t.Fatalf("NodeStage: %v", err)
	}
	if _, err := e.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: a.id, StagingTargetPath: a.stage, TargetPath: a.target,
		VolumeCapability: fsCap, PublishContext: pub.PublishContext, VolumeContext: vol.VolumeContext}); err != nil {
		t.Fatalf("NodePublish: %v", err)
	}
	return a
}

// detach is idempotent, so that it can run both in the test and in its cleanup.
func (e *env) detach(t *testing.T, a *attached) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: a.id, TargetPath: a.target}); err != nil {
		t.Errorf("NodeUnpublish: %v", err)
	}
	if _, err := e.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: a.id, StagingTargetPath: a.stage}); err != nil {
		t.Errorf("NodeUnstage: %v", err)
	}
	if _, err := e.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: a.id, NodeId: nodeID}); err != nil {
		t.Errorf("ControllerUnpublish: %v", err)
	}
}

func readBack(t *testing.T, a *attached, want []byte) {
	t.Helper()
	got, err := os.ReadFile(filepath.Join(a.target, "data.bin"))
	if err != nil {
		t.Fatalf("reading data from %s: %v", a.id, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("data read from %s differs from what was written", a.id)
	}
}

func TestDataSurvivesRestageSnapshotAndClone(t *testing.T) {
	e := start(t, nil)
	ctx := context.Background()
	vol := e.create(t, "data-source", nil)
	payload := make([]byte, 1<<20)
	if _, err := rand.Read(payload); err != nil {
		t.Fatal(err)
	}
	a := e.attach(t, vol)
	if err := os.WriteFile(filepath.Join(a.target, "data.bin"), payload, 0o600); err != nil {
		t.Fatal(err)
	}

	t.Run("unpublish, unstage, stage again: same data", func(t *testing.T) {
		e.detach(t, a)
		a = e.attach(t, vol)
		readBack(t, a, payload)
	})

	syscall.Sync()
	snap, err := e.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "data-snap", SourceVolumeId: vol.VolumeId})
	if err != nil {
		t.Fatal(err)
	}
	t.Run("restored snapshot holds the data", func(t *testing.T) {
		restored := e.create(t, "data-restored", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.Snapshot.SnapshotId}}})
		readBack(t, e.attach(t, restored), payload)
	})
	t.Run("clone holds the data", func(t *testing.T) {
		clone := e.create(t, "data-clone", &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol.VolumeId}}})
		readBack(t, e.attach(t, clone), payload)
	})
}

func TestProbeFollowsTheRDSAndNoCrashWhenItIsDownAtStart(t *testing.T) {
	// The RDS refuses connections when the driver starts: the driver serves Probe (not ready).
	e := start(t, func(ts *rdssim.TestServer) { ts.SetRefuse(true) })
	ts := e.ts
	ctx := context.Background()
	ready := func() bool {
		r, err := e.id.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			t.Fatalf("Probe failed instead of reporting not-ready: %v", err)
		}
		return r.GetReady().GetValue()
	}
	await := func(want bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for ready() != want {
			if time.Now().After(deadline) {
				t.Fatalf("Probe never became ready=%t", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	await(false)
	ts.SetRefuse(false)
	await(true)
	// An outage while running: not ready, calls fail fast with Unavailable, then recovery.
	ts.SetRefuse(true)
	ts.DropConnections()
	await(false)
	_, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "during-outage", VolumeCapabilities: []*csi.VolumeCapability{fsCap}})
	if status.Code(err) != codes.Unavailable {
		t.Fatalf("CreateVolume during the outage: %v, want Unavailable", err)
	}
	ts.SetRefuse(false)
	await(true)
	if _, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "after-outage", VolumeCapabilities: []*csi.VolumeCapability{fsCap}}); err != nil {
		t.Fatalf("CreateVolume after recovery: %v", err)
	}
}
