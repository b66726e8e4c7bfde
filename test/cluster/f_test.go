package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario f, controller HA: every container of the controller replica that leads the
// provisioner is killed (SIGKILL, as a crashed node would leave them) while 20 PVCs provision;
// the other replica takes over, every PVC is Bound, and the RDS holds no orphan disk.
func TestF_ControllerHA(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := "scenario-f"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	leader, err := c.ProvisionerLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("provisioner leader on %s", leader)
	// Slow commands keep the 20 creates in flight when the leader dies.
	c.Sim.SetLatency(300 * time.Millisecond)
	defer c.Sim.SetLatency(0)
	const n = 20
	for i := range n {
		if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: fmt.Sprintf("f-%02d", i), Class: ClassExt4, Size: "16Mi"}); err != nil {
			t.Fatal(err)
		}
	}
	if err := waitFor(ctx, 2*time.Minute, func() (bool, error) { return c.boundCount(ctx, ns) > 0, nil }); err != nil {
		t.Fatalf("no PVC Bound before the kill: %v", err)
	}
	// Its kubelet stops first: it would restart the containers at once, and a restarted
	// provisioner, with the same identity, would simply keep the lease. With the replica gone
	// for good the other one must take over.
	ln := c.Node(leader)
	ln.StopKubelet()
	before := c.boundCount(ctx, ns)
	killed := ln.KillProcesses("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "rds-csi --mode=controller")
	kill := time.Now()
	if killed < 5 {
		t.Errorf("killed %d controller processes on %s; want 5 (rds-csi and four sidecars)", killed, leader)
	}
	t.Logf("killed %d controller processes on %s with %d of %d PVCs Bound", killed, leader, before, n)
	var takeover, next time.Duration
	var afterTakeover int
	err = waitFor(ctx, 5*time.Minute, func() (bool, error) {
		b := c.boundCount(ctx, ns)
		if takeover == 0 {
			if h, err := c.ProvisionerLeader(ctx); err == nil && h != leader {
				takeover, afterTakeover = time.Since(kill), b
			}
		} else if next == 0 && b > afterTakeover {
			next = time.Since(kill)
		}
		return b == n, nil
	})
	if err != nil {
		t.Fatalf("not every PVC Bound after the leader died (%d of %d): %v\n%s", c.boundCount(ctx, ns), n, err, c.PodReport(ctx))
	}
	if takeover == 0 {
		t.Errorf("every PVC Bound, but the provisioner's lease never left %s", leader)
	}
	if before == n || afterTakeover == n {
		t.Logf("every PVC was Bound before the takeover: no next volume measured")
	} else {
		t.Logf("figure (this machine): leader killed → other replica leads %v (lease duration 15s) → next PVC Bound %v; all %d Bound %v after the kill",
			takeover.Round(time.Millisecond), next.Round(time.Millisecond), n, time.Since(kill).Round(time.Millisecond))
	}
	if err := ln.StartKubelet(); err != nil {
		t.Fatal(err)
	}
	checkNoOrphans(ctx, t, c)
	deleteClaims(ctx, t, c, ns)
	// The killed replica comes back (the kubelet restarts its containers).
	if err := c.WaitDriver(ctx, 3*time.Minute); err != nil {
		t.Fatal(err)
	}
}

func (c *Cluster) boundCount(ctx context.Context, ns string) int {
	pvcs, err := c.Client.CoreV1().PersistentVolumeClaims(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return 0
	}
	b := 0
	for _, p := range pvcs.Items {
		if p.Status.Phase == corev1.ClaimBound {
			b++
		}
	}
	return b
}
