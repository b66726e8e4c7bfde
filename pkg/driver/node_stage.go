package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// Raw block volumes are staged as a bind mount of the device node onto <staging>/<volume ID>: a
// mark that says "staged" and goes away by itself on reboot, like the filesystem mount does.
func blockStagingFile(staging, volID string) string { return filepath.Join(staging, volID) }

// NodeStageVolume implements csi.NodeServer.
func (n *nodeService) NodeStageVolume(ctx context.Context, req *csi.NodeStageVolumeRequest) (*csi.NodeStageVolumeResponse, error) {
	if err := checkVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	if err := checkPath("staging target path", req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	v, err := n.parseNodeVolume(req.GetVolumeId(), req.GetVolumeCapability(), req.GetPublishContext(), req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	unlock, err := n.lock(ctx, v.id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := n.stage(ctx, v, req.GetStagingTargetPath()); err != nil {
		return nil, err
	}
	return &csi.NodeStageVolumeResponse{}, nil
}

// stage connects the volume and mounts it at staging; the caller holds the volume lock.
func (n *nodeService) stage(ctx context.Context, v *nodeVolume, staging string) error {
	dev, err := n.initiator.Connect(ctx, v.target)
	if err != nil {
		return toStatus(err, "connecting volume %s", v.id)
	}
	n.clearStaleReadOnly(v.id, dev)
	if v.block {
		return n.stageBlock(ctx, v, dev, staging)
	}
	return n.stageMount(ctx, v, dev, staging)
}

// repairStale unmounts path while it holds something other than the volume's current device, and
// reports whether the current device is already mounted there.
func (n *nodeService) repairStale(ctx context.Context, id, path, dev string, block bool) (bool, error) {
	for i := 0; i < maxStackedMounts; i++ {
		state, why, err := n.checkMount(path, dev, block)
		if err != nil {
			return false, status.Errorf(codes.Internal, "checking %s: %v", path, err)
		}
		switch state {
		case mountedOK:
			return true, nil
		case notMounted:
			return false, nil
		}
		klog.InfoS("Stale mount found, unmounting it", "path", path, "reason", why)
		if err := n.unmount(ctx, id, path); err != nil {
			return false, toStatus(err, "unmounting stale mount %s (%s)", path, why)
		}
	}
	return false, status.Errorf(codes.Internal, "%s still has stale mounts after %d unmounts", path, maxStackedMounts)
}

func (n *nodeService) stageMount(ctx context.Context, v *nodeVolume, dev, staging string) error {
	ok, err := n.repairStale(ctx, v.id, staging, dev, false)
	if err != nil {
		return err
	}
	if ok {
		if at, err := n.mountsAt(staging); err == nil && len(at) > 0 && at[len(at)-1].FsType != v.fsType {
			return status.Errorf(codes.AlreadyExists, "volume %s is already staged at %s as %s, not %s", v.id, staging, at[len(at)-1].FsType, v.fsType)
		}
		n.journal.done(v.id) // staged by a call that died before it could remove the record
		klog.V(4).InfoS("Volume already staged", "volume", v.id, "staging", staging, "device", dev)
		return nil
	}
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return status.Errorf(codes.Internal, "creating staging path %s: %v", staging, err)
	}
	existing, err := n.mounter.ProbeFilesystem(ctx, dev)
	if err != nil {
		return err
	}
	opts := v.mountOptions()
	switch existing {
	case "":
		if v.readOnly {
			return status.Errorf(codes.FailedPrecondition, "volume %s is blank and cannot be formatted for a read-only access mode", v.id)
		}
		if err := n.confirmBlank(v.id, dev); err != nil {
			again, since := n.journal.interrupted(v.id)
			if !again || status.Code(err) != codes.FailedPrecondition {
				return err
			}
			klog.InfoS("Formatting again a volume whose format by this node was interrupted: it was blank before that format began, and only that format wrote to it",
				"volume", v.id, "device", dev, "formatBegan", since)
		}
		if err := n.journal.begin(v.id, dev); err != nil {
			return status.Errorf(codes.Internal, "volume %s: cannot record the format about to begin, so nothing was formatted: %v", v.id, err)
		}
		klog.InfoS("Formatting blank volume", "volume", v.id, "device", dev, "fsType", v.fsType)
		err := n.bounded(ctx, v.id, "formatting and mounting "+dev+" at "+staging, n.formatTimeout+n.mountTimeout, func() error {
			return n.mounter.FormatAndMount(dev, staging, v.fsType, opts, formatOptions(v.fsType))
		})
		if err != nil {
			return toStatus(err, "formatting and mounting volume %s (%s) at %s", v.id, dev, staging)
		}
		n.journal.done(v.id)
	case v.fsType:
		err := n.bounded(ctx, v.id, "mounting "+dev+" at "+staging, n.mountTimeout, func() error {
			return n.mounter.Mount(dev, staging, v.fsType, append(opts, "defaults"))
		})
		if err != nil {
			if again, since := n.journal.interrupted(v.id); again && status.Code(toStatus(err, "")) != codes.DeadlineExceeded {
				// mkfs was killed after it wrote a superblock. The half-made filesystem most
				// likely holds nothing, but a failed mount alone does not prove that nobody used
				// it since (it may have been staged elsewhere and damaged there): an operator
				// decides, nothing is formatted on a guess.
				return status.Errorf(codes.FailedPrecondition, "volume %s: the %s filesystem on %s does not mount (%v), and this node's format of the volume, begun %s, never finished: if the volume never held data, delete and recreate it (or run mkfs on it by hand); nothing was formatted",
					v.id, v.fsType, dev, err, since.UTC().Format(time.RFC3339))
			}
			return toStatus(err, "mounting volume %s (%s) at %s", v.id, dev, staging)
		}
		n.journal.done(v.id) // a format that completed before its record could be removed
	default:
		return status.Errorf(codes.FailedPrecondition, "volume %s holds %s, not the requested %s: it is neither formatted nor mounted", v.id, existing, v.fsType)
	}
	if state, why, err := n.checkMount(staging, dev, false); err != nil || state != mountedOK {
		return status.Errorf(codes.Internal, "volume %s was mounted at %s but the mount table disagrees: %s %v", v.id, staging, why, err)
	}
	klog.InfoS("Volume staged", "volume", v.id, "device", dev, "staging", staging, "fsType", v.fsType)
	return nil
}

// confirmBlank fails the stage unless the ends of dev read back as zeros: blkid's "blank" is only
// believed when the device can be read and holds nothing there.
func (n *nodeService) confirmBlank(id, dev string) error {
	err := n.mounter.DeviceEdgesBlank(dev)
	var nb *notBlankError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &nb):
		return status.Errorf(codes.FailedPrecondition, "volume %s is not blank: blkid found no filesystem on %s, but %v within its first or last MiB; nothing was formatted", id, dev, err)
	default:
		return status.Errorf(codes.Internal, "volume %s: %s could not be read to confirm that it is blank, so nothing was formatted: %v", id, dev, err)
	}
}

// formatOptions are the mkfs options put before mount-utils' own (-F -m0 for ext4, -f for xfs).
// mkfs discards the whole device by default: on a volume that is not blank after all, that erases
// what the blank check cannot see, and on the RDS a discard of a whole volume is a long, heavy
// operation for nothing (the file is already sparse).
func formatOptions(fsType string) []string {
	switch fsType {
	case "ext4", "ext3":
		return []string{"-E", "nodiscard"}
	case "xfs":
		return []string{"-K"}
	}
	return nil
}

func (n *nodeService) stageBlock(ctx context.Context, v *nodeVolume, dev, staging string) error {
	if err := os.MkdirAll(staging, 0o750); err != nil {
		return status.Errorf(codes.Internal, "creating staging path %s: %v", staging, err)
	}
	mark := blockStagingFile(staging, v.id)
	ok, err := n.repairStale(ctx, v.id, mark, dev, true)
	if err != nil {
		return err
	}
	if ok {
		klog.V(4).InfoS("Volume already staged", "volume", v.id, "staging", mark, "device", dev)
		return nil
	}
	if err := n.bindDevice(ctx, v.id, dev, mark, false); err != nil {
		return err
	}
	klog.InfoS("Block volume staged", "volume", v.id, "device", dev, "staging", mark)
	return nil
}

// bindDevice bind mounts a device node onto a file, creating the file if needed.
func (n *nodeService) bindDevice(ctx context.Context, id, dev, file string, ro bool) error {
	if err := os.MkdirAll(filepath.Dir(file), 0o750); err != nil {
		return status.Errorf(codes.Internal, "creating %s: %v", filepath.Dir(file), err)
	}
	fi, err := os.Lstat(file)
	switch {
	case os.IsNotExist(err):
		f, err := os.OpenFile(file, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o640)
		if err != nil {
			return status.Errorf(codes.Internal, "creating %s: %v", file, err)
		}
		_ = f.Close()
	case err != nil:
		return status.Errorf(codes.Internal, "checking %s: %v", file, err)
	case fi.IsDir():
		return status.Errorf(codes.InvalidArgument, "%s is a directory, a raw block volume needs a file", file)
	}
	opts := []string{"bind"}
	if ro {
		opts = append(opts, "ro")
	}
	err = n.bounded(ctx, id, "bind mounting "+dev+" onto "+file, n.mountTimeout, func() error {
		return n.mounter.Mount(dev, file, "", opts)
	})
	if err != nil {
		return toStatus(err, "bind mounting %s onto %s", dev, file)
	}
	return nil
}

// NodeUnstageVolume implements csi.NodeServer.
func (n *nodeService) NodeUnstageVolume(ctx context.Context, req *csi.NodeUnstageVolumeRequest) (*csi.NodeUnstageVolumeResponse, error) {
	id, staging := req.GetVolumeId(), req.GetStagingTargetPath()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if err := checkPath("staging target path", staging); err != nil {
		return nil, err
	}
	unlock, err := n.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	// The filesystem first: while it is mounted, <staging>/<id> is a path inside the user's
	// filesystem and must not be touched.
	if err := n.unmountAll(ctx, id, staging); err != nil {
		return nil, toStatus(err, "unstaging volume %s", id)
	}
	mark := blockStagingFile(staging, id)
	if err := n.unmountAll(ctx, id, mark); err != nil {
		return nil, toStatus(err, "unstaging volume %s", id)
	}
	if err := n.removeMountPoint(mark); err != nil {
		return nil, status.Errorf(codes.Internal, "unstaging volume %s: %v", id, err)
	}
	// The staging directory belongs to the CO and stays.
	if err := n.disconnectIfUnused(ctx, id); err != nil {
		return nil, err
	}
	klog.InfoS("Volume unstaged", "volume", id, "staging", staging)
	return &csi.NodeUnstageVolumeResponse{}, nil
}

// disconnectIfUnused disconnects the volume's subsystem unless its device is still in use on this
// node. A device still mounted elsewhere (a publish target that was not unpublished, a mount made
// by hand, a device-mapper holder) is left connected and the unstage still succeeds: the staging
// path is clean, which is all NodeUnstageVolume promises; tearing the device away from a live
// mount would lose that mount's data; and the connection left behind is reused by the next stage
// or dropped by the kernel after ctrl_loss_tmo once the controller removes the export.
func (n *nodeService) disconnectIfUnused(ctx context.Context, id string) error {
	nqn := volid.NQN(id)
	if !volid.Owned(nqn) {
		return status.Errorf(codes.Internal, "NQN %s of volume %s is not owned by this driver", nqn, id)
	}
	dev, err := n.initiator.Device(ctx, nqn)
	if errors.Is(err, nvme.ErrNotConnected) {
		// No block device, but possibly a controller: one that connected and never got its
		// namespace (the stage failed waiting for it), or one whose namespace went away. Nothing
		// on this node can be using it, and left alone it would reconnect to the RDS forever
		// (ctrl_loss_tmo -1). Disconnect is a no-op when no controller exists for the NQN.
		if err := n.initiator.Disconnect(ctx, nqn); err != nil {
			return toStatus(err, "disconnecting volume %s, which has no block device on this node", id)
		}
		return nil
	}
	if err != nil {
		return toStatus(err, "looking up the device of volume %s", id)
	}
	users, err := n.deviceUsers(dev)
	if err != nil {
		return status.Errorf(codes.Internal, "checking whether %s (volume %s) is still in use: %v", dev, id, err)
	}
	if len(users) > 0 {
		klog.InfoS("Volume unstaged but its device is still in use on this node: not disconnecting it", "volume", id, "device", dev, "users", users)
		return nil
	}
	// The read-only flag belongs to the block device, and loop devices outlive their attachment:
	// hand the device back as we found it.
	if ro, err := n.mounter.DeviceReadOnly(dev); err == nil && ro {
		if err := n.mounter.SetDeviceReadOnly(dev, false); err != nil {
			klog.ErrorS(err, "Could not clear the read-only flag before disconnecting", "volume", id, "device", dev)
		}
	}
	if err := n.initiator.Disconnect(ctx, nqn); err != nil {
		return toStatus(err, "disconnecting volume %s", id)
	}
	return nil
}

// clearStaleReadOnly makes a device that nothing on this node uses writable again. The kernel's
// read-only flag lives on the block device, not the volume: a read-only raw block publish sets it,
// and a device name reused later (loop devices are) would otherwise keep it, so that a new volume
// could not even be formatted or have its journal replayed.
func (n *nodeService) clearStaleReadOnly(id, dev string) {
	ro, err := n.mounter.DeviceReadOnly(dev)
	if err != nil || !ro {
		return
	}
	users, err := n.deviceUsers(dev)
	if err != nil || len(users) > 0 {
		return
	}
	if err := n.mounter.SetDeviceReadOnly(dev, false); err != nil {
		klog.ErrorS(err, "Could not clear a stale read-only flag", "volume", id, "device", dev)
		return
	}
	klog.InfoS("Cleared a stale read-only flag on an unused device", "volume", id, "device", dev)
}

// describeUsers is for messages.
func describeUsers(users []string) string {
	if len(users) > 3 {
		return fmt.Sprintf("%s and %d more", strings.Join(users[:3], ", "), len(users)-3)
	}
	return strings.Join(users, ", ")
}
