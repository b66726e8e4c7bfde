package driver

import (
	"context"
	"regexp"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/attachment"
)

// nodeIDRE accepts Kubernetes node names (DNS subdomains) and similar host identifiers.
var nodeIDRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9._-]{0,251}[A-Za-z0-9])?$`)

func validateNodeID(id string) error {
	if id == "" {
		return invalid("node ID is missing")
	}
	if !nodeIDRE.MatchString(id) {
		return invalid("node ID %q is not a valid node name", id)
	}
	return nil
}

// ControllerPublishVolume implements csi.ControllerServer. The attacher decides whether the node
// may take the volume; the answer carries what the node needs to connect.
func (d *Driver) ControllerPublishVolume(ctx context.Context, req *csi.ControllerPublishVolumeRequest) (*csi.ControllerPublishVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if err := validateNodeID(req.GetNodeId()); err != nil {
		return nil, err
	}
	vcap := req.GetVolumeCapability()
	if err := checkCapability(vcap); err != nil {
		return nil, err
	}
	if !d.attacher.Ready() {
		return nil, status.Error(codes.Unavailable, "attachment state is still being rebuilt; retry shortly")
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)

	disk, err := d.backend.GetDisk(ctx, id)
	if err != nil {
		return nil, toStatus(err, "looking up volume %s", id)
	}
	exists, err := d.attacher.NodeExists(ctx, req.GetNodeId())
	if err != nil {
		return nil, toStatus(err, "looking up node %s", req.GetNodeId())
	}
	if !exists {
		return nil, status.Errorf(codes.NotFound, "node %s does not exist", req.GetNodeId())
	}
	areq := attachment.Request{
		VolumeID: id, NodeID: req.GetNodeId(), ReadOnly: req.GetReadonly(),
		MultiNode:        vcap.GetBlock() != nil && isMultiNode(vcap.GetAccessMode().GetMode()),
		MigrationTimeout: attachment.MigrationTimeoutOf(req.GetVolumeContext()),
	}
	if err := d.attacher.Attach(ctx, areq); err != nil {
		return nil, toStatus(err, "attaching volume %s", id)
	}
	klog.InfoS("Volume published", "volume", id, "node", req.GetNodeId(), "readonly", req.GetReadonly())
	return &csi.ControllerPublishVolumeResponse{PublishContext: d.publishContext(disk.NQN, disk.Port, disk.FilePath, req.GetVolumeContext())}, nil
}

func (d *Driver) publishContext(nqn string, port int, filePath string, vc map[string]string) map[string]string {
	def := d.opts.DefaultParams.withFallbacks()
	addr := vc[ContextNVMeAddress]
	if addr == "" {
		addr = def.NVMeAddress
	}
	if port == 0 {
		port = def.NVMePort
		if p, err := strconv.Atoi(vc[ContextNVMePort]); err == nil {
			port = p
		}
	}
	if nqn == "" {
		nqn = vc[ContextNQN]
	}
	return map[string]string{ContextNVMeAddress: addr, ContextNVMePort: strconv.Itoa(port), ContextNQN: nqn, ContextFilePath: filePath}
}

// ControllerUnpublishVolume implements csi.ControllerServer. It is idempotent, and an empty node
// ID releases the volume from every node, as the CSI spec says.
func (d *Driver) ControllerUnpublishVolume(ctx context.Context, req *csi.ControllerUnpublishVolumeRequest) (*csi.ControllerUnpublishVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if n := req.GetNodeId(); n != "" {
		if err := validateNodeID(n); err != nil {
			return nil, err
		}
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)
	if err := d.attacher.Detach(ctx, id, req.GetNodeId()); err != nil {
		return nil, toStatus(err, "detaching volume %s", id)
	}
	klog.InfoS("Volume unpublished", "volume", id, "node", req.GetNodeId())
	return &csi.ControllerUnpublishVolumeResponse{}, nil
}
