package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
)

const nodeRuns = 15

func benchNode(ctx context.Context, _ benchOptions) error {
	if os.Geteuid() != 0 {
		fmt.Println("== node: skipped (needs root for loop devices and mounts)")
		return nil
	}
	s, err := startSim()
	if err != nil {
		return err
	}
	defer s.close()
	client, err := s.newClient(8)
	if err != nil {
		return err
	}
	defer client.Close()
	loop, err := nvme.NewLoop(nvme.LoopConfig{Root: s.DataDir()})
	if err != nil {
		return err
	}
	d, err := driver.New(driver.Options{NodeID: "bench-node", Controller: true, Node: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, rds.NewStorage(client), nil, &driver.NodeConfig{Initiator: loop})
	if err != nil {
		return err
	}
	dir, err := os.MkdirTemp("", "rds-bench-node-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	sock := filepath.Join(dir, "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return err
	}
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	go func() { _ = d.ServeListener(sctx, lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return err
	}
	defer conn.Close()
	ctl, node := csi.NewControllerClient(conn), csi.NewNodeClient(conn)

	mcap := &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	var stage, publish, bareFormat, bareBind latencies
	for i := 0; i < nodeRuns; i++ {
		vol, err := ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("node-bench-%d", i),
			VolumeCapabilities: []*csi.VolumeCapability{mcap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 256 << 20}})
		if err != nil {
			return err
		}
		id := vol.Volume.VolumeId
		pub, err := ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "bench-node", VolumeCapability: mcap, VolumeContext: vol.Volume.VolumeContext})
		if err != nil {
			return err
		}
		sp, tp := filepath.Join(dir, "stage", id), filepath.Join(dir, "target", id)
		t := time.Now()
		if _, err := node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: sp, VolumeCapability: mcap,
			PublishContext: pub.PublishContext, VolumeContext: vol.Volume.VolumeContext}); err != nil {
			return err
		}
		stage = append(stage, time.Since(t))
		t = time.Now()
		if _, err := node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: sp, TargetPath: tp, VolumeCapability: mcap,
			PublishContext: pub.PublishContext, VolumeContext: vol.Volume.VolumeContext}); err != nil {
			return err
		}
		publish = append(publish, time.Since(t))
		if _, err := node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: tp}); err != nil {
			return err
		}
		if _, err := node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: sp}); err != nil {
			return err
		}
		if _, err := ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "bench-node"}); err != nil {
			return err
		}
		if _, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			return err
		}

		f, b, err := bareStageAndPublish(dir, i)
		if err != nil {
			return err
		}
		bareFormat, bareBind = append(bareFormat, f), append(bareBind, b)
	}
	fmt.Printf("== node service, loop backend, 256 MiB ext4 volumes, %d runs: CSI call vs the bare commands it wraps (baseline)\n", nodeRuns)
	fmt.Printf("%-22s %10s | %-28s %10s | %s\n", "CSI call", "p50", "baseline", "p50", "ratio")
	fmt.Printf("%-22s %10s | %-28s %10s | %s\n", "NodeStageVolume", ms(stage.pct(50)), "losetup+mkfs.ext4+mount", ms(bareFormat.pct(50)), ratio(float64(stage.pct(50)), float64(bareFormat.pct(50))))
	fmt.Printf("%-22s %10s | %-28s %10s | %s\n", "NodePublishVolume", ms(publish.pct(50)), "mount --bind", ms(bareBind.pct(50)), ratio(float64(publish.pct(50)), float64(bareBind.pct(50))))
	return nil
}

// bareStageAndPublish does by hand what stage and publish do for a blank volume, timing
// losetup+mkfs+mount and the bind mount.
func bareStageAndPublish(dir string, i int) (format, bind time.Duration, err error) {
	img := filepath.Join(dir, fmt.Sprintf("bare-%d.img", i))
	mnt, tgt := filepath.Join(dir, fmt.Sprintf("bare-mnt-%d", i)), filepath.Join(dir, fmt.Sprintf("bare-tgt-%d", i))
	if err := os.Truncate(img, 0); err != nil && !os.IsNotExist(err) {
		return 0, 0, err
	}
	f, err := os.Create(img)
	if err != nil {
		return 0, 0, err
	}
	_ = f.Truncate(256 << 20)
	_ = f.Close()
	defer os.Remove(img)
	for _, p := range []string{mnt, tgt} {
		if err := os.MkdirAll(p, 0o750); err != nil {
			return 0, 0, err
		}
		defer os.Remove(p)
	}
	run := func(name string, args ...string) (string, error) {
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			return "", fmt.Errorf("%s %v: %v: %s", name, args, err, out)
		}
		return strings.TrimSpace(string(out)), nil
	}
	t := time.Now()
	dev, err := run("losetup", "--find", "--show", img)
	if err != nil {
		return 0, 0, err
	}
	defer func() { _, _ = run("losetup", "-d", dev) }()
	if _, err := run("mkfs.ext4", "-q", "-F", "-m0", dev); err != nil {
		return 0, 0, err
	}
	if _, err := run("mount", "-t", "ext4", dev, mnt); err != nil {
		return 0, 0, err
	}
	format = time.Since(t)
	defer func() { _, _ = run("umount", mnt) }()
	t = time.Now()
	if _, err := run("mount", "--bind", mnt, tgt); err != nil {
		return 0, 0, err
	}
	bind = time.Since(t)
	_, err = run("umount", tgt)
	return format, bind, err
}
