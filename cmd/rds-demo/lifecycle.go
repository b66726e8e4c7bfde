package main

import (
	"bytes"
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
)

func (d *demo) startProcesses(ctx context.Context) (string, error) {
	port, err := freePort()
	if err != nil {
		return "", err
	}
	addr := "127.0.0.1:" + strconv.Itoa(port)
	keyFile, authFile, err := writeClientKey(d.dir)
	if err != nil {
		return "", err
	}
	data := filepath.Join(d.dir, "rds-data")
	hostKey := filepath.Join(d.dir, "rds-host-key")
	if d.sim, err = startProc(d.dir, "rdssim", d.cfg.simBin, "--listen", addr, "--data-dir", data,
		"--authorized-keys", authFile, "--host-key", hostKey, "--pool-size", "200G"); err != nil {
		return "", err
	}
	waitCtx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	if err := waitTCP(waitCtx, addr); err != nil {
		return "", err
	}
	knownHosts, err := writeKnownHosts(waitCtx, d.dir, hostKey, addr)
	if err != nil {
		return "", err
	}
	d.rdsAddr, d.keyFile, d.knownHosts = addr, keyFile, knownHosts
	sock := filepath.Join(d.dir, "csi.sock")
	if d.drv, err = startProc(d.dir, "rds-csi", d.cfg.driverBin, "--mode", "all", "--endpoint", "unix://"+sock,
		"--node-id", nodeID, "--rds-address", addr, "--rds-key-file", keyFile, "--rds-known-hosts", knownHosts,
		"--nvme-backend", "loop", "--loop-root", data, "--v", "2"); err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(sock); err == nil {
			break
		}
		select {
		case <-waitCtx.Done():
			return "", fmt.Errorf("driver socket never appeared (see %s)", d.drv.log)
		case <-time.After(20 * time.Millisecond):
		}
	}
	d.conn, err = grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return "", err
	}
	d.id, d.ctl, d.node = csi.NewIdentityClient(d.conn), csi.NewControllerClient(d.conn), csi.NewNodeClient(d.conn)
	return fmt.Sprintf("simulator on %s, driver on %s", addr, sock), nil
}

func (d *demo) waitReady(ctx context.Context) (string, error) {
	for {
		r, err := d.id.Probe(ctx, &csi.ProbeRequest{})
		if err == nil && r.GetReady().GetValue() {
			info, err := d.id.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{})
			if err != nil {
				return "", err
			}
			return fmt.Sprintf("%s %s", info.Name, info.VendorVersion), nil
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("driver never became ready: %v", err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (d *demo) restoreAndVerify(ctx context.Context, checksum []byte) error {
	var volID string
	var pubCtx, volCtx map[string]string
	stage := filepath.Join(d.dir, "staging", "restored")
	target := filepath.Join(d.dir, "pods", "restored")
	steps := []struct {
		name string
		fn   func() (string, error)
	}{
		{"CreateVolume from the snapshot (3 GiB)", func() (string, error) {
			r, err := d.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "demo-restored", VolumeCapabilities: []*csi.VolumeCapability{mountCap},
				CapacityRange: &csi.CapacityRange{RequiredBytes: 3 * gib}, Parameters: map[string]string{"fsType": "xfs"},
				VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
					Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: d.snapshots[0]}}}})
			if err != nil {
				return "", err
			}
			volID, volCtx = r.Volume.VolumeId, r.Volume.VolumeContext
			d.volumes = append(d.volumes, volID)
			return fmt.Sprintf("%s, %d bytes", volID, r.Volume.CapacityBytes), nil
		}},
		{"ControllerPublishVolume (restored)", func() (string, error) {
			r, err := d.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: volID, NodeId: nodeID, VolumeCapability: mountCap, VolumeContext: volCtx})
			if err != nil {
				return "", err
			}
			pubCtx = r.PublishContext
			d.attached = append(d.attached, volID)
			return "", nil
		}},
		{"NodeStageVolume (restored: existing fs kept)", func() (string, error) { return d.stage(ctx, volID, stage, pubCtx, volCtx) }},
		{"NodePublishVolume (restored)", func() (string, error) { return d.publish(ctx, volID, stage, target, pubCtx, volCtx) }},
		{"read the file back from the restored volume", func() (string, error) {
			b, err := os.ReadFile(filepath.Join(target, dataFile))
			if err != nil {
				return "", err
			}
			sum := sha256.Sum256(b)
			if !bytes.Equal(sum[:], checksum) {
				return "", fmt.Errorf("checksum %x differs from the original %x", sum[:8], checksum[:8])
			}
			return fmt.Sprintf("sha256 %x matches", sum[:8]), nil
		}},
	}
	for _, s := range steps {
		if err := d.step(s.name, s.fn); err != nil {
			return err
		}
	}
	return nil
}

// teardown undoes everything in reverse order through the CSI API, then checks that nothing is
// left: no mounts, no loop devices, no backing files.
func (d *demo) teardown(ctx context.Context) error {
	for len(d.published) > 0 {
		t := d.published[len(d.published)-1]
		if err := d.step("NodeUnpublishVolume "+filepath.Base(t), func() (string, error) {
			_, err := d.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: d.stagedIDs[len(d.published)-1], TargetPath: t})
			return "", err
		}); err != nil {
			return err
		}
		d.published = d.published[:len(d.published)-1]
	}
	for len(d.staged) > 0 {
		i := len(d.staged) - 1
		if err := d.step("NodeUnstageVolume "+filepath.Base(d.staged[i]), func() (string, error) {
			_, err := d.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: d.stagedIDs[i], StagingTargetPath: d.staged[i]})
			return "", err
		}); err != nil {
			return err
		}
		d.staged, d.stagedIDs = d.staged[:i], d.stagedIDs[:i]
	}
	for len(d.attached) > 0 {
		v := d.attached[len(d.attached)-1]
		if err := d.step("ControllerUnpublishVolume "+v[:12], func() (string, error) {
			_, err := d.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v, NodeId: nodeID})
			return "", err
		}); err != nil {
			return err
		}
		d.attached = d.attached[:len(d.attached)-1]
	}
	for len(d.snapshots) > 0 {
		s := d.snapshots[0]
		if err := d.step("DeleteSnapshot", func() (string, error) {
			_, err := d.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: s})
			return "", err
		}); err != nil {
			return err
		}
		d.snapshots = d.snapshots[1:]
	}
	for len(d.volumes) > 0 {
		v := d.volumes[0]
		if err := d.step("DeleteVolume "+v[:12], func() (string, error) {
			_, err := d.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v})
			return "", err
		}); err != nil {
			return err
		}
		d.volumes = d.volumes[1:]
	}
	return d.step("nothing left behind (mounts, loop devices, .img files)", func() (string, error) { return d.leftovers() })
}

func (d *demo) leftovers() (string, error) {
	mounts, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return "", err
	}
	if strings.Contains(string(mounts), d.dir) {
		return "", fmt.Errorf("mounts under %s remain", d.dir)
	}
	out, err := exec.Command("losetup", "-a").Output()
	if err != nil {
		return "", err
	}
	if strings.Contains(string(out), d.dir) {
		return "", fmt.Errorf("loop devices remain: %s", out)
	}
	var imgs []string
	_ = filepath.Walk(filepath.Join(d.dir, "rds-data"), func(p string, info os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".img") {
			imgs = append(imgs, p)
		}
		return nil
	})
	if len(imgs) > 0 {
		return "", fmt.Errorf("backing files remain: %v", imgs)
	}
	return "clean", nil
}

// cleanup runs whether the demo passed or not: best-effort CSI teardown of what is still set up,
// then the processes stop and the work directory goes (only once nothing is mounted in it).
func (d *demo) cleanup() {
	if d.node != nil && (len(d.published) > 0 || len(d.staged) > 0) {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		for i := len(d.published) - 1; i >= 0; i-- {
			_, _ = d.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: d.stagedIDs[i], TargetPath: d.published[i]})
		}
		for i := len(d.staged) - 1; i >= 0; i-- {
			_, _ = d.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: d.stagedIDs[i], StagingTargetPath: d.staged[i]})
		}
		cancel()
	}
	if d.conn != nil {
		_ = d.conn.Close()
	}
	d.heal.stop()
	d.drv.stop()
	d.sim.stop()
	if d.dir == "" || d.cfg.keep {
		return
	}
	mounts, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mounts), d.dir) {
		fmt.Printf("work directory %s kept: something is still mounted in it\n", d.dir)
		return
	}
	_ = os.RemoveAll(d.dir)
}
