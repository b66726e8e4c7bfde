package cluster

import (
	"context"
	"os"
	"strings"
	"testing"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/volid"
)

var (
	snapGVR    = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshots"}
	contentGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}
)

// Scenario c: a VolumeSnapshot of a written claim turns ReadyToUse (csi-snapshotter and the
// snapshot-controller); a claim restored from it and a clone of the source hold the same data;
// deleting everything leaves no disk and no file of them on the RDS.
func TestC_SnapshotRestoreClone(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()
	ns := "scenario-c"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: "src", Class: ClassExt4, Size: "64Mi"}); err != nil {
		t.Fatal(err)
	}
	token := "c-" + time.Now().Format("150405.000")
	if _, err := c.CreatePod(ctx, ns, PodSpec{Name: "writer", Claim: "src", Node: "node-b", Token: token}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitPodReady(ctx, ns, "writer", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	// The writer goes first: its unstage flushes the filesystem, so the copy is consistent.
	if err := c.DeletePod(ctx, ns, "writer", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	_, srcPV, err := c.WaitPVCBound(ctx, ns, "src", time.Minute)
	if err != nil {
		t.Fatal(err)
	}

	snap := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshot",
		"metadata": map[string]any{"name": "snap", "namespace": ns},
		"spec": map[string]any{"volumeSnapshotClassName": "rds-csi",
			"source": map[string]any{"persistentVolumeClaimName": "src"}},
	}}
	if _, err := dyn.Resource(snapGVR).Namespace(ns).Create(ctx, snap, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	var content string
	err = waitFor(ctx, 3*time.Minute, func() (bool, error) {
		u, err := dyn.Resource(snapGVR).Namespace(ns).Get(ctx, "snap", metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		ready, _, _ := unstructured.NestedBool(u.Object, "status", "readyToUse")
		content, _, _ = unstructured.NestedString(u.Object, "status", "boundVolumeSnapshotContentName")
		return ready, nil
	})
	if err != nil {
		t.Fatalf("VolumeSnapshot not ReadyToUse: %v; events: %s\nsnapshot-controller:\n%s\ncsi-snapshotter:\n%s",
			err, c.Events(ctx, ns, "snap"), c.Log("snapshot-controller", 20), c.ContainerLog("csi-snapshotter", 20))
	}
	u, err := dyn.Resource(contentGVR).Get(ctx, content, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	snapHandle, _, _ := unstructured.NestedString(u.Object, "status", "snapshotHandle")
	snapDisk, ok := c.Disk(snapHandle)
	if !ok || !strings.HasPrefix(snapHandle, volid.SnapshotPrefix) {
		t.Fatalf("snapshot %q has no disk on the RDS", snapHandle)
	}

	for _, s := range []PVCSpec{
		{Name: "restore", Class: ClassExt4, Size: "64Mi", SnapshotSource: "snap"},
		{Name: "clone", Class: ClassExt4, Size: "64Mi", PVCSource: "src"},
	} {
		if _, err := c.CreatePVC(ctx, ns, s); err != nil {
			t.Fatal(err)
		}
	}
	disks := []rdssim.Disk{snapDisk}
	if d, ok := c.Disk(srcPV.Spec.CSI.VolumeHandle); ok {
		disks = append(disks, d)
	}
	for _, name := range []string{"restore", "clone"} {
		_, pv, err := c.WaitPVCBound(ctx, ns, name, 3*time.Minute)
		if err != nil {
			t.Fatal(err)
		}
		d, ok := c.Disk(pv.Spec.CSI.VolumeHandle)
		if !ok {
			t.Fatalf("%s: no disk %s on the RDS", name, pv.Spec.CSI.VolumeHandle)
		}
		disks = append(disks, d)
		// Same data: the reader writes nothing when the file exists, and is Ready only when it
		// holds the source's token.
		if _, err := c.CreatePod(ctx, ns, PodSpec{Name: name + "-reader", Claim: name, Node: "node-c", Token: token}); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitPodReady(ctx, ns, name+"-reader", 3*time.Minute); err != nil {
			t.Fatal(err)
		}
		if err := c.DeletePod(ctx, ns, name+"-reader", 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}

	// Everything goes: claims (reclaim Delete) and the snapshot (deletionPolicy Delete).
	deleteClaims(ctx, t, c, ns)
	if err := dyn.Resource(snapGVR).Namespace(ns).Delete(ctx, "snap", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = waitFor(ctx, 3*time.Minute, func() (bool, error) {
		for _, d := range disks {
			if _, ok := c.Disk(d.Slot); ok {
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		t.Fatalf("disks left on the RDS after deleting everything: %v", err)
	}
	for _, d := range disks {
		if _, err := os.Stat(c.Sim.HostPath(d.FilePath)); !os.IsNotExist(err) {
			t.Errorf("file %s of deleted disk %s is still on the RDS (%v)", d.FilePath, d.Slot, err)
		}
	}
}
