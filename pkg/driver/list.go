package driver

import (
	"context"
	"sort"
	"strings"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// page returns the entries from the starting token on, at most max of them, and the next token.
// Tokens are slot names, so a page boundary survives volumes being added or deleted meanwhile.
func page(disks []rds.Disk, prefix, start string, max int32) ([]rds.Disk, string, error) {
	if max < 0 {
		return nil, "", invalid("max_entries must not be negative")
	}
	if start != "" && (!strings.HasPrefix(start, prefix) || volid.ValidateSlot(start) != nil) {
		return nil, "", status.Errorf(codes.Aborted, "starting token %q is not one this driver issued", start)
	}
	sort.Slice(disks, func(i, j int) bool { return disks[i].Slot < disks[j].Slot })
	i := sort.Search(len(disks), func(i int) bool { return disks[i].Slot >= start })
	rest := disks[i:]
	if max == 0 || int(max) >= len(rest) {
		return rest, "", nil
	}
	return rest[:max], rest[max].Slot, nil
}

// ListVolumes implements csi.ControllerServer.
func (d *Driver) ListVolumes(ctx context.Context, req *csi.ListVolumesRequest) (*csi.ListVolumesResponse, error) {
	disks, err := d.backend.ListDisks(ctx, volid.VolumePrefix)
	if err != nil {
		return nil, toStatus(err, "listing volumes")
	}
	pg, next, err := page(disks, volid.VolumePrefix, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ListVolumesResponse{NextToken: next}
	for i := range pg {
		resp.Entries = append(resp.Entries, &csi.ListVolumesResponse_Entry{
			Volume: volumeFromDisk(&pg[i], d.opts.DefaultParams),
			Status: &csi.ListVolumesResponse_VolumeStatus{PublishedNodeIds: d.attacher.PublishedNodes(pg[i].Slot)},
		})
	}
	return resp, nil
}

// ControllerGetVolume implements csi.ControllerServer.
func (d *Driver) ControllerGetVolume(ctx context.Context, req *csi.ControllerGetVolumeRequest) (*csi.ControllerGetVolumeResponse, error) {
	id := req.GetVolumeId()
	disk, err := d.getVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeResponse{
		Volume: volumeFromDisk(disk, d.opts.DefaultParams),
		Status: &csi.ControllerGetVolumeResponse_VolumeStatus{PublishedNodeIds: d.attacher.PublishedNodes(id)},
	}, nil
}

// health describes what is wrong with a disk as the RDS reports it; nil means nothing known.
func health(disk *rds.Disk) []*csi.VolumeHealth_VolumeHealthEntry {
	var out []*csi.VolumeHealth_VolumeHealthEntry
	if !disk.Exported {
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_INACCESSIBLE,
			Reason: "the disk is not exported over NVMe/TCP on the RDS"})
	}
	if want := volid.NQN(disk.Slot); disk.Exported && disk.NQN != want {
		out = append(out, &csi.VolumeHealth_VolumeHealthEntry{Status: csi.VolumeHealthErrorType_INACCESSIBLE,
			Reason: "the disk is exported under NQN " + disk.NQN + ", not " + want})
	}
	return out
}

// ControllerGetVolumeHealth implements csi.ControllerServer.
func (d *Driver) ControllerGetVolumeHealth(ctx context.Context, req *csi.ControllerGetVolumeHealthRequest) (*csi.ControllerGetVolumeHealthResponse, error) {
	id := req.GetVolumeId()
	disk, err := d.getVolume(ctx, id)
	if err != nil {
		return nil, err
	}
	return &csi.ControllerGetVolumeHealthResponse{VolumeHealth: &csi.VolumeHealth{VolumeId: id, HealthStatuses: health(disk)}}, nil
}

// ControllerListVolumeHealth implements csi.ControllerServer: only volumes with a known problem
// are listed.
func (d *Driver) ControllerListVolumeHealth(ctx context.Context, req *csi.ControllerListVolumeHealthRequest) (*csi.ControllerListVolumeHealthResponse, error) {
	disks, err := d.backend.ListDisks(ctx, volid.VolumePrefix)
	if err != nil {
		return nil, toStatus(err, "listing volumes")
	}
	var abnormal []rds.Disk
	for i := range disks {
		if len(health(&disks[i])) > 0 {
			abnormal = append(abnormal, disks[i])
		}
	}
	pg, next, err := page(abnormal, volid.VolumePrefix, req.GetStartingToken(), req.GetMaxEntries())
	if err != nil {
		return nil, err
	}
	resp := &csi.ControllerListVolumeHealthResponse{NextToken: next}
	for i := range pg {
		resp.Entries = append(resp.Entries, &csi.VolumeHealth{VolumeId: pg[i].Slot, HealthStatuses: health(&pg[i])})
	}
	return resp, nil
}
