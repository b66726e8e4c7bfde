package attachment_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// metric returns the value of a counter or gauge with the given label value (or the only one).
func metric(t *testing.T, reg *prometheus.Registry, name, label string) float64 {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if label != "" && !hasLabelValue(m.GetLabel(), label) {
				continue
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	return 0
}

func hasLabelValue(ls []*dto.LabelPair, v string) bool {
	for _, l := range ls {
		if l.GetValue() == v {
			return true
		}
	}
	return false
}

func (e *env) published(v *volume) []string {
	e.t.Helper()
	r, err := e.rig.D.ControllerGetVolume(e.ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.ID})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.GetStatus().GetPublishedNodeIds()
}

// TestNodeGoneMakesVolumePublishableElsewhere: a volume held by a node that is deleted, or that
// is tainted out-of-service after going NotReady, becomes publishable to another node, and the
// release is reported on the PVC and in the metrics.
func TestNodeGoneMakesVolumePublishableElsewhere(t *testing.T) {
	cases := []struct {
		name   string
		reason string
		metric string
		act    func(e *env)
	}{
		{"node deleted", attachment.ReasonNodeDeleted, "node_deleted", func(e *env) { e.deleteNode("a") }},
		{"out-of-service taint", attachment.ReasonNodeOutOfService, "out_of_service", func(e *env) {
			e.setReady("a", corev1.ConditionUnknown)
			e.taintOutOfService("a")
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			e.addNode("a")
			e.addNode("b")
			v := e.createVolume(rwoMount, nil)
			if err := e.publish(v, "a"); err != nil {
				t.Fatal(err)
			}
			wantRefused(t, e.publish(v, "b"), "attached to node "+e.nodeName("a"))

			seq := e.seq()
			tc.act(e)
			e.waitPass(seq, tc.reason)
			if err := e.publish(v, "b"); err != nil {
				t.Fatalf("publish to b after the holder went away: %v", err)
			}
			msg := e.waitEvent(v, attachment.EventReleased)
			t.Logf("event: %s", msg)
			if got := metric(t, e.rig.Registry, "rds_csi_attachment_releases_total", tc.metric); got != 1 {
				t.Errorf("releases_total{%s} = %v, want 1", tc.metric, got)
			}
			if got := e.published(v); !slices.Equal(got, []string{e.nodeName("b")}) {
				t.Errorf("published nodes = %v, want only b", got)
			}
		})
	}
}

// TestHolderVolumeAttachmentGone: when the holder's VolumeAttachment is deleted without any
// ControllerUnpublish (by hand, or by a garbage collector), the volume is publishable elsewhere
// as soon as the cache sees the deletion, without waiting for a pass.
func TestHolderVolumeAttachmentGone(t *testing.T) {
	e := newEnv(t)
	e.addNode("a")
	e.addNode("b")
	v := e.createVolume(rwoMount, nil)
	if err := e.publish(v, "a"); err != nil {
		t.Fatal(err)
	}
	wantRefused(t, e.publish(v, "b"), "attached to node "+e.nodeName("a"))
	e.must(e.attacher().DeleteVA(e.ctx, v.ID, e.nodeName("a")))
	err := wait.PollUntilContextTimeout(e.ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return len(e.published(v)) == 0, nil
	})
	if err != nil {
		t.Fatalf("published nodes still %v after the VolumeAttachment was deleted", e.published(v))
	}
	if err := e.publish(v, "b"); err != nil {
		t.Fatalf("publish to b after a's VolumeAttachment was deleted: %v", err)
	}
	if got := e.published(v); !slices.Equal(got, []string{e.nodeName("b")}) {
		t.Errorf("published nodes = %v, want only b", got)
	}
}

// TestNotReadyOnlyStaysRefused: NotReady alone never releases a single-node volume (the node may
// still be writing); it is reported on the PVC, with the way out.
func TestNotReadyOnlyStaysRefused(t *testing.T) {
	e := newEnv(t)
	e.addNode("a")
	e.addNode("b")
	v := e.createVolume(rwoMount, nil)
	if err := e.publish(v, "a"); err != nil {
		t.Fatal(err)
	}
	seq := e.seq()
	e.setReady("a", corev1.ConditionFalse)
	e.waitPass(seq, attachment.ReasonNodeNotReady)
	t.Logf("event: %s", e.waitEvent(v, attachment.EventHolderNotReady))
	wantRefused(t, e.publish(v, "b"), e.nodeName("a"), "NotReady", attachment.OutOfServiceTaint)
	e.waitEvent(v, attachment.EventAttachRefused)
	if got := metric(t, e.rig.Registry, "rds_csi_attachment_not_ready_holders", ""); got != 1 {
		t.Errorf("not_ready_holders = %v, want 1", got)
	}
	if got := e.published(v); !slices.Equal(got, []string{e.nodeName("a")}) {
		t.Errorf("published nodes = %v, want a", got)
	}
}

// TestLiveMigration: a multi-node block volume takes a second node, never a third; a dual
// attachment past the migration timeout is reported and blocks any other node until one side
// detaches.
func TestLiveMigration(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b", "c"} {
		e.addNode(n)
	}
	v := e.createVolume(rwxBlock, map[string]string{"migrationTimeout": "1s"})
	seq := e.seq()
	if err := e.publish(v, "a"); err != nil {
		t.Fatal(err)
	}
	if err := e.publish(v, "b"); err != nil {
		t.Fatalf("second node of a live migration: %v", err)
	}
	if err := e.publish(v, "b"); err != nil {
		t.Fatalf("republish to b: %v", err)
	}
	wantRefused(t, e.publish(v, "c"), "two nodes")

	e.waitPass(seq, attachment.ReasonMigrationTimeout)
	t.Logf("event: %s", e.waitEvent(v, attachment.EventMigrationTimeout))
	if got := metric(t, e.rig.Registry, "rds_csi_attachment_migration_timeouts_total", ""); got != 1 {
		t.Errorf("migration_timeouts_total = %v, want 1", got)
	}
	wantRefused(t, e.publish(v, "c"), "migration timeout")

	e.unpublish(v, "b")
	if err := e.publish(v, "c"); err != nil {
		t.Fatalf("publish to c after b detached: %v", err)
	}
	if got := e.published(v); !slices.Equal(got, []string{e.nodeName("a"), e.nodeName("c")}) {
		t.Errorf("published nodes = %v, want a and c", got)
	}
}

// TestControllerRestartKeepsDecisions: a new controller rebuilds its view from the
// VolumeAttachments, serves no publish before its caches synced, and then decides as before.
func TestControllerRestartKeepsDecisions(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b", "c", "d"} {
		e.addNode(n)
	}
	rwo := e.createVolume(rwoMount, nil)
	rwx := e.createVolume(rwxBlock, nil)
	orphaned := e.createVolume(rwoMount, nil)
	for _, p := range []struct {
		v *volume
		n string
	}{{rwo, "a"}, {rwx, "a"}, {rwx, "b"}, {orphaned, "d"}} {
		if err := e.publish(p.v, p.n); err != nil {
			t.Fatal(err)
		}
	}
	seq := e.seq()
	e.deleteNode("d")
	e.waitPass(seq, attachment.ReasonNodeDeleted)

	probes := []struct {
		v *volume
		n string
	}{{rwo, "b"}, {rwo, "a"}, {rwx, "c"}, {rwx, "b"}, {orphaned, "b"}, {orphaned, "c"}}
	decide := func() []string {
		var out []string
		for _, p := range probes {
			err := e.publish(p.v, p.n)
			out = append(out, fmt.Sprintf("%s: %v", status.Code(err), status.Convert(err).Message()))
		}
		for _, v := range []*volume{rwo, rwx, orphaned} {
			out = append(out, fmt.Sprint(e.published(v)))
		}
		return out
	}
	before := decide()

	e.rig.M.Stop()
	e.startController()
	after := decide()
	if !slices.Equal(before, after) {
		t.Fatalf("decisions changed across the restart:\nbefore %q\nafter  %q", before, after)
	}
	for i, want := range []codes.Code{codes.FailedPrecondition, codes.OK, codes.FailedPrecondition, codes.OK, codes.OK, codes.FailedPrecondition} {
		if got := before[i][:len(want.String())]; got != want.String() {
			t.Errorf("probe %d: %s, want %v", i, before[i], want)
		}
	}
}

// TestRestartBetweenPublishAndStatus: a controller that stops after granting a publish but
// before the external-attacher wrote status.attached must not let its successor grant the volume
// to another node in that window; the pending VolumeAttachment's own retried publish succeeds,
// and once it is the holder the other node is still refused. Two pending VolumeAttachments of one
// volume do not block each other forever: after one round, exactly one wins.
func TestRestartBetweenPublishAndStatus(t *testing.T) {
	t.Run("a granted publish survives the restart", func(t *testing.T) {
		e := newEnv(t)
		e.addNode("a")
		e.addNode("b")
		v := e.createVolume(rwoMount, nil)
		e.grantWithoutStatus(v, "a")
		e.rig.M.Stop()
		e.startController()
		wantRefused(t, e.publish(v, "b"), "attached to node "+e.nodeName("a"))
		if err := e.publish(v, "a"); err != nil {
			t.Fatalf("the pending VolumeAttachment's retried publish: %v", err)
		}
		wantRefused(t, e.publish(v, "b"), "attached to node "+e.nodeName("a"))
	})
	t.Run("two pending VolumeAttachments: one wins after one round", func(t *testing.T) {
		e := newEnv(t)
		e.addNode("a")
		e.addNode("b")
		v := e.createVolume(rwoMount, nil)
		e.grantWithoutStatus(v, "a")
		e.createVA(v, "b")
		e.rig.M.Stop()
		e.startController()
		errB := e.publish(v, "b") // a may hold it: refused
		wantRefused(t, errB, e.nodeName("a"))
		if err := e.publish(v, "a"); err != nil {
			t.Fatalf("a after b was refused: %v", err)
		}
		wantRefused(t, e.publish(v, "b"), e.nodeName("a"))
	})
}

// grantWithoutStatus is the external-attacher stopped half-way: VolumeAttachment created and
// ControllerPublish granted, status.attached not written.
func (e *env) grantWithoutStatus(v *volume, s string) {
	e.t.Helper()
	e.createVA(v, s)
	if _, err := e.rig.D.ControllerPublishVolume(e.ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.ID, NodeId: e.nodeName(s),
		VolumeCapability: v.Cap, VolumeContext: v.Ctx}); err != nil {
		e.t.Fatal(err)
	}
}

// TestNoPublishBeforeSync: a controller whose caches have not synced refuses to publish
// (Unavailable) and its Probe is not ready.
func TestNoPublishBeforeSync(t *testing.T) {
	e := newEnv(t)
	e.addNode("a")
	v := e.createVolume(rwoMount, nil)
	m, err := attachment.NewManager(attachment.Config{DriverName: e.name, Client: e.cs})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	e.rig.M = m
	e.rig.D = newDriver(t, e, m)
	if err := e.publish(v, "a"); status.Code(err) != codes.Unavailable {
		t.Fatalf("publish before sync: %v, want Unavailable", err)
	}
	if e.probe() {
		t.Fatal("Probe ready before the caches synced")
	}
	m.Start(e.ctx)
	e.waitProbe(true)
	if err := e.publish(v, "a"); err != nil {
		t.Fatal(err)
	}
}

// TestConcurrentPublishExactlyOneWins: publishes of one single-node volume to many nodes at once
// (each retried on Aborted, as the external-attacher does): exactly one wins.
func TestConcurrentPublishExactlyOneWins(t *testing.T) {
	const nodes, rounds = 6, 4
	e := newEnv(t)
	for i := range nodes {
		e.addNode(fmt.Sprint(i))
	}
	for r := range rounds {
		v := e.createVolume(rwoMount, nil)
		errs := make([]error, nodes)
		start := make(chan struct{})
		var wg sync.WaitGroup
		for i := range nodes {
			wg.Go(func() {
				<-start
				errs[i] = e.publish(v, fmt.Sprint(i))
			})
		}
		close(start)
		wg.Wait()
		var won []string
		for i, err := range errs {
			switch status.Code(err) {
			case codes.OK:
				won = append(won, e.nodeName(fmt.Sprint(i)))
			case codes.FailedPrecondition:
			default:
				t.Fatalf("round %d node %d: %v", r, i, err)
			}
		}
		if len(won) != 1 {
			t.Fatalf("round %d: winners %v, want exactly one", r, won)
		}
		if got := e.published(v); !slices.Equal(got, won) {
			t.Fatalf("round %d: published nodes %v, want %v", r, got, won)
		}
	}
}

// TestRDSOutage: the controller starts and answers Probe while the RDS is down, fails operations
// fast with Unavailable during the outage, becomes ready by itself when the RDS is back, and the
// reconnect triggers a reconcile pass.
func TestRDSOutage(t *testing.T) {
	cases := []struct {
		name   string
		before func(*rdssim.TestServer)
		outage func(e *env)
		back   func(e *env)
	}{
		{"down at start",
			func(s *rdssim.TestServer) { s.SetRefuse(true) },
			func(*env) {},
			func(e *env) { e.sim.SetRefuse(false) }},
		{"restart while running",
			nil,
			func(e *env) {
				e.waitProbe(true)
				e.sim.Restart(500 * time.Millisecond)
				e.waitProbe(false)
			},
			func(e *env) {
				if err := e.sim.WaitListening(e.ctx); err != nil {
					e.t.Fatal(err)
				}
			}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var opts []func(*rdssim.TestServer)
			if tc.before != nil {
				opts = append(opts, tc.before)
			}
			e := newEnv(t, opts...)
			e.addNode("a")
			tc.outage(e)
			if e.probe() {
				t.Fatal("Probe ready while the RDS is down")
			}
			seq := e.seq()
			for range 3 {
				start := time.Now()
				_, err := e.rig.D.ControllerPublishVolume(e.ctx, &csi.ControllerPublishVolumeRequest{VolumeId: "pvc-00000000-0000-4000-8000-000000000001",
					NodeId: e.nodeName("a"), VolumeCapability: rwoMount})
				if status.Code(err) != codes.Unavailable || time.Since(start) > 2*time.Second {
					t.Fatalf("publish during the outage: %v after %v, want Unavailable at once", err, time.Since(start))
				}
			}
			asked := time.Now()
			tc.back(e)
			back := time.Now()
			ready := e.waitProbe(true)
			// A pass started after the RDS was let back, so triggered by this reconnect.
			p := e.waitPassSince(seq, attachment.ReasonRDSReconnect, asked)
			t.Logf("RDS accepting connections → Probe ready in %v, reconcile pass done in %v", ready.Sub(back), p.End.Sub(back))
			v := e.createVolume(rwoMount, nil)
			if err := e.publish(v, "a"); err != nil {
				t.Fatal(err)
			}
		})
	}
}
