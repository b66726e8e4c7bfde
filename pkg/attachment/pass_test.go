package attachment

import (
	"context"
	"errors"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"google.golang.org/grpc/codes"
	"k8s.io/apimachinery/pkg/runtime"
	k8stesting "k8s.io/client-go/testing"

	"github.com/srvlab/rds-csi/pkg/rds"
)

const vol2 = "pvc-22222222-2222-4222-8222-222222222222"

func findings(fs []Finding) []string {
	var out []string
	for _, f := range fs {
		out = append(out, f.Volume+"@"+f.Node)
	}
	return out
}

func TestPassFindings(t *testing.T) {
	pv := pvFor(vol1)
	pv2 := pvFor(vol2)
	block := pvFor(vol1, rwxBlock("1m"))
	old := t0.Add(-time.Hour)
	type want struct {
		released, notReady, overdue, conflicts, missing []string
		attachments                                     int
		events                                          []string
	}
	cases := []struct {
		name   string
		cached []runtime.Object
		disks  []rds.Disk
		want   want
	}{
		{"healthy", []runtime.Object{node("a"), pv, vaFor(pv, "a", true, old)}, []rds.Disk{{Slot: vol1, Exported: true}},
			want{attachments: 1}},
		{"holder deleted", []runtime.Object{pv, vaFor(pv, "a", true, old)}, []rds.Disk{{Slot: vol1}},
			want{released: []string{vol1 + "@a"}, events: []string{EventReleased}}},
		{"holder out of service", []runtime.Object{oosNode("a"), pv, vaFor(pv, "a", true, old)}, []rds.Disk{{Slot: vol1}},
			want{released: []string{vol1 + "@a"}, events: []string{EventReleased}}},
		{"holder NotReady is kept", []runtime.Object{notReadyNode("a"), pv, vaFor(pv, "a", true, old)}, []rds.Disk{{Slot: vol1}},
			want{notReady: []string{vol1 + "@a"}, attachments: 1, events: []string{EventHolderNotReady}}},
		{"VolumeAttachment not attached", []runtime.Object{pv, vaFor(pv, "a", false, old)}, []rds.Disk{{Slot: vol1}}, want{}},
		{"dual attach within the timeout", []runtime.Object{node("a"), node("b"), block, vaFor(block, "a", true, old), vaFor(block, "b", true, t0)},
			[]rds.Disk{{Slot: vol1}}, want{attachments: 2}},
		{"dual attach past the timeout", []runtime.Object{node("a"), node("b"), block, vaFor(block, "a", true, old), vaFor(block, "b", true, old)},
			[]rds.Disk{{Slot: vol1}}, want{overdue: []string{vol1 + "@a,b"}, attachments: 2, events: []string{EventMigrationTimeout}}},
		{"single-node volume on two nodes", []runtime.Object{node("a"), node("b"), pv, vaFor(pv, "a", true, old), vaFor(pv, "b", true, old)},
			[]rds.Disk{{Slot: vol1}}, want{conflicts: []string{vol1 + "@a,b"}, attachments: 2, events: []string{EventConflict}}},
		{"attached volume without disk", []runtime.Object{node("a"), pv, pv2, vaFor(pv, "a", true, old)}, []rds.Disk{{Slot: vol2}},
			want{missing: []string{vol1 + "@"}, attachments: 1, events: []string{EventMissingDisk}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cached)
			f.disks.list = tc.disks
			r := f.m.Reconcile(context.Background())
			got := want{findings(r.Released), findings(r.NotReady), findings(r.Overdue), findings(r.Conflicts), findings(r.MissingDisks), r.Attachments, f.rec.Reasons()}
			for _, c := range []struct {
				what      string
				got, want []string
			}{{"released", got.released, tc.want.released}, {"notReady", got.notReady, tc.want.notReady},
				{"overdue", got.overdue, tc.want.overdue}, {"conflicts", got.conflicts, tc.want.conflicts},
				{"missing disks", got.missing, tc.want.missing}, {"events", got.events, tc.want.events}} {
				if !slices.Equal(c.got, c.want) {
					t.Errorf("%s = %v, want %v", c.what, c.got, c.want)
				}
			}
			if got.attachments != tc.want.attachments {
				t.Errorf("attachments = %d, want %d", got.attachments, tc.want.attachments)
			}
			// The next pass reports nothing new and posts no event.
			events := len(f.rec.Events())
			r2 := f.m.Reconcile(context.Background())
			if n := len(r2.Released) + len(r2.NotReady) + len(r2.Overdue) + len(r2.Conflicts) + len(r2.MissingDisks); n != 0 || len(f.rec.Events()) != events {
				t.Errorf("second pass reported %d new findings and %d events", n, len(f.rec.Events())-events)
			}
			if r2.Attachments != r.Attachments || r2.NotReadyHolders != r.NotReadyHolders || r2.OverdueVolumes != r.OverdueVolumes {
				t.Errorf("second pass totals differ: %+v vs %+v", r2, r)
			}
		})
	}
}

func TestPassEventGoesToThePVC(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{pv, vaFor(pv, "a", true, t0)})
	f.m.Reconcile(context.Background())
	ev := f.rec.Events()
	if len(ev) != 1 || ev[0].Object == nil || ev[0].Object.Kind != "PersistentVolumeClaim" ||
		ev[0].Object.Namespace != "ns" || ev[0].Object.Name != pv.Spec.ClaimRef.Name {
		t.Fatalf("events = %+v, want one on PVC ns/%s", ev, pv.Spec.ClaimRef.Name)
	}
}

func TestPassReleaseDropsGrantsAndConfirmsOnce(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{node("a"), node("b"), pv})
	ctx := context.Background()
	if err := f.m.Attach(ctx, rwo("a")); err != nil {
		t.Fatal(err)
	}
	f.remove(t, node("a"))
	r := f.m.Reconcile(ctx)
	if !slices.Equal(findings(r.Released), []string{vol1 + "@a"}) {
		t.Fatalf("released = %v", findings(r.Released))
	}
	if f.m.PublishedNodes(vol1) != nil {
		t.Fatalf("PublishedNodes = %v after the release", f.m.PublishedNodes(vol1))
	}
	if err := f.m.Attach(ctx, rwo("b")); err != nil {
		t.Fatal(err)
	}
	f.m.Reconcile(ctx)
	if n := len(f.client.Actions()); n != 1 {
		t.Fatalf("API calls = %d (%v), want one GET confirming the deletion", n, f.client.Actions())
	}
	// The node comes back: it is no longer taken for deleted.
	f.put(t, node("a"))
	wantCode(t, f.m.Attach(ctx, rwo("a")), codes.FailedPrecondition, "node b")
}

func TestPassPrunesGrantsAndMarkers(t *testing.T) {
	pv := pvFor(vol1)
	vaA := vaFor(pv, "a", true, t0)
	f := newFixture(t, []runtime.Object{node("a"), node("b"), pv, vaA})
	ctx := context.Background()
	if err := f.m.Attach(ctx, rwo("b")); err == nil {
		t.Fatal("attach to b granted while a holds the volume")
	}
	_ = f.m.Detach(ctx, vol1, "a")
	if err := f.m.Attach(ctx, rwo("b")); err != nil { // a grant with no VolumeAttachment
		t.Fatal(err)
	}
	f.m.Reconcile(ctx)
	if f.m.released[vol1] == nil || f.m.grants[vol1] == nil {
		t.Fatal("marker or grant pruned too early")
	}
	f.remove(t, vaA)
	f.advance(3 * time.Minute)
	f.m.Reconcile(ctx)
	if len(f.m.released) != 0 || len(f.m.grants) != 0 {
		t.Fatalf("released = %v, grants = %v; want both pruned", f.m.released, f.m.grants)
	}
}

func TestPassOrphanExportsAfterGrace(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{pv})
	f.disks.list = []rds.Disk{{Slot: vol1, Exported: true}, {Slot: vol2, Exported: true}, {Slot: "pvc-unexported", Exported: false}}
	ctx := context.Background()
	if r := f.m.Reconcile(ctx); len(r.OrphanExports) != 0 {
		t.Fatalf("orphans reported before the grace period: %v", r.OrphanExports)
	}
	f.advance(3 * time.Minute)
	if r := f.m.Reconcile(ctx); !slices.Equal(r.OrphanExports, []string{vol2}) || r.OrphanExportDisks != 1 {
		t.Fatalf("orphans = %v (%d), want [%s]", r.OrphanExports, r.OrphanExportDisks, vol2)
	}
	f.put(t, pvFor(vol2))
	if r := f.m.Reconcile(ctx); r.OrphanExportDisks != 0 {
		t.Fatalf("orphan still reported after its PV appeared: %+v", r)
	}
}

func TestPassWithRDSDownStillReleases(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{pv, vaFor(pv, "a", true, t0)})
	f.m.cfg.Backend = failingLister{}
	reg := prometheus.NewRegistry()
	f.m.metrics = NewMetrics(reg)
	r := f.m.Reconcile(context.Background())
	if r.DriftErr == nil || len(r.Released) != 1 {
		t.Fatalf("DriftErr = %v, released = %v; want an error and the release", r.DriftErr, r.Released)
	}
	if v := testutil.ToFloat64(f.m.metrics.passes.WithLabelValues("drift_unknown")); v != 1 {
		t.Fatalf("passes{drift_unknown} = %v", v)
	}
	if v := testutil.ToFloat64(f.m.metrics.releases.WithLabelValues("node_deleted")); v != 1 {
		t.Fatalf("releases{node_deleted} = %v", v)
	}
}

type failingLister struct{}

func (failingLister) ListDisks(context.Context, string) ([]rds.Disk, error) {
	return nil, errors.New("RDS unreachable")
}

func TestMetricsNilSafe(t *testing.T) {
	var m *Metrics
	m.decision("granted")
	m.refused("held")
	m.released("node_deleted")
	m.migrationTimedOut()
	m.triggered("x")
	m.pass(&PassResult{}, time.Second, time.Now())
	if NewMetrics(nil) != nil {
		t.Fatal("NewMetrics(nil) != nil")
	}
}

// TestPassKeepsAGrantMadeWhileItWaited: a pass decides that a node's grant is gone, then waits on
// the API (confirming the node's deletion) without the volume's lock. If the node comes back and
// is granted the volume meanwhile, the pass must not delete that newer grant: it is the only
// thing that makes the node a holder until the external-attacher writes status.attached, and
// without it a second node would be granted the single-node volume.
func TestPassKeepsAGrantMadeWhileItWaited(t *testing.T) {
	cases := []struct {
		name    string
		regrant func(t *testing.T, f *fixture)
	}{
		{"new publish after a detach", func(t *testing.T, f *fixture) {
			if err := f.m.Detach(context.Background(), vol1, "a"); err != nil {
				t.Fatal(err)
			}
			if err := f.m.Attach(context.Background(), rwo("a")); err != nil {
				t.Fatalf("re-grant to a: %v", err)
			}
		}},
		{"republish confirming the grant", func(t *testing.T, f *fixture) {
			if err := f.m.Attach(context.Background(), rwo("a")); err != nil {
				t.Fatalf("republish to a: %v", err)
			}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pv := pvFor(vol1)
			f := newFixture(t, []runtime.Object{node("a"), node("b"), pv})
			ctx := context.Background()
			if err := f.m.Attach(ctx, rwo("a")); err != nil {
				t.Fatal(err)
			}
			f.remove(t, node("a")) // the cache lost node a: the pass confirms with a GET

			// The GET blocks until the node is back and re-granted; then it answers what the
			// API said when it was asked: not found.
			asked, answer := make(chan struct{}), make(chan struct{})
			f.client.PrependReactor("get", "nodes", func(k8stesting.Action) (bool, runtime.Object, error) {
				close(asked)
				<-answer
				return false, nil, nil
			})
			done := make(chan *PassResult)
			go func() { done <- f.m.Reconcile(ctx) }()
			<-asked
			f.put(t, node("a"))
			tc.regrant(t, f)
			close(answer)
			r := <-done

			if !slices.Equal(findings(r.Released), []string{vol1 + "@a"}) {
				t.Fatalf("released = %v; the pass did not decide against the old grant", findings(r.Released))
			}
			if got := f.m.PublishedNodes(vol1); !slices.Equal(got, []string{"a"}) {
				t.Fatalf("PublishedNodes = %v after the pass, want [a]: the new grant was lost", got)
			}
			wantCode(t, f.m.Attach(ctx, rwo("b")), codes.FailedPrecondition, "node a")
			// A later pass sees node a Ready and keeps it too.
			if r := f.m.Reconcile(ctx); len(r.Released) != 0 || r.Attachments != 1 {
				t.Fatalf("next pass: released = %v, attachments = %d; want none and 1", findings(r.Released), r.Attachments)
			}
			wantCode(t, f.m.Attach(ctx, rwo("b")), codes.FailedPrecondition, "node a")
		})
	}
}
