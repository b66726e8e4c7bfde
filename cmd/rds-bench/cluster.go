package main

import (
	"context"
	"fmt"
	"os"
	"time"

	"github.com/srvlab/rds-csi/test/cluster"
)

// rdsLatency is about what one RouterOS command takes on real RDS hardware.
const rdsLatency = 430 * time.Millisecond

// benchCluster measures rds-csi in a real cluster (test/cluster: real kubelets, controllers and
// sidecars, the chart's install): 100 PVCs created at once against the bound set by the RDS's
// command latency and the controller's SSH sessions, and a node failover against the part of it
// that is Kubernetes' own.
func benchCluster(ctx context.Context, _ benchOptions) error {
	if os.Getenv("RDS_CSI_CHART") == "" {
		_ = os.Setenv("RDS_CSI_CHART", "deploy/helm/rds-csi")
	}
	start := time.Now()
	c, err := cluster.Start(ctx, cluster.Options{})
	if err != nil {
		return err
	}
	defer c.Stop()
	fmt.Printf("cluster: 3 real kubelets, controllers and sidecars up, rds-csi installed by its chart, in %v\n", time.Since(start).Round(time.Second))

	if err := c.CreateNamespace(ctx, "bench"); err != nil {
		return err
	}
	const n = 100
	const sessions = 8 // the chart's rds.maxSessions
	c.Sim.SetLatency(rdsLatency)
	before := c.Sim.Stats().Commands
	t0 := time.Now()
	for i := range n {
		if _, err := c.CreatePVC(ctx, "bench", cluster.PVCSpec{Name: fmt.Sprintf("b-%03d", i), Class: cluster.ClassExt4, Size: "16Mi"}); err != nil {
			return err
		}
	}
	for i := range n {
		if _, _, err := c.WaitPVCBound(ctx, "bench", fmt.Sprintf("b-%03d", i), 10*time.Minute); err != nil {
			return err
		}
	}
	took := time.Since(t0)
	cmds := c.Sim.Stats().Commands - before
	c.Sim.SetLatency(0)
	bound := time.Duration(cmds) * rdsLatency / sessions
	fmt.Printf("%d PVCs at once, RDS at %v a command: all Bound in %v; %d RDS commands (%.1f a create); bound commands × latency ÷ %d sessions = %v; ratio %.2f\n",
		n, rdsLatency, took.Round(time.Millisecond), cmds, float64(cmds)/n, sessions, bound.Round(time.Millisecond), float64(took)/float64(bound))

	if err := c.CreateNamespace(ctx, "failover"); err != nil {
		return err
	}
	r, err := c.NodeFailover(ctx, "failover", "fo", "node-c", "node-b", false)
	if err != nil {
		return err
	}
	fmt.Printf("node failure (power off, out-of-service taint): %s\n", r)
	fmt.Printf("  rds-csi's share of taint → pod Ready: %.0f%%\n", 100*float64(r.RDSCSI)/float64(r.Total))
	return nil
}
