package driver

import (
	"context"
	"strconv"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/wrapperspb"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

const sizeAlign = 1 << 20 // volumes are whole MiB: NVMe namespaces want whole blocks, users whole units

// ControllerGetCapabilities implements csi.ControllerServer.
func (d *Driver) ControllerGetCapabilities(context.Context, *csi.ControllerGetCapabilitiesRequest) (*csi.ControllerGetCapabilitiesResponse, error) {
	var caps []*csi.ControllerServiceCapability
	for _, c := range controllerCaps() {
		caps = append(caps, &csi.ControllerServiceCapability{Type: &csi.ControllerServiceCapability_Rpc{
			Rpc: &csi.ControllerServiceCapability_RPC{Type: c}}})
	}
	return &csi.ControllerGetCapabilitiesResponse{Capabilities: caps}, nil
}

// sizeFor turns a capacity range into an exact size: the required bytes rounded up to a MiB,
// or less rounding when the limit leaves no room, never below the RDS minimum.
func sizeFor(cr *csi.CapacityRange, def int64) (int64, error) {
	req, lim := cr.GetRequiredBytes(), cr.GetLimitBytes()
	if req < 0 || lim < 0 {
		return 0, status.Errorf(codes.InvalidArgument, "capacity range must not be negative (required %d, limit %d)", req, lim)
	}
	if lim > 0 && req > lim {
		return 0, status.Errorf(codes.InvalidArgument, "required bytes %d exceed the limit %d", req, lim)
	}
	size := req
	if size == 0 {
		size = def
		if lim > 0 && lim < size {
			size = lim
		}
	}
	if size < rds.MinDiskSize {
		size = rds.MinDiskSize
	}
	if rounded := roundUp(size, sizeAlign); lim == 0 || rounded <= lim {
		size = rounded
	} else {
		size = roundUp(size, 4096)
	}
	if lim > 0 && size > lim {
		return 0, status.Errorf(codes.OutOfRange, "no volume size fits between %d and %d bytes (minimum %d, 4 KiB steps)", req, lim, rds.MinDiskSize)
	}
	if size > rds.MaxDiskSize {
		return 0, status.Errorf(codes.OutOfRange, "%d bytes is above the largest volume of %d bytes", size, rds.MaxDiskSize)
	}
	return size, nil
}

func roundUp(n, to int64) int64 {
	if r := n % to; r != 0 {
		return n + to - r
	}
	return n
}

func fitsRange(size int64, cr *csi.CapacityRange) bool {
	return size >= cr.GetRequiredBytes() && (cr.GetLimitBytes() == 0 || size <= cr.GetLimitBytes())
}

// CreateVolume implements csi.ControllerServer. It is idempotent by name: the volume ID is
// derived from the name, so a retry finds the volume the first attempt made.
func (d *Driver) CreateVolume(ctx context.Context, req *csi.CreateVolumeRequest) (*csi.CreateVolumeResponse, error) {
	id, err := volid.VolumeIDForName(req.GetName())
	if err != nil {
		return nil, invalid("%v", err)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return nil, err
	}
	params, err := parseParams(req.GetParameters(), d.opts.DefaultParams)
	if err != nil {
		return nil, err
	}
	size, err := sizeFor(req.GetCapacityRange(), d.opts.DefaultParams.withFallbacks().VolumeSize)
	if err != nil {
		return nil, err
	}
	sourceSlot, err := contentSourceSlot(req.GetVolumeContentSource())
	if err != nil {
		return nil, err
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)

	spec := rds.DiskSpec{
		Slot: id, FilePath: volid.FilePath(params.VolumePath, id), Size: size,
		Export: true, Port: params.NVMePort, NQN: volid.NQN(id),
	}
	if volid.IsEarlierSnapshotID(sourceSlot) {
		// The earlier driver's snapshot is copied only once its disk is shown to be one.
		if _, err := d.earlierSnapshot(ctx, sourceSlot); err != nil {
			return nil, err
		}
	}
	var disk *rds.Disk
	if sourceSlot != "" {
		disk, err = d.createFromSource(ctx, sourceSlot, spec, req.GetCapacityRange())
	} else {
		disk, err = d.backend.CreateDisk(ctx, spec)
	}
	if rds.IsAlreadyExists(err) && disk != nil {
		// A retry, or a name reused: the same request is answered with the same volume, and
		// anything that differs from what the RDS holds is a conflict.
		if err := compatible(id, req, disk, spec); err != nil {
			return nil, err
		}
		err = nil
	}
	if err != nil {
		return nil, toStatus(err, "creating volume %s", id)
	}
	klog.InfoS("Volume created", "volume", id, "name", req.GetName(), "bytes", disk.Size, "source", sourceSlot)
	return &csi.CreateVolumeResponse{Volume: &csi.Volume{
		VolumeId:      id,
		CapacityBytes: disk.Size,
		VolumeContext: params.volumeContext(disk.FilePath, volid.NQN(id)),
		ContentSource: req.GetVolumeContentSource(),
	}}, nil
}

// compatible checks an existing volume against a repeated CreateVolume: its size must fit the
// range, and its backing file and NVMe/TCP port must be the ones the parameters ask for (the
// volume context returned is built from the parameters, so a mismatch would send nodes to the
// wrong place).
func compatible(id string, req *csi.CreateVolumeRequest, disk *rds.Disk, spec rds.DiskSpec) error {
	switch {
	case !fitsRange(disk.Size, req.GetCapacityRange()):
		return status.Errorf(codes.AlreadyExists, "volume %s (name %q) exists with %d bytes, outside the requested range", id, req.GetName(), disk.Size)
	case disk.FilePath != "" && disk.FilePath != spec.FilePath:
		return status.Errorf(codes.AlreadyExists, "volume %s (name %q) exists with backing file %s, not %s as the parameters ask", id, req.GetName(), disk.FilePath, spec.FilePath)
	case disk.Exported && disk.Port != 0 && disk.Port != spec.Port:
		return status.Errorf(codes.AlreadyExists, "volume %s (name %q) is exported on port %d, not %d as the parameters ask", id, req.GetName(), disk.Port, spec.Port)
	}
	return nil
}

// contentSourceSlot returns the RDS slot to copy from, if any.
func contentSourceSlot(src *csi.VolumeContentSource) (string, error) {
	switch {
	case src == nil:
		return "", nil
	case src.GetSnapshot() != nil:
		id := src.GetSnapshot().GetSnapshotId()
		if !isSnapshotID(id) && !(volid.IsEarlierSnapshotID(id) && volid.ValidateSlot(id) == nil) {
			return "", status.Errorf(codes.NotFound, "snapshot %q not found", id)
		}
		return id, nil
	case src.GetVolume() != nil:
		id := src.GetVolume().GetVolumeId()
		if err := checkVolumeID(id); err != nil {
			return "", status.Errorf(codes.NotFound, "source volume %q not found", id)
		}
		return id, nil
	default:
		return "", invalid("unsupported volume content source")
	}
}

// createFromSource copies the source into a new volume. The source must exist even when the
// volume does already (a repeat): the RDS does not record where a volume came from, so this is
// how a repeat naming a missing source is refused instead of being echoed back.
func (d *Driver) createFromSource(ctx context.Context, source string, spec rds.DiskSpec, cr *csi.CapacityRange) (*rds.Disk, error) {
	src, err := d.backend.GetDisk(ctx, source)
	if err != nil {
		if rds.IsNotFound(err) {
			return nil, status.Errorf(codes.NotFound, "content source %s not found", source)
		}
		return nil, err
	}
	if existing, err := d.backend.GetDisk(ctx, spec.Slot); err == nil {
		if existing.Size < src.Size {
			return nil, status.Errorf(codes.AlreadyExists, "volume %s exists with %d bytes, smaller than its content source %s (%d bytes): it was not made from it", spec.Slot, existing.Size, source, src.Size)
		}
		return existing, &rds.Error{Kind: rds.KindAlreadyExists, Message: "volume exists"}
	} else if !rds.IsNotFound(err) {
		return nil, err
	}
	if spec.Size < src.Size {
		if cr.GetLimitBytes() != 0 && cr.GetLimitBytes() < src.Size {
			return nil, status.Errorf(codes.OutOfRange, "content source %s holds %d bytes, more than the limit %d", source, src.Size, cr.GetLimitBytes())
		}
		spec.Size = src.Size
	}
	return d.backend.CopyDisk(ctx, source, spec)
}

// DeleteVolume implements csi.ControllerServer: the disk entry and its backing file both go, and a
// volume that is already gone is a success.
func (d *Driver) DeleteVolume(ctx context.Context, req *csi.DeleteVolumeRequest) (*csi.DeleteVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)
	if nodes := d.attacher.PublishedNodes(id); len(nodes) > 0 {
		return nil, status.Errorf(codes.FailedPrecondition, "volume %s is still published to %v", id, nodes)
	}
	if err := d.deleteDisk(ctx, "volume", id); err != nil {
		return nil, err
	}
	klog.InfoS("Volume deleted", "volume", id)
	return &csi.DeleteVolumeResponse{}, nil
}

// deleteDisk deletes a volume's or snapshot's disk and file. The file is looked for in the
// default volume directory when the disk entry that names it is gone already.
func (d *Driver) deleteDisk(ctx context.Context, kind, id string) error {
	fallback := volid.FilePath(d.opts.DefaultParams.withFallbacks().VolumePath, id)
	return toStatus(d.backend.DeleteDisk(ctx, id, fallback), "deleting %s %s", kind, id)
}

// getVolume looks up a volume by an incoming ID.
func (d *Driver) getVolume(ctx context.Context, id string) (*rds.Disk, error) {
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	disk, err := d.backend.GetDisk(ctx, id)
	return disk, toStatus(err, "looking up volume %s", id)
}

// ControllerExpandVolume implements csi.ControllerServer. Sizes are exact; a filesystem volume
// still needs the node to grow its filesystem.
func (d *Driver) ControllerExpandVolume(ctx context.Context, req *csi.ControllerExpandVolumeRequest) (*csi.ControllerExpandVolumeResponse, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if req.GetCapacityRange() == nil {
		return nil, invalid("capacity range is missing")
	}
	if c := req.GetVolumeCapability(); c != nil {
		if err := checkCapability(c); err != nil {
			return nil, err
		}
	}
	size, err := sizeFor(req.GetCapacityRange(), 0)
	if err != nil {
		return nil, err
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)
	disk, err := d.backend.ResizeDisk(ctx, id, size)
	if err != nil {
		return nil, toStatus(err, "expanding volume %s", id)
	}
	nodeExpansion := req.GetVolumeCapability().GetBlock() == nil
	klog.InfoS("Volume expanded", "volume", id, "bytes", disk.Size)
	return &csi.ControllerExpandVolumeResponse{CapacityBytes: disk.Size, NodeExpansionRequired: nodeExpansion}, nil
}

// ValidateVolumeCapabilities implements csi.ControllerServer.
func (d *Driver) ValidateVolumeCapabilities(ctx context.Context, req *csi.ValidateVolumeCapabilitiesRequest) (*csi.ValidateVolumeCapabilitiesResponse, error) {
	id := req.GetVolumeId()
	if err := checkVolumeID(id); err != nil {
		return nil, err
	}
	if len(req.GetVolumeCapabilities()) == 0 {
		return nil, invalid("volume capabilities are missing")
	}
	if _, err := d.backend.GetDisk(ctx, id); err != nil {
		return nil, toStatus(err, "looking up volume %s", id)
	}
	if err := checkCapabilities(req.GetVolumeCapabilities()); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	if _, err := parseParams(req.GetParameters(), d.opts.DefaultParams); err != nil {
		return &csi.ValidateVolumeCapabilitiesResponse{Message: status.Convert(err).Message()}, nil
	}
	return &csi.ValidateVolumeCapabilitiesResponse{Confirmed: &csi.ValidateVolumeCapabilitiesResponse_Confirmed{
		VolumeContext:      req.GetVolumeContext(),
		VolumeCapabilities: req.GetVolumeCapabilities(),
		Parameters:         req.GetParameters(),
	}}, nil
}

// GetCapacity implements csi.ControllerServer: the free space of the pool that would hold the
// volume.
func (d *Driver) GetCapacity(ctx context.Context, req *csi.GetCapacityRequest) (*csi.GetCapacityResponse, error) {
	for _, c := range req.GetVolumeCapabilities() {
		if err := checkCapability(c); err != nil {
			return nil, err
		}
	}
	params, err := parseParams(req.GetParameters(), d.opts.DefaultParams)
	if err != nil {
		return nil, err
	}
	pool := poolOf(params.VolumePath)
	c, err := d.backend.PoolCapacity(ctx, pool)
	if err != nil {
		return nil, toStatus(err, "reading capacity of pool %s", pool)
	}
	return &csi.GetCapacityResponse{AvailableCapacity: c.Free, MaximumVolumeSize: wrapperspb.Int64(min(c.Free, rds.MaxDiskSize))}, nil
}

func volumeFromDisk(disk *rds.Disk, def Defaults) *csi.Volume {
	def = def.withFallbacks()
	vc := map[string]string{ContextNQN: disk.NQN, ContextFilePath: disk.FilePath}
	if disk.Port != 0 {
		vc[ContextNVMePort] = strconv.Itoa(disk.Port)
	}
	if def.NVMeAddress != "" {
		vc[ContextNVMeAddress] = def.NVMeAddress
	}
	return &csi.Volume{VolumeId: disk.Slot, CapacityBytes: disk.Size, VolumeContext: vc}
}
