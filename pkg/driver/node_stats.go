package driver

import (
	"context"
	"errors"
	"os"
	"path/filepath"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"
	mount "k8s.io/mount-utils"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// checkVolumeAndPath validates the volume ID and then the volume path of stats and expand calls.
// No volume can live at a relative path, so that is NotFound (as csi-sanity expects), not
// InvalidArgument.
func checkVolumeAndPath(id, p string) error {
	if err := checkVolumeID(id); err != nil {
		return err
	}
	if p == "" {
		return invalid("volume path is missing")
	}
	if !filepath.IsAbs(p) || filepath.Clean(p) != p {
		return status.Errorf(codes.NotFound, "no volume at %q: volume paths are absolute and clean", p)
	}
	return nil
}

// statVolumePath stats a staging or publish path: NotFound when absent, Unavailable when the mount
// point is broken.
func (n *nodeService) statVolumePath(id, p string) (os.FileInfo, error) {
	fi, err := n.mounter.Stat(p)
	switch {
	case os.IsNotExist(err):
		return nil, status.Errorf(codes.NotFound, "volume %s: %s does not exist", id, p)
	case mount.IsCorruptedMnt(err):
		return nil, status.Errorf(codes.Unavailable, "volume %s: the mount at %s is broken (%v); NodeGetVolumeHealth reports it", id, p, err)
	case err != nil:
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	return fi, nil
}

func isBlockDevice(fi os.FileInfo) bool {
	return fi.Mode()&os.ModeDevice != 0 && fi.Mode()&os.ModeCharDevice == 0
}

// NodeGetVolumeStats implements csi.NodeServer.
func (n *nodeService) NodeGetVolumeStats(_ context.Context, req *csi.NodeGetVolumeStatsRequest) (*csi.NodeGetVolumeStatsResponse, error) {
	id, p := req.GetVolumeId(), req.GetVolumePath()
	if err := checkVolumeAndPath(id, p); err != nil {
		return nil, err
	}
	fi, err := n.statVolumePath(id, p)
	if err != nil {
		return nil, err
	}
	if isBlockDevice(fi) {
		size, err := n.mounter.DeviceSize(p)
		if err != nil {
			return nil, status.Errorf(codes.Unavailable, "volume %s: size of %s: %v", id, p, err)
		}
		return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{{Unit: csi.VolumeUsage_BYTES, Total: size}}}, nil
	}
	at, err := n.mountsAt(p)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	}
	if len(at) == 0 {
		return nil, status.Errorf(codes.NotFound, "volume %s is not mounted at %s", id, p)
	}
	var st unix.Statfs_t
	if err := unix.Statfs(p, &st); err != nil {
		return nil, status.Errorf(codes.Unavailable, "volume %s: statfs %s: %v", id, p, err)
	}
	bs := int64(st.Bsize) //nolint:unconvert // the type of Bsize depends on the platform
	return &csi.NodeGetVolumeStatsResponse{Usage: []*csi.VolumeUsage{
		{Unit: csi.VolumeUsage_BYTES, Total: int64(st.Blocks) * bs, Available: int64(st.Bavail) * bs, Used: int64(st.Blocks-st.Bfree) * bs},
		{Unit: csi.VolumeUsage_INODES, Total: int64(st.Files), Available: int64(st.Ffree), Used: int64(st.Files - st.Ffree)},
	}}, nil
}

// NodeExpandVolume implements csi.NodeServer.
func (n *nodeService) NodeExpandVolume(ctx context.Context, req *csi.NodeExpandVolumeRequest) (*csi.NodeExpandVolumeResponse, error) {
	id, p := req.GetVolumeId(), req.GetVolumePath()
	if err := checkVolumeAndPath(id, p); err != nil {
		return nil, err
	}
	unlock, err := n.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	fi, err := n.statVolumePath(id, p)
	if err != nil {
		return nil, err
	}
	nqn := volid.NQN(id)
	if err := n.initiator.Rescan(ctx, nqn); err != nil {
		if errors.Is(err, nvme.ErrNotConnected) {
			return nil, status.Errorf(codes.NotFound, "volume %s is not attached to this node", id)
		}
		return nil, toStatus(err, "rescanning volume %s", id)
	}
	dev, err := n.initiator.Device(ctx, nqn)
	if errors.Is(err, nvme.ErrNotConnected) {
		return nil, status.Errorf(codes.NotFound, "volume %s is not attached to this node", id)
	}
	if err != nil {
		return nil, toStatus(err, "looking up the device of volume %s", id)
	}
	size, err := n.mounter.DeviceSize(dev)
	if err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: size of %s: %v", id, dev, err)
	}
	if want := req.GetCapacityRange().GetRequiredBytes(); want > size {
		return nil, status.Errorf(codes.Unavailable, "volume %s: %s is %d bytes after a rescan, the new size %d is not visible yet", id, dev, size, want)
	}
	if req.GetVolumeCapability().GetBlock() != nil || isBlockDevice(fi) {
		return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
	}
	state, why, err := n.checkMount(p, dev, false)
	switch {
	case err != nil:
		return nil, status.Errorf(codes.Internal, "volume %s: %v", id, err)
	case state == notMounted:
		return nil, status.Errorf(codes.NotFound, "volume %s is not mounted at %s", id, p)
	case state == mountedStale:
		return nil, status.Errorf(codes.Unavailable, "volume %s: stale mount at %s (%s); it is repaired by the next stage", id, p, why)
	}
	if err := n.mounter.Resize(dev, p); err != nil {
		return nil, status.Errorf(codes.Internal, "volume %s: growing the filesystem on %s: %v", id, dev, err)
	}
	klog.InfoS("Volume expanded on the node", "volume", id, "device", dev, "path", p, "bytes", size)
	return &csi.NodeExpandVolumeResponse{CapacityBytes: size}, nil
}

// NodeGetVolumeHealth implements csi.NodeServer. CSI 1.13 replaced the volume condition of
// NodeGetVolumeStats with this RPC. Problems are reported as INACCESSIBLE entries: the device is
// gone, no NVMe controller is live, or a staging or publish path does not hold the volume's
// current device (renumbered after a reconnect, or a broken mount point).
func (n *nodeService) NodeGetVolumeHealth(ctx context.Context, req *csi.NodeGetVolumeHealthRequest) (*csi.NodeGetVolumeHealthResponse, error) {
	id, pub, staging := req.GetVolumeId(), req.GetVolumePublishPath(), req.GetStagingTargetPath()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	for what, p := range map[string]string{"volume publish path": pub, "staging target path": staging} {
		if p != "" {
			if err := checkPath(what, p); err != nil {
				return nil, err
			}
		}
	}
	nqn := volid.NQN(id)
	dev, err := n.initiator.Device(ctx, nqn)
	if err != nil && !errors.Is(err, nvme.ErrNotConnected) {
		return nil, toStatus(err, "looking up the device of volume %s", id)
	}
	if dev == "" && pub == "" && staging == "" {
		return nil, status.Errorf(codes.NotFound, "volume %s is not attached to this node", id)
	}
	h := &csi.VolumeHealth{VolumeId: id}
	seen := map[string]bool{}
	add := func(reason, msg string) {
		if !seen[reason] {
			seen[reason] = true
			h.HealthStatuses = append(h.HealthStatuses, &csi.VolumeHealth_VolumeHealthEntry{
				Status: csi.VolumeHealthErrorType_INACCESSIBLE, Reason: reason, Message: msg})
		}
	}
	if dev == "" {
		add("DeviceNotFound", "the volume's NVMe namespace is not present on this node")
	} else if hc, ok := n.initiator.(nvme.HealthChecker); ok {
		if err := hc.Health(ctx, nqn); err != nil {
			add("NVMeControllerNotLive", err.Error())
		}
	}
	check := func(p, notMountedReason, staleReason string, block bool) {
		state, why, err := n.checkMount(p, dev, block)
		switch {
		case err != nil:
			add(staleReason, err.Error())
		case state == notMounted:
			add(notMountedReason, p+" does not hold the volume")
		case state == mountedStale:
			add(staleReason, why)
		}
	}
	if staging != "" {
		// A filesystem volume is mounted on the staging path itself; only when nothing is, the
		// block staging mark inside it is looked at (a user's file of that name is never taken
		// for one).
		if state, _, err := n.checkMount(staging, dev, false); err != nil || state != notMounted {
			check(staging, "NotStaged", "StagingMountStale", false)
		} else {
			check(blockStagingFile(staging, id), "NotStaged", "StagingMountStale", true)
		}
	}
	if pub != "" {
		block := false
		if fi, err := n.mounter.Stat(pub); err == nil {
			block = isBlockDevice(fi)
		}
		check(pub, "NotPublished", "PublishMountStale", block)
	}
	return &csi.NodeGetVolumeHealthResponse{VolumeHealth: h}, nil
}
