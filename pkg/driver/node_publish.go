package driver

import (
	"context"
	"errors"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// NodePublishVolume implements csi.NodeServer.
func (n *nodeService) NodePublishVolume(ctx context.Context, req *csi.NodePublishVolumeRequest) (*csi.NodePublishVolumeResponse, error) {
	if err := checkVolumeID(req.GetVolumeId()); err != nil {
		return nil, err
	}
	target, staging := req.GetTargetPath(), req.GetStagingTargetPath()
	if err := checkPath("target path", target); err != nil {
		return nil, err
	}
	v, err := n.parseNodeVolume(req.GetVolumeId(), req.GetVolumeCapability(), req.GetPublishContext(), req.GetVolumeContext())
	if err != nil {
		return nil, err
	}
	if staging == "" {
		return nil, status.Error(codes.FailedPrecondition, "staging target path is not set: NodeStageVolume must run first")
	}
	if err := checkPath("staging target path", staging); err != nil {
		return nil, err
	}
	if target == staging {
		return nil, invalid("target path and staging target path are both %s", target)
	}
	ro := v.readOnly || req.GetReadonly()
	unlock, err := n.lock(ctx, v.id)
	if err != nil {
		return nil, err
	}
	defer unlock()

	staged := staging
	if v.block {
		staged = blockStagingFile(staging, v.id)
	}
	dev, err := n.ensureStaged(ctx, v, staging, staged)
	if err != nil {
		return nil, err
	}
	if v.mode == csi.VolumeCapability_AccessMode_SINGLE_NODE_SINGLE_WRITER {
		users, err := n.deviceUsers(dev, staged, target)
		if err != nil {
			return nil, status.Errorf(codes.Internal, "checking other users of volume %s: %v", v.id, err)
		}
		if len(users) > 0 {
			return nil, status.Errorf(codes.FailedPrecondition, "volume %s has a single-writer access mode and is already published at %s", v.id, describeUsers(users))
		}
	}
	if v.block {
		err = n.publishBlock(ctx, v, dev, staged, target, ro)
	} else {
		err = n.publishMount(ctx, v, dev, staging, target, ro)
	}
	if err != nil {
		return nil, err
	}
	return &csi.NodePublishVolumeResponse{}, nil
}

// ensureStaged returns the volume's device once staged holds it. A stale staging mount (the
// device was renumbered or vanished, or the mount point broke) is repaired by staging again; a
// volume that was never staged is a FailedPrecondition.
func (n *nodeService) ensureStaged(ctx context.Context, v *nodeVolume, staging, staged string) (string, error) {
	dev, err := n.initiator.Device(ctx, v.nqn)
	if err != nil && !errors.Is(err, nvme.ErrNotConnected) {
		return "", toStatus(err, "looking up the device of volume %s", v.id)
	}
	state, why, err := n.checkMount(staged, dev, v.block)
	if err != nil {
		return "", status.Errorf(codes.Internal, "checking staging path %s: %v", staged, err)
	}
	switch state {
	case notMounted:
		return "", status.Errorf(codes.FailedPrecondition, "volume %s is not staged at %s", v.id, staging)
	case mountedStale:
		klog.InfoS("Staging mount is stale, staging again before publishing", "volume", v.id, "staging", staging, "reason", why)
		if err := n.stage(ctx, v, staging); err != nil {
			return "", err
		}
		if dev, err = n.initiator.Device(ctx, v.nqn); err != nil {
			return "", toStatus(err, "looking up the device of volume %s", v.id)
		}
	}
	return dev, nil
}

func (n *nodeService) publishMount(ctx context.Context, v *nodeVolume, dev, staging, target string, ro bool) error {
	ok, err := n.repairStale(ctx, v.id, target, dev, false)
	if err != nil {
		return err
	}
	if ok {
		if isRO, err := n.mountReadOnly(target); err != nil {
			return status.Errorf(codes.Internal, "checking %s: %v", target, err)
		} else if isRO != ro {
			return status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with read-only=%v", v.id, target, isRO)
		}
		klog.V(4).InfoS("Volume already published", "volume", v.id, "target", target)
		return nil
	}
	if fi, err := os.Lstat(target); err == nil && !fi.IsDir() {
		return status.Errorf(codes.InvalidArgument, "target path %s exists and is not a directory", target)
	}
	if err := os.MkdirAll(target, 0o750); err != nil {
		return status.Errorf(codes.Internal, "creating target path %s: %v", target, err)
	}
	opts := []string{"bind"}
	if ro {
		opts = append(opts, "ro")
	}
	opts = append(opts, v.mountFlags...)
	err = n.bounded(ctx, v.id, "bind mounting "+staging+" onto "+target, n.mountTimeout, func() error {
		return n.mounter.Mount(staging, target, "", opts)
	})
	if err != nil {
		return toStatus(err, "bind mounting %s onto %s", staging, target)
	}
	klog.InfoS("Volume published", "volume", v.id, "target", target, "readonly", ro)
	return nil
}

// publishBlock bind mounts the device node onto target. A read-only bind mount does not stop
// writes to a device node, so read-only is enforced with the device's own read-only flag; that
// flag is per device, so read-only and read-write publishes of one volume cannot coexist here.
func (n *nodeService) publishBlock(ctx context.Context, v *nodeVolume, dev, staged, target string, ro bool) error {
	ok, err := n.repairStale(ctx, v.id, target, dev, true)
	if err != nil {
		return err
	}
	curRO, err := n.mounter.DeviceReadOnly(dev)
	if err != nil {
		return status.Errorf(codes.Internal, "reading the read-only flag of %s: %v", dev, err)
	}
	if ok {
		if curRO != ro {
			return status.Errorf(codes.AlreadyExists, "volume %s is already published at %s with read-only=%v", v.id, target, curRO)
		}
		klog.V(4).InfoS("Block volume already published", "volume", v.id, "target", target)
		return nil
	}
	if curRO != ro {
		users, err := n.deviceUsers(dev, staged, target)
		if err != nil {
			return status.Errorf(codes.Internal, "checking other users of volume %s: %v", v.id, err)
		}
		if len(users) > 0 {
			return status.Errorf(codes.FailedPrecondition, "volume %s is published with read-only=%v at %s; a raw block volume cannot be read-only and read-write on one node at once", v.id, curRO, describeUsers(users))
		}
		if err := n.mounter.SetDeviceReadOnly(dev, ro); err != nil {
			return status.Errorf(codes.Internal, "setting read-only=%v on %s: %v", ro, dev, err)
		}
	}
	if err := n.bindDevice(ctx, v.id, dev, target, ro); err != nil {
		return err
	}
	klog.InfoS("Block volume published", "volume", v.id, "device", dev, "target", target, "readonly", ro)
	return nil
}

// NodeUnpublishVolume implements csi.NodeServer.
func (n *nodeService) NodeUnpublishVolume(ctx context.Context, req *csi.NodeUnpublishVolumeRequest) (*csi.NodeUnpublishVolumeResponse, error) {
	id, target := req.GetVolumeId(), req.GetTargetPath()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if err := checkPath("target path", target); err != nil {
		return nil, err
	}
	unlock, err := n.lock(ctx, id)
	if err != nil {
		return nil, err
	}
	defer unlock()
	if err := n.unmountAll(ctx, id, target); err != nil {
		return nil, toStatus(err, "unpublishing volume %s", id)
	}
	if err := n.removeMountPoint(target); err != nil {
		return nil, status.Errorf(codes.Internal, "unpublishing volume %s: %v", id, err)
	}
	klog.InfoS("Volume unpublished", "volume", id, "target", target)
	return &csi.NodeUnpublishVolumeResponse{}, nil
}
