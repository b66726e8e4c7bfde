package main

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

// TestHealFigures runs each measurement against the API server once, small, so that `make bench`
// cannot rot unnoticed.
func TestHealFigures(t *testing.T) {
	cfg := k8stest.Shared(t)
	ctx := context.Background()
	for _, ev := range []string{"delete", "taint"} {
		t.Run("failover "+ev, func(t *testing.T) {
			s, err := failover(ctx, cfg, ev, healOptions{samples: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range s {
				if x.passDone <= 0 || x.publish < x.passDone || x.watch <= 0 || x.freshPublish <= 0 {
					t.Fatalf("sample %+v: want 0 < passDone <= publish and positive baselines", x)
				}
				t.Logf("%s: pass done %v, publish ok %v", ev, x.passDone, x.publish)
			}
		})
	}
	t.Run("probe recovery", func(t *testing.T) {
		s, err := probeRecovery(ctx, cfg, healOptions{samples: 2, down: 300 * time.Millisecond,
			rds: func(c *rds.Config) { c.BackoffInitial, c.BackoffMax = 20*time.Millisecond, 100*time.Millisecond }})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range s {
			if x.probeReady <= 0 || x.dial <= 0 || x.passDone <= 0 {
				t.Fatalf("sample %+v: want positive durations", x)
			}
			t.Logf("listening → Probe ready %v, reconnect pass done %v, baseline dial %v", x.probeReady, x.passDone, x.dial)
		}
	})
}

// TestPassCounts: the pass benchmark finds, and posts, exactly what its world holds.
func TestPassCounts(t *testing.T) {
	r, err := benchPass(context.Background(), passConfig{vas: 2000, nodes: 200})
	if err != nil {
		t.Fatal(err)
	}
	// 2 of 200 nodes deleted, 2 out of service, 2 NotReady; 10 attachments per node; 1% disks
	// missing; 10 orphan exports.
	if r.released != 40 || r.notReady != 20 || r.missing != 20 || r.orphans != 10 || r.attachments != 1960 {
		t.Fatalf("released %d, notReady %d, missing %d, orphans %d, attachments %d",
			r.released, r.notReady, r.missing, r.orphans, r.attachments)
	}
	if r.first.gets != 2 || r.first.events != 40+20+20 {
		t.Fatalf("first pass: %v, want 2 GETs (the deleted nodes) and 80 events", r.first)
	}
	if r.steady.apiCalls != 0 || r.walk <= 0 {
		t.Fatalf("steady pass: %v, walk %v", r.steady, r.walk)
	}
}

// BenchmarkReconcilePass: one steady pass over 10,000 VolumeAttachments on 1,000 nodes.
func BenchmarkReconcilePass(b *testing.B) {
	r, err := newPassRig(context.Background(), passConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer r.m.Stop()
	r.m.Reconcile(context.Background())
	for b.Loop() {
		r.m.Reconcile(context.Background())
	}
}
