package driver

import (
	"context"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rds/rdsfake"
	"github.com/srvlab/rds-csi/pkg/volid"
)

const gib = int64(1) << 30

func newController(t *testing.T) (*Driver, *rdsfake.Backend, *attachment.Memory) {
	t.Helper()
	be := rdsfake.New(100 * gib)
	att := attachment.NewMemory("node-a", "node-b", "node-c")
	d, err := New(Options{Controller: true, DefaultParams: Defaults{NVMeAddress: "10.0.0.1"}}, be, att, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d, be, att
}

func mountCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
}

func blockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode}}
}

var rwo = mountCap(csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER)

func createReq(name string, size int64) *csi.CreateVolumeRequest {
	return &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
}

func wantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if got := status.Code(err); got != code {
		t.Fatalf("code = %v (%v), want %v", got, err, code)
	}
}

func TestCreateVolumeRejectsBadInputBeforeTheRDS(t *testing.T) {
	cases := []struct {
		name string
		req  *csi.CreateVolumeRequest
		code codes.Code
	}{
		{"empty name", createReq("", gib), codes.InvalidArgument},
		{"semicolon", createReq("vol;reboot", gib), codes.InvalidArgument},
		{"space", createReq("vol 1", gib), codes.InvalidArgument},
		{"bracket", createReq("vol[find]", gib), codes.InvalidArgument},
		{"double quote", createReq(`vol"x`, gib), codes.InvalidArgument},
		{"single quote", createReq(`vol'x`, gib), codes.InvalidArgument},
		{"dollar", createReq(`vol$x`, gib), codes.InvalidArgument},
		{"newline", createReq("vol\nx", gib), codes.InvalidArgument},
		{"300 characters", createReq(strings.Repeat("a", 300), gib), codes.InvalidArgument},
		{"negative size", createReq("vol", -1), codes.InvalidArgument},
		{"huge size", createReq("vol", 1<<62), codes.OutOfRange},
		{"limit below required", &csi.CreateVolumeRequest{Name: "vol", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib, LimitBytes: gib}}, codes.InvalidArgument},
		{"limit below minimum", &csi.CreateVolumeRequest{Name: "vol", VolumeCapabilities: []*csi.VolumeCapability{rwo},
			CapacityRange: &csi.CapacityRange{LimitBytes: 1000}}, codes.OutOfRange},
		{"no capabilities", &csi.CreateVolumeRequest{Name: "vol"}, codes.InvalidArgument},
		{"RWX filesystem", &csi.CreateVolumeRequest{Name: "vol", VolumeCapabilities: []*csi.VolumeCapability{
			mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)}}, codes.InvalidArgument},
		{"unsupported fs", &csi.CreateVolumeRequest{Name: "vol", VolumeCapabilities: []*csi.VolumeCapability{{
			AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "btrfs"}},
			AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}}}, codes.InvalidArgument},
	}
	params := []struct {
		name   string
		params map[string]string
	}{
		{"unknown parameter", map[string]string{"volumPath": "/storage-pool/x"}},
		{"path with ..", map[string]string{ParamVolumePath: "/storage-pool/../etc"}},
		{"path with ;", map[string]string{ParamVolumePath: "/storage-pool/x;/system reboot"}},
		{"relative path", map[string]string{ParamVolumePath: "storage-pool"}},
		{"bad port", map[string]string{ParamNVMePort: "70000"}},
		{"bad address", map[string]string{ParamNVMeAddress: "10.0.0.1; rm"}},
		{"bad fs", map[string]string{ParamFSType: "ntfs"}},
		{"bad ctrl loss", map[string]string{ParamCtrlLossTmo: "-5"}},
		{"bad migration timeout", map[string]string{ParamMigrationTimeout: "forever"}},
	}
	for _, p := range params {
		r := createReq("vol", gib)
		r.Parameters = p.params
		cases = append(cases, struct {
			name string
			req  *csi.CreateVolumeRequest
			code codes.Code
		}{p.name, r, codes.InvalidArgument})
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, be, _ := newController(t)
			calls := 0
			be.Hook = func(string, string) error { calls++; return nil }
			_, err := d.CreateVolume(context.Background(), c.req)
			wantCode(t, err, c.code)
			if calls != 0 {
				t.Fatalf("%d backend calls for invalid input", calls)
			}
		})
	}
}

func TestCreateVolumeIdempotentByName(t *testing.T) {
	d, be, _ := newController(t)
	ctx := context.Background()
	r1, err := d.CreateVolume(ctx, createReq("data-1", 3*gib/2))
	if err != nil {
		t.Fatal(err)
	}
	if r1.Volume.CapacityBytes != 3*gib/2 {
		t.Fatalf("capacity %d, want exactly 1.5 GiB", r1.Volume.CapacityBytes)
	}
	vc := r1.Volume.VolumeContext
	if vc[ContextNQN] != volid.NQN(r1.Volume.VolumeId) || vc[ContextNVMeAddress] != "10.0.0.1" || vc[ContextNVMePort] != "4420" {
		t.Fatalf("volume context %v lacks what the node needs", vc)
	}
	r2, err := d.CreateVolume(ctx, createReq("data-1", 3*gib/2))
	if err != nil || r2.Volume.VolumeId != r1.Volume.VolumeId {
		t.Fatalf("second create: %v, id %v vs %v", err, r2.GetVolume().GetVolumeId(), r1.Volume.VolumeId)
	}
	_, err = d.CreateVolume(ctx, createReq("data-1", 5*gib))
	wantCode(t, err, codes.AlreadyExists)
	if n := len(be.Files()); n != 1 {
		t.Fatalf("%d files, want 1", n)
	}
	// Kubernetes names are kept as volume IDs, for compatibility with existing volumes.
	r3, err := d.CreateVolume(ctx, createReq("pvc-0a1b2c3d-0000-4000-8000-00000000abcd", gib))
	if err != nil || r3.Volume.VolumeId != "pvc-0a1b2c3d-0000-4000-8000-00000000abcd" {
		t.Fatalf("pvc name: %v %v", r3, err)
	}
}

// TestCreateVolumeRepeatMustMatch: a repeated CreateVolume is answered with the existing volume
// only if the RDS holds what the request asks for; anything else is AlreadyExists (or NotFound
// for a content source that does not exist), and nothing is created or changed.
func TestCreateVolumeRepeatMustMatch(t *testing.T) {
	withParams := func(r *csi.CreateVolumeRequest, kv ...string) *csi.CreateVolumeRequest {
		r.Parameters = map[string]string{}
		for i := 0; i < len(kv); i += 2 {
			r.Parameters[kv[i]] = kv[i+1]
		}
		return r
	}
	fromVolume := func(r *csi.CreateVolumeRequest, src string) *csi.CreateVolumeRequest {
		r.VolumeContentSource = &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
			Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src}}}
		return r
	}
	cases := []struct {
		name   string
		first  *csi.CreateVolumeRequest
		repeat *csi.CreateVolumeRequest
		code   codes.Code
	}{
		{"same request", createReq("v", gib), createReq("v", gib), codes.OK},
		{"other volume path", createReq("v", gib), withParams(createReq("v", gib), "volumePath", "/other-pool/volumes"), codes.AlreadyExists},
		{"other port", createReq("v", gib), withParams(createReq("v", gib), "nvmePort", "5555"), codes.AlreadyExists},
		{"same clone", fromVolume(createReq("v", gib), "src"), fromVolume(createReq("v", gib), "src"), codes.OK},
		{"clone of a missing source", createReq("v", gib), fromVolume(createReq("v", gib), "pvc-nonexistent"), codes.NotFound},
		{"clone of a larger source", createReq("v", gib), fromVolume(createReq("v", gib), "big"), codes.AlreadyExists},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d, be, _ := newController(t)
			ctx := context.Background()
			for _, src := range []struct {
				name string
				size int64
			}{{"src", gib}, {"big", 2 * gib}} {
				if _, err := d.CreateVolume(ctx, createReq(src.name, src.size)); err != nil {
					t.Fatal(err)
				}
			}
			// sources are addressed by volume ID
			for _, r := range []*csi.CreateVolumeRequest{tc.first, tc.repeat} {
				if v := r.GetVolumeContentSource().GetVolume(); v != nil && v.VolumeId != "pvc-nonexistent" {
					id, err := volid.VolumeIDForName(v.VolumeId)
					if err != nil {
						t.Fatal(err)
					}
					v.VolumeId = id
				}
			}
			first, err := d.CreateVolume(ctx, tc.first)
			if err != nil {
				t.Fatal(err)
			}
			before := be.String()
			got, err := d.CreateVolume(ctx, tc.repeat)
			wantCode(t, err, tc.code)
			if after := be.String(); after != before {
				t.Fatalf("the repeat changed the RDS:\nbefore %s\nafter  %s", before, after)
			}
			if tc.code == codes.OK && (got.Volume.VolumeId != first.Volume.VolumeId || got.Volume.VolumeContext[ContextNVMePort] != first.Volume.VolumeContext[ContextNVMePort]) {
				t.Fatalf("repeat answered %v, first %v", got.Volume, first.Volume)
			}
		})
	}
}

func TestBackendErrorsKeepTheirMeaning(t *testing.T) {
	cases := []struct {
		kind rds.Kind
		code codes.Code
	}{
		{rds.KindUnavailable, codes.Unavailable},
		{rds.KindDeadlineExceeded, codes.DeadlineExceeded},
		{rds.KindOutOfSpace, codes.ResourceExhausted},
		{rds.KindInternal, codes.Internal},
	}
	for _, c := range cases {
		t.Run(c.kind.String(), func(t *testing.T) {
			d, be, _ := newController(t)
			ctx := context.Background()
			vol, err := d.CreateVolume(ctx, createReq("v", gib))
			if err != nil {
				t.Fatal(err)
			}
			be.Err = &rds.Error{Kind: c.kind, Message: "injected"}
			id := vol.Volume.VolumeId
			_, err = d.CreateVolume(ctx, createReq("w", gib))
			wantCode(t, err, c.code)
			_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			wantCode(t, err, c.code)
			_, err = d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-a", VolumeCapability: rwo})
			wantCode(t, err, c.code)
			_, err = d.ListVolumes(ctx, &csi.ListVolumesRequest{})
			wantCode(t, err, c.code)
			_, err = d.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: id, CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib}})
			wantCode(t, err, c.code)
			_, err = d.GetCapacity(ctx, &csi.GetCapacityRequest{})
			wantCode(t, err, c.code)
			_, err = d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "s", SourceVolumeId: id})
			wantCode(t, err, c.code)
		})
	}
}

func TestProbeFollowsTheRDS(t *testing.T) {
	d, be, _ := newController(t)
	resp, err := d.Probe(context.Background(), &csi.ProbeRequest{})
	if err != nil || !resp.GetReady().GetValue() {
		t.Fatalf("Probe with a healthy RDS: %v %v", resp, err)
	}
	be.Err = &rds.Error{Kind: rds.KindUnavailable, Message: "down"}
	resp, err = d.Probe(context.Background(), &csi.ProbeRequest{})
	if err != nil || resp.GetReady().GetValue() {
		t.Fatalf("Probe with the RDS down: %v %v, want not ready and no error", resp, err)
	}
}

// blockingHook stops the first call of op on the backend until released.
func blockingHook(op string) (hook func(string, string) error, entered, release chan struct{}) {
	entered, release = make(chan struct{}), make(chan struct{})
	var once sync.Once
	hook = func(o, _ string) error {
		if o == op {
			once.Do(func() {
				close(entered)
				<-release
			})
		}
		return nil
	}
	return hook, entered, release
}

func TestConcurrentOperationsOnOneVolume(t *testing.T) {
	t.Run("create of the same name", func(t *testing.T) {
		d, be, _ := newController(t)
		hook, entered, release := blockingHook("create")
		be.Hook = hook
		errc := make(chan error, 1)
		go func() {
			_, err := d.CreateVolume(context.Background(), createReq("same", gib))
			errc <- err
		}()
		<-entered
		_, err := d.CreateVolume(context.Background(), createReq("same", gib))
		wantCode(t, err, codes.Aborted)
		close(release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if _, err := d.CreateVolume(context.Background(), createReq("same", gib)); err != nil {
			t.Fatalf("retry after the first finished: %v", err)
		}
		if n := len(be.Files()); n != 1 {
			t.Fatalf("%d files for one name", n)
		}
	})
	t.Run("delete during create", func(t *testing.T) {
		d, be, _ := newController(t)
		id, _ := volid.VolumeIDForName("racy")
		hook, entered, release := blockingHook("create")
		be.Hook = hook
		errc := make(chan error, 1)
		go func() {
			_, err := d.CreateVolume(context.Background(), createReq("racy", gib))
			errc <- err
		}()
		<-entered
		_, err := d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id})
		wantCode(t, err, codes.Aborted)
		close(release)
		if err := <-errc; err != nil {
			t.Fatal(err)
		}
		if _, err := d.DeleteVolume(context.Background(), &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatal(err)
		}
		if n := len(be.Files()); n != 0 {
			t.Fatalf("%d files left", n)
		}
	})
}

func TestDeleteVolume(t *testing.T) {
	d, be, _ := newController(t)
	ctx := context.Background()
	_, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{})
	wantCode(t, err, codes.InvalidArgument)
	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "pvc-x;/system reboot"})
	wantCode(t, err, codes.InvalidArgument)
	if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: "pvc-never-existed"}); err != nil {
		t.Fatalf("deleting an absent volume: %v", err)
	}
	vol, err := d.CreateVolume(ctx, createReq("del", gib))
	if err != nil {
		t.Fatal(err)
	}
	id := vol.Volume.VolumeId
	if _, err := d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: "node-a", VolumeCapability: rwo}); err != nil {
		t.Fatal(err)
	}
	_, err = d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
	wantCode(t, err, codes.FailedPrecondition)
	if _, err := d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: id, NodeId: "node-a"}); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 2; i++ {
		if _, err := d.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("delete #%d: %v", i+1, err)
		}
	}
	if n := len(be.Files()); n != 0 {
		t.Fatalf("backing files left: %v", be.Files())
	}
}

func TestPublishRules(t *testing.T) {
	ctx := context.Background()
	d, _, _ := newController(t)
	rwoVol, err := d.CreateVolume(ctx, createReq("rwo", gib))
	if err != nil {
		t.Fatal(err)
	}
	rwxCap := blockCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER)
	rwxVol, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "rwx", VolumeCapabilities: []*csi.VolumeCapability{rwxCap}})
	if err != nil {
		t.Fatal(err)
	}
	pub := func(id, node string, c *csi.VolumeCapability, ro bool) (*csi.ControllerPublishVolumeResponse, error) {
		return d.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: id, NodeId: node, VolumeCapability: c, Readonly: ro})
	}
	a := rwoVol.Volume.VolumeId
	resp, err := pub(a, "node-a", rwo, false)
	if err != nil {
		t.Fatal(err)
	}
	pc := resp.PublishContext
	if pc[ContextNQN] != volid.NQN(a) || pc[ContextNVMeAddress] != "10.0.0.1" || pc[ContextNVMePort] != "4420" || pc[ContextFilePath] == "" {
		t.Fatalf("publish context %v", pc)
	}
	if _, err := pub(a, "node-a", rwo, false); err != nil {
		t.Fatalf("idempotent publish: %v", err)
	}
	_, err = pub(a, "node-a", rwo, true)
	wantCode(t, err, codes.AlreadyExists)
	_, err = pub(a, "node-b", rwo, false)
	wantCode(t, err, codes.FailedPrecondition)
	if !strings.Contains(err.Error(), "node-a") {
		t.Fatalf("refusal does not name the holder: %v", err)
	}
	_, err = pub(a, "node-unknown", rwo, false)
	wantCode(t, err, codes.NotFound)
	_, err = pub("pvc-absent", "node-a", rwo, false)
	wantCode(t, err, codes.NotFound)
	_, err = pub(a, "node-a", mountCap(csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER), false)
	wantCode(t, err, codes.InvalidArgument)

	x := rwxVol.Volume.VolumeId
	for _, n := range []string{"node-a", "node-b"} {
		if _, err := pub(x, n, rwxCap, false); err != nil {
			t.Fatalf("RWX block publish to %s: %v", n, err)
		}
	}
	_, err = pub(x, "node-c", rwxCap, false)
	wantCode(t, err, codes.FailedPrecondition)

	list, err := d.ListVolumes(ctx, &csi.ListVolumesRequest{})
	if err != nil {
		t.Fatal(err)
	}
	published := map[string][]string{}
	for _, e := range list.Entries {
		published[e.Volume.VolumeId] = e.Status.PublishedNodeIds
	}
	if got := published[x]; len(got) != 2 {
		t.Fatalf("published nodes of the RWX volume = %v", got)
	}

	// Unpublish with no node releases every node.
	if _, err := d.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: x}); err != nil {
		t.Fatal(err)
	}
	if _, err := pub(x, "node-c", rwxCap, false); err != nil {
		t.Fatalf("publish after unpublish-all: %v", err)
	}
}

func TestSnapshotsRecordTheirSource(t *testing.T) {
	ctx := context.Background()
	d, _, _ := newController(t)
	vol, err := d.CreateVolume(ctx, createReq("src", gib))
	if err != nil {
		t.Fatal(err)
	}
	src := vol.Volume.VolumeId
	s1, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: src})
	if err != nil {
		t.Fatal(err)
	}
	snap := s1.Snapshot
	if snap.SourceVolumeId != src || !snap.ReadyToUse || snap.SizeBytes != gib || snap.CreationTime == nil {
		t.Fatalf("snapshot %+v", snap)
	}
	again, err := d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: src})
	if err != nil || again.Snapshot.SnapshotId != snap.SnapshotId {
		t.Fatalf("idempotent snapshot: %v %v", again, err)
	}
	other, err := d.CreateVolume(ctx, createReq("other", gib))
	if err != nil {
		t.Fatal(err)
	}
	_, err = d.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "snap-1", SourceVolumeId: other.Volume.VolumeId})
	wantCode(t, err, codes.AlreadyExists)

	list, err := d.ListSnapshots(ctx, &csi.ListSnapshotsRequest{SourceVolumeId: src})
	if err != nil || len(list.Entries) != 1 || list.Entries[0].Snapshot.SnapshotId != snap.SnapshotId {
		t.Fatalf("ListSnapshots by source = %v, %v", list, err)
	}
	// A volume ID given to DeleteSnapshot never deletes the volume.
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: src}); err != nil {
		t.Fatal(err)
	}
	if _, err := d.ControllerGetVolume(ctx, &csi.ControllerGetVolumeRequest{VolumeId: src}); err != nil {
		t.Fatalf("volume gone after DeleteSnapshot with its ID: %v", err)
	}
	restored, err := d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "restored", VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 2 * gib},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snap.SnapshotId}}}})
	if err != nil || restored.Volume.CapacityBytes != 2*gib {
		t.Fatalf("restore into a larger volume: %v %v", restored, err)
	}
	if _, err := d.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snap.SnapshotId}); err != nil {
		t.Fatal(err)
	}
	_, err = d.GetSnapshot(ctx, &csi.GetSnapshotRequest{SnapshotId: snap.SnapshotId})
	wantCode(t, err, codes.NotFound)
}

func TestSizeFor(t *testing.T) {
	cases := []struct {
		req, lim, want int64
		code           codes.Code
	}{
		{0, 0, gib, codes.OK},
		{1, 0, 1 << 20, codes.OK},
		{gib + 1, 0, gib + 1<<20, codes.OK},
		{gib + 1, gib + 4096, gib + 4096, codes.OK},
		{3 * gib / 2, 3 * gib / 2, 3 * gib / 2, codes.OK},
		{gib + 1, gib + 2, 0, codes.OutOfRange},
		{0, 512 << 20, 512 << 20, codes.OK},
		{-5, 0, 0, codes.InvalidArgument},
		{2 * gib, gib, 0, codes.InvalidArgument},
	}
	for _, c := range cases {
		got, err := sizeFor(&csi.CapacityRange{RequiredBytes: c.req, LimitBytes: c.lim}, gib)
		if status.Code(err) != c.code || (c.code == codes.OK && got != c.want) {
			t.Errorf("sizeFor(%d, %d) = %d, %v; want %d, %v", c.req, c.lim, got, err, c.want, c.code)
		}
	}
}
