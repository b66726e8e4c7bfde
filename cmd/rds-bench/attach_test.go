package attachbench

import (
	"context"
	"os"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

// TestFigures runs each measurement once, small, so that `make bench` cannot rot unnoticed.
func TestFigures(t *testing.T) {
	cfg := k8stest.Shared(t)
	ctx := context.Background()
	for _, ev := range []string{"delete", "taint"} {
		t.Run("failover "+ev, func(t *testing.T) {
			s, err := Failover(ctx, cfg, ev, Options{Samples: 2})
			if err != nil {
				t.Fatal(err)
			}
			for _, x := range s {
				if x.PassDone <= 0 || x.Publish < x.PassDone || x.Watch <= 0 || x.FreshPublish <= 0 {
					t.Fatalf("sample %+v: want 0 < PassDone <= Publish and positive baselines", x)
				}
				t.Logf("%s: pass done %v, publish ok %v", ev, x.PassDone, x.Publish)
			}
		})
	}
	t.Run("probe recovery", func(t *testing.T) {
		s, err := ProbeRecovery(ctx, cfg, Options{Samples: 2, Down: 300 * time.Millisecond,
			RDS: func(c *rds.Config) { c.BackoffInitial, c.BackoffMax = 20*time.Millisecond, 100*time.Millisecond }})
		if err != nil {
			t.Fatal(err)
		}
		for _, x := range s {
			if x.ProbeReady <= 0 || x.Dial <= 0 || x.PassDone <= 0 {
				t.Fatalf("sample %+v: want positive durations", x)
			}
			t.Logf("listening → Probe ready %v, reconnect pass done %v, baseline dial %v", x.ProbeReady, x.PassDone, x.Dial)
		}
	})
	t.Run("pass over a large cache", func(t *testing.T) {
		r, err := attachment.BenchPass(ctx, attachment.PassBenchConfig{VolumeAttachments: 1000, Nodes: 100})
		if err != nil {
			t.Fatal(err)
		}
		if len(r.First.Result.Released) != 20 || r.Steady.APICalls != 0 || r.Walk <= 0 {
			t.Fatalf("first pass released %d (want 20), steady pass made %d API calls (want 0), walk %v", len(r.First.Result.Released), r.Steady.APICalls, r.Walk)
		}
		t.Logf("first %v; steady %v", r.First, r.Steady)
	})
}
