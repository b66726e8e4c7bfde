package driver

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rds/rdsfake"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// Snapshots made by the earlier driver (3whiskeywhiskey/rds-csi): unexported disks whose slot is
// the ID (snap-<uuid>-at-<suffix>, or snap-<uuid>) and whose file is <dir>/<ID>.img. They restore,
// and DeleteSnapshot removes exactly their disk and file; a disk under such a slot that is not
// one (exported, or backed by another file) is refused and left alone.
func TestEarlierDriversSnapshots(t *testing.T) {
	ctx := context.Background()
	d, be, _ := newController(t)
	const dir = "/storage-pool/metal-csi"
	old := func(slot, file string, export bool) {
		t.Helper()
		spec := rds.DiskSpec{Slot: slot, FilePath: dir + "/" + file, Size: gib}
		if export {
			spec.Export, spec.Port, spec.NQN = true, 4420, volid.NQN(slot)
		}
		if _, err := be.CreateDisk(ctx, spec); err != nil {
			t.Fatal(err)
		}
	}
	const (
		hashed = "snap-0f6b2c1e-5d4a-4e3b-9c2d-1a0b9c8d7e6f-at-3a9f8c02d1"
		timed  = "snap-1e7c3d2f-6e5b-4f4c-8d3e-2b1c0d9e8f70-at-1739800000"
		oldest = "snap-2f8d4e3a-7f6c-4a5d-9e4f-3c2d1e0f9a81"
		// Decoys: the earlier driver's slot forms, but not its snapshots.
		exported = "snap-3a9e5f4b-8a7d-4b6e-8f5a-4d3e2f1a0b92-at-1739800001"
		misnamed = "snap-4b0f6a5c-9b8e-4c7f-9a6b-5e4f3a2b1ca3"
	)
	for _, id := range []string{hashed, timed, oldest} {
		old(id, id+".img", false)
	}
	old(exported, exported+".img", true)
	old(misnamed, "pvc-4b0f6a5c-9b8e-4c7f-9a6b-5e4f3a2b1ca3.img", false)

	for i, id := range []string{hashed, timed, oldest} {
		restored, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "restored-" + id[5:13], VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{RequiredBytes: gib},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}})
		if err != nil {
			t.Fatalf("restore of %s: %v", id, err)
		}
		if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
			t.Fatalf("DeleteSnapshot %s: %v", id, err)
		}
		if _, err := be.GetDisk(ctx, id); !rds.IsNotFound(err) {
			t.Errorf("disk %s after DeleteSnapshot: %v", id, err)
		}
		if slices.Contains(be.Files(), dir+"/"+id+".img") {
			t.Errorf("file of %s left after DeleteSnapshot", id)
		}
		if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id}); err != nil {
			t.Errorf("DeleteSnapshot %s again: %v", id, err)
		}
		if _, err := be.GetDisk(ctx, restored.Volume.VolumeId); err != nil {
			t.Errorf("restore #%d gone with its snapshot: %v", i, err)
		}
	}
	for _, id := range []string{exported, misnamed} {
		_, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: id})
		wantCode(t, err, codes.FailedPrecondition)
		_, err = d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "from-" + id[5:13], VolumeCapabilities: []*csi.VolumeCapability{rwo},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: id}}}})
		wantCode(t, err, codes.FailedPrecondition)
		if _, err := be.GetDisk(ctx, id); err != nil {
			t.Errorf("decoy %s touched: %v", id, err)
		}
	}
	if want := []string{dir + "/" + exported + ".img", dir + "/pvc-4b0f6a5c-9b8e-4c7f-9a6b-5e4f3a2b1ca3.img"}; !containsAll(be.Files(), want) {
		t.Errorf("decoy files gone: %v", be.Files())
	}
	// An absent snapshot of either form: restore is NotFound, delete a success.
	const absent = "snap-5c1a7b6d-0c9f-4d8a-8b7c-6f5a4b3c2db4-at-1739800002"
	_, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "from-absent", VolumeCapabilities: []*csi.VolumeCapability{rwo},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: absent}}}})
	wantCode(t, err, codes.NotFound)
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: absent}); err != nil {
		t.Errorf("DeleteSnapshot of an absent snapshot: %v", err)
	}
}

func containsAll(have, want []string) bool {
	for _, w := range want {
		if !slices.Contains(have, w) {
			return false
		}
	}
	return true
}

// recordingAttacher keeps the requests that reach the attachment view.
type recordingAttacher struct {
	*attachment.Memory
	reqs []attachment.Request
}

func (a *recordingAttacher) Attach(ctx context.Context, req attachment.Request) error {
	a.reqs = append(a.reqs, req)
	return a.Memory.Attach(ctx, req)
}

// A live-migration volume of the earlier driver carries migrationTimeoutSeconds, not
// migrationTimeout: ControllerPublish bounds its dual attachment by it, as that driver did.
func TestPublishReadsEarlierDriversMigrationTimeout(t *testing.T) {
	ctx := context.Background()
	be := rdsfake.New(100 * gib)
	att := &recordingAttacher{Memory: attachment.NewMemory("node-a", "node-b")}
	d, err := New(Options{Controller: true, DefaultParams: Defaults{NVMeAddress: "10.0.0.1"}}, be, att, nil)
	if err != nil {
		t.Fatal(err)
	}
	const id = "pvc-6a5b4c3d-2e1f-4a0b-9c8d-7e6f5a4b3c2d"
	if _, err := be.CreateDisk(ctx, rds.DiskSpec{Slot: id, FilePath: "/storage-pool/metal-csi/" + id + ".img", Size: gib,
		Export: true, Port: 4420, NQN: volid.NQN(id)}); err != nil {
		t.Fatal(err)
	}
	rwx := blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	for _, tc := range []struct {
		vc   map[string]string
		want time.Duration
	}{
		{map[string]string{"migrationTimeoutSeconds": "600"}, 10 * time.Minute},
		{map[string]string{"migrationTimeoutSeconds": "10"}, 30 * time.Second},
		{map[string]string{"migrationTimeoutSeconds": "600", ContextMigrationTimeout: "2m"}, 2 * time.Minute},
		{nil, attachment.DefaultMigrationTimeout},
	} {
		att.reqs = nil
		if _, err := d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-a",
			VolumeCapability: rwx, VolumeContext: tc.vc}); err != nil {
			t.Fatal(err)
		}
		if len(att.reqs) != 1 || att.reqs[0].MigrationTimeout != tc.want || !att.reqs[0].MultiNode {
			t.Errorf("volume context %v: attach requests %+v, want one multi-node with timeout %v", tc.vc, att.reqs, tc.want)
		}
	}
}
