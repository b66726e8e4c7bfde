package main

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

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
	// Two moments: every PV made (csi-provisioner and rds-csi done), every PVC Bound (then also
	// kube-controller-manager's PV controller, whose API client is rate-limited).
	var made, took time.Duration
	deadline := time.Now().Add(10 * time.Minute)
	for took == 0 {
		if time.Now().After(deadline) {
			return fmt.Errorf("%d PVCs not Bound after 10 minutes", n)
		}
		pvs, err := c.Client.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		k := 0
		for _, pv := range pvs.Items {
			if pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Namespace == "bench" {
				k++
			}
		}
		if made == 0 && k == n {
			made = time.Since(t0)
		}
		pvcs, err := c.Client.CoreV1().PersistentVolumeClaims("bench").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		b := 0
		for _, p := range pvcs.Items {
			if p.Status.Phase == corev1.ClaimBound {
				b++
			}
		}
		if made != 0 && b == n {
			took = time.Since(t0)
		}
		time.Sleep(100 * time.Millisecond)
	}
	cmds := c.Sim.Stats().Commands - before
	c.Sim.SetLatency(0)
	bound := time.Duration(cmds) * rdsLatency / sessions
	fmt.Printf("%d PVCs at once, RDS at %v a command: every PV made in %v (ratio %.2f to the bound), every PVC Bound in %v; %d RDS commands (%.1f a create); bound commands × latency ÷ %d sessions = %v\n",
		n, rdsLatency, made.Round(time.Millisecond), float64(made)/float64(bound), took.Round(time.Millisecond), cmds, float64(cmds)/n, sessions, bound.Round(time.Millisecond))

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
