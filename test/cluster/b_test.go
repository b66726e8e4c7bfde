package cluster

import (
	"context"
	"fmt"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario b: a claim in use is expanded: csi-resizer expands the disk on the RDS, the kubelet
// grows the filesystem online, and the pod's mount has the new size. XFS: growing a mounted
// ext4 fails on this host's kernel.
func TestB_Expansion(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := "scenario-b"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	// mkfs.xfs refuses filesystems under 300 MiB.
	if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: "b", Class: ClassXFS, Size: "320Mi"}); err != nil {
		t.Fatal(err)
	}
	token := "b-" + time.Now().Format("150405.000")
	if _, err := c.CreatePod(ctx, ns, PodSpec{Name: "b", Claim: "b", Node: "node-b", Token: token}); err != nil {
		t.Fatal(err)
	}
	pod, err := c.WaitPodReady(ctx, ns, "b", 3*time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	_, pv, err := c.WaitPVCBound(ctx, ns, "b", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	n := c.Node("node-b")
	mnt := kubeletDir + "/pods/" + string(pod.UID) + "/volumes/kubernetes.io~csi/" + pv.Name + "/mount"
	before, err := n.FSSize(mnt)
	if err != nil {
		t.Fatal(err)
	}

	want := resource.MustParse("480Mi")
	pvc, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "b", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	pvc.Spec.Resources.Requests[corev1.ResourceStorage] = want
	if _, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Update(ctx, pvc, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	var state string
	err = waitFor(ctx, 3*time.Minute, func() (bool, error) {
		p, err := c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, "b", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		got := p.Status.Capacity[corev1.ResourceStorage]
		state = fmt.Sprintf("capacity %s, conditions %v, allocated %v", got.String(), p.Status.Conditions, p.Status.AllocatedResourceStatuses)
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PersistentVolumeClaimResizing || cond.Type == corev1.PersistentVolumeClaimFileSystemResizePending {
				return false, nil
			}
		}
		return got.Cmp(want) >= 0, nil
	})
	if err != nil {
		t.Fatalf("PVC b not expanded to %s (%s): %v; events: %s", want.String(), state, err, c.Events(ctx, ns, "b"))
	}
	t.Logf("PVC expanded (controller and node) in %v", time.Since(start).Round(time.Millisecond))
	disk, ok := c.Disk(pv.Spec.CSI.VolumeHandle)
	if !ok || disk.FileSize < want.Value() {
		t.Errorf("disk on the RDS after expansion: %+v (found %v); want at least %d bytes", disk, ok, want.Value())
	}
	after, err := n.FSSize(mnt)
	if err != nil {
		t.Fatal(err)
	}
	// The filesystem grew by what the claim grew (XFS keeps its log and metadata out of the
	// size statfs reports, so the sizes themselves are smaller than the claim's).
	old := resource.MustParse("320Mi")
	grown := want.Value() - old.Value()
	if after-before < grown*9/10 {
		t.Errorf("the pod's filesystem is %d bytes after expansion (%d before): grew %d, want about %d", after, before, after-before, grown)
	}
	// The pod kept running on its data through the expansion.
	if _, err := c.WaitPodReady(ctx, ns, "b", time.Minute); err != nil {
		t.Fatal(err)
	}
	if err := c.DeletePod(ctx, ns, "b", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	deleteClaims(ctx, t, c, ns)
}
