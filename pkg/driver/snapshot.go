package driver

import (
	"context"
	"path"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// A snapshot is an unexported copy of the source volume's file, made synchronously by the RDS, so
// it is ready as soon as CreateSnapshot returns. Its slot records its source and creation time.
// A copy can outlast the call (large volumes take minutes): a retry must find the copy already
// made or still running under the slot chosen first, never start a second one under a new
// creation time.

func snapshotFromDisk(disk *rds.Disk) (*csi.Snapshot, bool) {
	info, ok := volid.ParseSnapshotID(disk.Slot)
	if !ok {
		return nil, false
	}
	return &csi.Snapshot{
		SnapshotId: disk.Slot, SourceVolumeId: info.Source, SizeBytes: disk.Size,
		CreationTime: timestamppb.New(info.Created), ReadyToUse: true,
	}, true
}

// CreateSnapshot implements csi.ControllerServer; idempotent by name.
func (d *Driver) CreateSnapshot(ctx context.Context, req *csi.CreateSnapshotRequest) (*csi.CreateSnapshotResponse, error) {
	prefix, err := volid.SnapshotIDPrefix(req.GetName())
	if err != nil {
		return nil, invalid("%v", err)
	}
	source := req.GetSourceVolumeId()
	if source == "" {
		return nil, invalid("source volume ID is missing")
	}
	if err := checkVolumeID(source); err != nil {
		return nil, err
	}
	if err := d.inflight.lock(prefix); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(prefix)

	existing, err := d.backend.ListDisks(ctx, prefix)
	if err != nil {
		return nil, toStatus(err, "looking for snapshot %s", req.GetName())
	}
	for i := range existing {
		snap, ok := snapshotFromDisk(&existing[i])
		if !ok {
			continue
		}
		if snap.SourceVolumeId != source {
			return nil, status.Errorf(codes.AlreadyExists, "snapshot %q exists with source volume %s, not %s", req.GetName(), snap.SourceVolumeId, source)
		}
		return &csi.CreateSnapshotResponse{Snapshot: snap}, nil
	}

	src, err := d.backend.GetDisk(ctx, source)
	if err != nil {
		return nil, toStatus(err, "looking up source volume %s", source)
	}
	id, err := d.snapshotSlot(ctx, req.GetName(), prefix, source)
	if err != nil {
		return nil, err
	}
	spec := rds.DiskSpec{Slot: id, FilePath: volid.FilePath(path.Dir(src.FilePath), id)}
	disk, err := d.backend.CopyDisk(ctx, source, spec)
	if err != nil && !(rds.IsAlreadyExists(err) && disk != nil) {
		return nil, toStatus(err, "snapshotting volume %s", source)
	}
	snap, _ := snapshotFromDisk(disk)
	klog.InfoS("Snapshot created", "snapshot", id, "name", req.GetName(), "source", source, "bytes", disk.Size)
	return &csi.CreateSnapshotResponse{Snapshot: snap}, nil
}

// snapshotSlot returns the slot of a new snapshot: the slot of its unfinished copy when an earlier
// attempt started one, otherwise a new one stamped now.
func (d *Driver) snapshotSlot(ctx context.Context, name, prefix, source string) (string, error) {
	pending, err := d.backend.PendingCopies(ctx, prefix)
	if err != nil {
		return "", toStatus(err, "looking for an unfinished copy of snapshot %s", name)
	}
	switch len(pending) {
	case 0:
		id, err := volid.SnapshotID(prefix, time.Now(), source)
		if err != nil {
			return "", invalid("%v", err)
		}
		return id, nil
	case 1:
		info, ok := volid.ParseSnapshotID(pending[0])
		if !ok {
			break
		}
		if info.Source != source {
			return "", status.Errorf(codes.AlreadyExists, "snapshot %q is being made from source volume %s, not %s", name, info.Source, source)
		}
		return pending[0], nil
	}
	return "", status.Errorf(codes.FailedPrecondition, "snapshot %q has several unfinished copies on the RDS (%v): remove all but one", name, pending)
}

// DeleteSnapshot implements csi.ControllerServer; an absent snapshot is a success. An ID that is
// not a snapshot's is never deleted, so a volume cannot be removed through this call.
func (d *Driver) DeleteSnapshot(ctx context.Context, req *csi.DeleteSnapshotRequest) (*csi.DeleteSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, invalid("snapshot ID is missing")
	}
	if err := volid.ValidateSlot(id); err != nil {
		return nil, invalid("snapshot ID %q: %v", id, err)
	}
	earlier := volid.IsEarlierSnapshotID(id)
	if _, ok := volid.ParseSnapshotID(id); !ok && !earlier {
		return &csi.DeleteSnapshotResponse{}, nil
	}
	if err := d.inflight.lock(id); err != nil {
		return nil, err
	}
	defer d.inflight.unlock(id)
	if earlier {
		// Delete only a disk that is such a snapshot. A missing disk is looked for no further
		// than deleteDisk does for this driver's own snapshots: a file named "<ID>.img".
		if _, err := d.earlierSnapshot(ctx, id); err != nil && status.Code(err) != codes.NotFound {
			return nil, err
		}
	}
	if err := d.deleteDisk(ctx, "snapshot", id); err != nil {
		return nil, err
	}
	klog.InfoS("Snapshot deleted", "snapshot", id)
	return &csi.DeleteSnapshotResponse{}, nil
}

// ListSnapshots implements csi.ControllerServer.
func (d *Driver) ListSnapshots(ctx context.Context, req *csi.ListSnapshotsRequest) (*csi.ListSnapshotsResponse, error) {
	var disks []rds.Disk
	if id := req.GetSnapshotId(); id != "" {
		if !isSnapshotID(id) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		disk, err := d.backend.GetDisk(ctx, id)
		if rds.IsNotFound(err) {
			return &csi.ListSnapshotsResponse{}, nil
		}
		if err != nil {
			return nil, toStatus(err, "looking up snapshot %s", id)
		}
		disks = []rds.Disk{*disk}
	} else {
		all, err := d.backend.ListDisks(ctx, volid.SnapshotPrefix)
		if err != nil {
			return nil, toStatus(err, "listing snapshots")
		}
		disks = all
	}
	var snaps []rds.Disk
	for _, disk := range disks {
		info, ok := volid.ParseSnapshotID(disk.Slot)
		if !ok || (req.GetSourceVolumeId() != "" && info.Source != req.GetSourceVolumeId()) {
			continue
		}
		snaps = append(snaps, disk)
	}
	pg, next, err := page(snaps, volid.SnapshotPrefix, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListSnapshotsResponse{NextToken: next}
	for i := range pg {
		snap, _ := snapshotFromDisk(&pg[i])
		resp.Entries = append(resp.Entries, &csi.ListSnapshotsResponse_Entry{Snapshot: snap})
	}
	return resp, nil
}

// GetSnapshot implements csi.ControllerServer.
func (d *Driver) GetSnapshot(ctx context.Context, req *csi.GetSnapshotRequest) (*csi.GetSnapshotResponse, error) {
	id := req.GetSnapshotId()
	if id == "" {
		return nil, invalid("snapshot ID is missing")
	}
	if !isSnapshotID(id) {
		return nil, status.Errorf(codes.NotFound, "snapshot %q not found", id)
	}
	disk, err := d.backend.GetDisk(ctx, id)
	if err != nil {
		return nil, toStatus(err, "looking up snapshot %s", id)
	}
	snap, _ := snapshotFromDisk(disk)
	return &csi.GetSnapshotResponse{Snapshot: snap}, nil
}

// earlierSnapshot returns the disk of a snapshot made by the earlier driver (3whiskeywhiskey/rds-csi),
// whose ID passed volid.IsEarlierSnapshotID, after checking that the disk is one: that driver made
// its snapshots as unexported disks whose slot is the ID and whose backing file is "<ID>.img". A
// disk of that slot that is exported, or whose file has another name, was not made by it as a
// snapshot: FailedPrecondition, and nothing is done to it. A missing disk is NotFound.
func (d *Driver) earlierSnapshot(ctx context.Context, id string) (*rds.Disk, error) {
	disk, err := d.backend.GetDisk(ctx, id)
	if err != nil {
		return nil, toStatus(err, "looking up snapshot %s", id)
	}
	if disk.Slot != id || disk.Exported || path.Base(disk.FilePath) != id+".img" {
		return nil, status.Errorf(codes.FailedPrecondition,
			"disk %s (file %s, exported %v) is not a snapshot of the earlier driver, which are unexported disks backed by a file %s.img: left as it is",
			disk.Slot, disk.FilePath, disk.Exported, id)
	}
	return disk, nil
}
