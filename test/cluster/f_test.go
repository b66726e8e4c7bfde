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
	before := c.boundCount(ctx, ns)
	killed := c.Node(leader).KillProcesses("csi-provisioner", "csi-attacher", "csi-resizer", "csi-snapshotter", "rds-csi --mode=controller")
	kill := time.Now()
	if killed == 0 {
		t.Fatalf("no controller process found on %s", leader)
	}
	t.Logf("killed %d controller processes on %s with %d of %d PVCs Bound", killed, leader, before, n)
	var next time.Duration
	err = waitFor(ctx, 5*time.Minute, func() (bool, error) {
		b := c.boundCount(ctx, ns)
		if next == 0 && b > before {
			next = time.Since(kill)
		}
		return b == n, nil
	})
	if err != nil {
		t.Fatalf("not every PVC Bound after the leader died (%d of %d): %v\n%s", c.boundCount(ctx, ns), n, err, c.PodReport(ctx))
	}
	if before == n {
		t.Logf("every PVC was Bound before the kill took effect: no takeover measured")
	} else {
		t.Logf("figure (this machine): leader killed → next PVC Bound %v (lease duration 15s); all %d Bound %v after the kill",
			next.Round(time.Millisecond), n, time.Since(kill).Round(time.Millisecond))
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
