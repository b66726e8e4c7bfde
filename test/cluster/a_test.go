package cluster

import (
	"context"
	"testing"
	"time"

	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Scenario a: a claim is provisioned by the real csi-provisioner (Immediate, and
// WaitForFirstConsumer through the scheduler), attached by the real attach-detach controller and
// csi-attacher, staged and published by the kubelet; the pod writes and reads its data; deleting
// the pod unpublishes, unstages and detaches; a pod on another node reads the same data.
func TestA_ProvisionAttachStagePublish(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := "scenario-a"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	wffc := storagev1.VolumeBindingWaitForFirstConsumer
	del := corev1ReclaimDelete
	if _, err := c.Client.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{
		ObjectMeta: metav1.ObjectMeta{Name: "rds-ext4-wffc"}, Provisioner: Driver, ReclaimPolicy: &del,
		VolumeBindingMode: &wffc, Parameters: map[string]string{"csi.storage.k8s.io/fstype": "ext4"},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ name, class string }{{"immediate", ClassExt4}, {"wffc", "rds-ext4-wffc"}} {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: tc.name, Class: tc.class, Size: "64Mi"}); err != nil {
				t.Fatal(err)
			}
			if tc.class == ClassExt4 {
				// Immediate: Bound before any pod asks for it.
				if _, _, err := c.WaitPVCBound(ctx, ns, tc.name, 2*time.Minute); err != nil {
					t.Fatal(err)
				}
			}
			writer, reader := "node-b", "node-c"
			token := "a-" + tc.name + "-" + time.Now().Format("150405.000")
			if _, err := c.CreatePod(ctx, ns, PodSpec{Name: tc.name + "-writer", Claim: tc.name, Node: writer, Token: token}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitPodReady(ctx, ns, tc.name+"-writer", 3*time.Minute); err != nil {
				t.Fatal(err)
			}
			_, pv, err := c.WaitPVCBound(ctx, ns, tc.name, time.Minute)
			if err != nil {
				t.Fatal(err)
			}
			handle := pv.Spec.CSI.VolumeHandle
			disk, ok := c.Disk(handle)
			if !ok {
				t.Fatalf("PV %s is Bound but the RDS has no disk %s", pv.Name, handle)
			}
			if disk.FileSize < 64<<20 {
				t.Errorf("disk %s on the RDS is %d bytes, the claim asked for 64Mi", handle, disk.FileSize)
			}
			checkAttached(ctx, t, c, pv.Name, writer)
			n := c.Node(writer)
			mounts, err := n.VolumeMounts(pv)
			if err != nil {
				t.Fatal(err)
			}
			// Staged (the global mount) and published (the pod's mount).
			if !hasSuffixIn(mounts, "/globalmount") || !hasSuffixIn(mounts, "/mount") {
				t.Errorf("on %s, mounts of %s are %v: want the staging (globalmount) and the pod's publish mount", writer, pv.Name, mounts)
			}
			if l := n.LoopFor(disk); len(l) != 1 {
				t.Errorf("on %s, loop devices of %s: %v, want one", writer, disk.FilePath, l)
			}

			if err := c.DeletePod(ctx, ns, tc.name+"-writer", 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			checkDetached(ctx, t, c, pv, writer, disk)

			// The data is on the RDS: a pod on another node reads it.
			if _, err := c.CreatePod(ctx, ns, PodSpec{Name: tc.name + "-reader", Claim: tc.name, Node: reader, Token: token}); err != nil {
				t.Fatal(err)
			}
			if _, err := c.WaitPodReady(ctx, ns, tc.name+"-reader", 3*time.Minute); err != nil {
				t.Fatal(err)
			}
			checkAttached(ctx, t, c, pv.Name, reader)
			if err := c.DeletePod(ctx, ns, tc.name+"-reader", 2*time.Minute); err != nil {
				t.Fatal(err)
			}
			checkDetached(ctx, t, c, pv, reader, disk)
		})
	}
}
