package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

const (
	nodeID   = "demo-node"
	gib      = int64(1) << 30
	dataFile = "hello.bin"
)

type demo struct {
	cfg   demoConfig
	dir   string
	sim   *proc
	drv   *proc
	conn  *grpc.ClientConn
	id    csi.IdentityClient
	ctl   csi.ControllerClient
	node  csi.NodeClient
	steps int

	rdsAddr, keyFile, knownHosts string   // for the second controller of the healing phase
	heal                         *healing // the healing phase, stopped by cleanup

	// what cleanup must undo if a step fails
	published []string // target paths
	staged    []string // staging paths, with volume IDs in stagedIDs
	stagedIDs []string
	attached  []string // volume IDs published to the node
	snapshots []string
	volumes   []string
}

func (d *demo) step(name string, fn func() (string, error)) error {
	d.steps++
	start := time.Now()
	detail, err := fn()
	dur := time.Since(start).Round(time.Microsecond)
	if err != nil {
		fmt.Printf("[%2d] %-54s %10s  FAILED: %v\n", d.steps, name, dur, err)
		return fmt.Errorf("%s: %w", name, err)
	}
	fmt.Printf("[%2d] %-54s %10s  ok  %s\n", d.steps, name, dur, detail)
	return nil
}

var mountCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "xfs"}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

func (d *demo) run(ctx context.Context) error {
	dir, err := os.MkdirTemp("", "rds-demo-")
	if err != nil {
		return err
	}
	d.dir = dir
	fmt.Printf("rds-demo: work directory %s (simulator and driver logs are there)\n\n", dir)
	if err := d.step("start RDS simulator and rds-csi --mode all", func() (string, error) { return d.startProcesses(ctx) }); err != nil {
		return err
	}
	var volID string
	var pubCtx, volCtx map[string]string
	checksum := make([]byte, 0, 32)
	stage := filepath.Join(dir, "staging", "vol1")
	target := filepath.Join(dir, "pods", "vol1")

	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"Probe (ready once the RDS is connected)", func() (string, error) { return d.waitReady(ctx) }},
		{"CreateVolume 1 GiB xfs", func() (string, error) {
			r, err := d.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "demo-volume", VolumeCapabilities: []*csi.VolumeCapability{mountCap},
				CapacityRange: &csi.CapacityRange{RequiredBytes: gib}, Parameters: map[string]string{"fsType": "xfs"}})
			if err != nil {
				return "", err
			}
			volID, volCtx = r.Volume.VolumeId, r.Volume.VolumeContext
			d.volumes = append(d.volumes, volID)
			return fmt.Sprintf("%s, %d bytes, NQN %s", volID, r.Volume.CapacityBytes, volCtx["nqn"]), nil
		}},
		{"ControllerPublishVolume to " + nodeID, func() (string, error) {
			r, err := d.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: nodeID, VolumeCapability: mountCap, VolumeContext: volCtx})
			if err != nil {
				return "", err
			}
			pubCtx = r.PublishContext
			d.attached = append(d.attached, volID)
			return fmt.Sprintf("%s:%s", pubCtx["nvmeAddress"], pubCtx["nvmePort"]), nil
		}},
		{"NodeStageVolume (attach, format blank device, mount)", func() (string, error) { return d.stage(ctx, volID, stage, pubCtx, volCtx) }},
		{"NodePublishVolume (bind mount)", func() (string, error) { return d.publish(ctx, volID, stage, target, pubCtx, volCtx) }},
		{"write and read back a 4 MiB file", func() (string, error) {
			sum, err := writeData(target)
			checksum = append(checksum[:0], sum...)
			return fmt.Sprintf("sha256 %x", sum[:8]), err
		}},
		{"ControllerExpandVolume to 2 GiB", func() (string, error) {
			r, err := d.ctl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: volID, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}, VolumeCapability: mountCap})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%d bytes, node expansion required: %t", r.CapacityBytes, r.NodeExpansionRequired), nil
		}},
		{"NodeExpandVolume (grow xfs online)", func() (string, error) {
			before, _ := fsSize(target)
			if _, err := d.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: volID, VolumePath: target, StagingTargetPath: stage,
				CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}, VolumeCapability: mountCap}); err != nil {
				return "", err
			}
			after, err := fsSize(target)
			if err != nil {
				return "", err
			}
			if after <= before || after < 2*gib*9/10 {
				return "", fmt.Errorf("filesystem is %d bytes after expansion (was %d)", after, before)
			}
			return fmt.Sprintf("filesystem %d MiB -> %d MiB", before>>20, after>>20), nil
		}},
		{"NodeGetVolumeStats", func() (string, error) {
			r, err := d.node.NodeGetVolumeStats(ctx, &csi.NodeGetVolumeStatsRequest{VolumeId: volID, VolumePath: target})
			if err != nil {
				return "", err
			}
			var parts []string
			for _, u := range r.Usage {
				parts = append(parts, fmt.Sprintf("%s used %d of %d", strings.ToLower(u.Unit.String()), u.Used, u.Total))
			}
			return strings.Join(parts, ", "), nil
		}},
		{"sync the filesystem, CreateSnapshot", func() (string, error) {
			syscall.Sync()
			r, err := d.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "demo-snapshot", SourceVolumeId: volID})
			if err != nil {
				return "", err
			}
			d.snapshots = append(d.snapshots, r.Snapshot.SnapshotId)
			return fmt.Sprintf("%s ready=%t", r.Snapshot.SnapshotId, r.Snapshot.ReadyToUse), nil
		}},
	}
	for _, s := range steps {
		if err := d.step(s.name, s.fn); err != nil {
			return err
		}
	}
	if err := d.restoreAndVerify(ctx, checksum); err != nil {
		return err
	}
	if err := d.teardown(ctx); err != nil {
		return err
	}
	return d.healing(ctx)
}

func (d *demo) stage(ctx context.Context, volID, stage string, pubCtx, volCtx map[string]string) (string, error) {
	// Recorded first: a stage that fails half-way still gets unstaged by cleanup.
	d.staged, d.stagedIDs = append(d.staged, stage), append(d.stagedIDs, volID)
	if _, err := d.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: volID, StagingTargetPath: stage,
		VolumeCapability: mountCap, PublishContext: pubCtx, VolumeContext: volCtx}); err != nil {
		return "", err
	}
	return "staged at " + stage, nil
}

func (d *demo) publish(ctx context.Context, volID, stage, target string, pubCtx, volCtx map[string]string) (string, error) {
	d.published = append(d.published, target)
	if _, err := d.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: volID, StagingTargetPath: stage, TargetPath: target,
		VolumeCapability: mountCap, PublishContext: pubCtx, VolumeContext: volCtx}); err != nil {
		return "", err
	}
	return "published at " + target, nil
}

func writeData(dir string) ([]byte, error) {
	buf := make([]byte, 4<<20)
	if _, err := rand.Read(buf); err != nil {
		return nil, err
	}
	p := filepath.Join(dir, dataFile)
	if err := os.WriteFile(p, buf, 0o644); err != nil {
		return nil, err
	}
	back, err := os.ReadFile(p)
	if err != nil {
		return nil, err
	}
	if !bytes.Equal(back, buf) {
		return nil, errors.New("data read back differs from data written")
	}
	sum := sha256.Sum256(buf)
	return sum[:], nil
}

func fsSize(path string) (int64, error) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(path, &st); err != nil {
		return 0, err
	}
	return int64(st.Blocks) * int64(st.Bsize), nil // Bsize is uint32 on darwin
}
