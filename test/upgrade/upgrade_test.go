// Package upgrade takes over what the earlier driver (3whiskeywhiskey/rds-csi, same driver name)
// left behind: on the RDS simulator, a volume and a snapshot made with the very commands that
// driver sends; in a real kube-apiserver, the PV it wrote (its volume handle and volume
// attributes) and the VolumeAttachment its attacher left (its publish-context keys). The rds-csi
// binary, as deployed (--mode all here, with the loop initiator over the simulator's files), then
// publishes, stages, writes, unstages and deletes that volume, restores and deletes that snapshot,
// and leaves no disk and no file behind. It needs root (loop devices, mounts) and the API server.
package upgrade

import (
	"bytes"
	"context"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/utils/ptr"

	"github.com/srvlab/rds-csi/internal/deployrig"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

const (
	driverName = "rds.csi.srvlab.io" // the earlier driver's name, and rds-csi's
	// oldDir is the earlier chart's default volume directory (rds.basePath); rds-csi runs with its
	// own default, /storage-pool/kubernetes-volumes, and must find the old files all the same.
	oldDir = "/storage-pool/metal-csi"
	oldVol = "pvc-3c1d2e4f-5a6b-4c7d-8e9f-0a1b2c3d4e5f"
	// The earlier driver's snapshot ID, GenerateSnapshotID form: snap-<uuid>-at-<10 hex>.
	oldSnap  = "snap-9b8a7c6d-5e4f-4a3b-8c2d-1e0f9a8b7c6d-at-9b8a7c6d5e"
	restored = "pvc-7d6c5b4a-3f2e-4d1c-9b0a-8f7e6d5c4b3a"
	nqnBase  = "nqn.2000-02.com.mikrotik:"
)

var fsCap = &csi.VolumeCapability{
	AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
}

// sim runs one command on the simulator as the earlier driver's SSH client did, failing the test
// on any error output.
func sim(t *testing.T, ts *rdssim.TestServer, cmd string) {
	t.Helper()
	res, err := ts.Exec(t.Context(), cmd)
	if err != nil || res.ExitStatus != 0 || strings.Contains(res.Stdout+res.Stderr, "failure") {
		t.Fatalf("%s: %v %+v", cmd, err, res)
	}
}

func TestEarlierDriversVolumeAndSnapshot(t *testing.T) {
	if os.Geteuid() != 0 && !testing.Short() {
		t.Fatal("the upgrade test stages volumes on real loop devices and mounts: run as root (CI does)")
	}
	cfg := k8stest.Shared(t)
	r := deployrig.New(t, cfg, deployrig.Options{Driver: driverName, Prefix: "up-", ClaimNamespace: "apps"})
	ts := r.Sim
	nodeA, nodeB := r.Node("a"), r.Node("b")
	state := t.TempDir()
	r.Args = append(r.Args, "--mode=all", "--node-id="+nodeA, "--nvme-backend=loop", "--loop-root="+ts.DataDir(),
		"--node-state-dir="+state, "--reconcile-interval=1h")

	// What the earlier driver made on the RDS: CreateVolume's /disk add (its default directory,
	// 1 GiB, exported on 4420 under the volume's NQN); its node plugin formatted the volume ext4 at
	// the first stage and the application wrote to it (mkfs -d stands for both); then
	// CreateSnapshot's copy, an unexported disk with the snapshot ID as slot, in the same directory.
	sim(t, ts, "/disk add type=file file-path="+oldDir+"/"+oldVol+".img file-size=1G slot="+oldVol+
		" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn="+nqnBase+oldVol)
	content := t.TempDir()
	before := []byte("written under the earlier driver\n")
	if err := os.WriteFile(filepath.Join(content, "before.txt"), before, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mkfs.ext4", "-q", "-F", "-d", content, ts.HostPath(oldDir+"/"+oldVol+".img")).CombinedOutput(); err != nil {
		t.Fatalf("mkfs.ext4: %v\n%s", err, out)
	}
	sim(t, ts, "/disk add type=file copy-from=[find slot="+oldVol+"] file-path="+oldDir+"/"+oldSnap+".img slot="+oldSnap)

	// What it wrote in the cluster: the PV (CreateVolume's volume context, as the provisioner
	// stores it) bound to a PVC, on node a through a VolumeAttachment whose attacher recorded its
	// publish context.
	ctx := r.Ctx
	for _, n := range []string{nodeA, nodeB} {
		r.AddNode(n)
	}
	attrs := map[string]string{
		"rdsAddress": "127.0.0.1", "nvmeAddress": "127.0.0.1", "nvmePort": "4420", "nqn": nqnBase + oldVol,
		"volumePath": oldDir + "/" + oldVol + ".img", "ctrlLossTmo": "-1", "reconnectDelay": "5", "keepAliveTmo": "0",
		"migrationTimeoutSeconds":                      "300",
		"storage.kubernetes.io/csiProvisionerIdentity": "1739800000000-8081-" + driverName,
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: oldVol, Annotations: map[string]string{"pv.kubernetes.io/provisioned-by": driverName}},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:                      corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes:                   []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeReclaimPolicy: corev1.PersistentVolumeReclaimDelete,
			StorageClassName:              "rds-nvme",
			VolumeMode:                    ptr.To(corev1.PersistentVolumeFilesystem),
			ClaimRef:                      &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: "apps", Name: "data"},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driverName, VolumeHandle: oldVol, FSType: "ext4", VolumeAttributes: attrs}},
		},
	}
	if _, err := r.Admin.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	att := k8stest.Attacher{Client: r.Admin, Driver: driverName}
	oldPublish := map[string]string{"nvme_address": "127.0.0.1", "nvme_port": "4420", "nvme_nqn": nqnBase + oldVol, "fs_type": "ext4"}
	if err := att.CreateVA(ctx, oldVol, oldVol, nodeA); err != nil {
		t.Fatal(err)
	}
	va, err := r.Admin.StorageV1().VolumeAttachments().Get(ctx, att.VAName(oldVol, nodeA), metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	va.Status = storagev1.VolumeAttachmentStatus{Attached: true, AttachmentMetadata: oldPublish}
	if _, err := r.Admin.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}

	c := r.Start()
	diag := func() string { return "\nlog:\n" + c.Log.String() }

	// The attachment the earlier driver made holds: node b is refused, node a (the holder) is
	// published again.
	_, err = c.Ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: oldVol, NodeId: nodeB,
		VolumeCapability: fsCap, VolumeContext: attrs})
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), nodeA) {
		t.Fatalf("publish to node b while the earlier driver's VolumeAttachment holds it on node a: %v, want FailedPrecondition naming node a%s", err, diag())
	}
	if _, err := c.Ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: oldVol, NodeId: nodeA,
		VolumeCapability: fsCap, VolumeContext: attrs}); err != nil {
		t.Fatalf("ControllerPublish of the old volume to its holder: %v%s", err, diag())
	}

	// The kubelet stages with the VolumeAttachment's metadata as publish context (the
	// external-attacher does not publish an attached volume again) and the PV's attributes.
	dir := t.TempDir()
	stageOld, targetOld := filepath.Join(dir, "stage-old"), filepath.Join(dir, "target-old")
	node := nodeOps{t: t, c: c, diag: diag}
	node.up(oldVol, stageOld, targetOld, oldPublish, attrs)
	node.read(targetOld, "before.txt", before)
	after := []byte("written under rds-csi\n")
	node.write(targetOld, "after.txt", after)
	node.down(oldVol, stageOld, targetOld)
	if _, err := c.Ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: oldVol, NodeId: nodeA}); err != nil {
		t.Fatal(err)
	}
	if err := att.DeleteVA(ctx, oldVol, nodeA); err != nil {
		t.Fatal(err)
	}

	// The earlier driver's snapshot restores into a new volume holding what it held.
	vol, err := c.Ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: restored, VolumeCapabilities: []*csi.VolumeCapability{fsCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30},
		VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
			Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: oldSnap}}}})
	if err != nil {
		t.Fatalf("restore of the earlier driver's snapshot: %v%s", err, diag())
	}
	v := vol.GetVolume()
	if err := k8stest.CreatePV(ctx, r.Admin, driverName, restored, v, false, nil); err != nil {
		t.Fatal(err)
	}
	var pubCtx map[string]string
	att.Publish = func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		resp, err := c.Ctl.ControllerPublishVolume(ctx, req)
		pubCtx = resp.GetPublishContext()
		return err
	}
	if err := att.Attach(ctx, restored, &csi.ControllerPublishVolumeRequest{VolumeId: restored, NodeId: nodeA,
		VolumeCapability: fsCap, VolumeContext: v.GetVolumeContext()}); err != nil {
		t.Fatalf("publish of the restored volume: %v%s", err, diag())
	}
	stageNew, targetNew := filepath.Join(dir, "stage-new"), filepath.Join(dir, "target-new")
	node.up(restored, stageNew, targetNew, pubCtx, v.GetVolumeContext())
	node.read(targetNew, "before.txt", before)
	if _, err := os.Stat(filepath.Join(targetNew, "after.txt")); !os.IsNotExist(err) {
		t.Errorf("the restore holds what was written after the snapshot: %v", err)
	}
	node.down(restored, stageNew, targetNew)
	if _, err := c.Ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: restored, NodeId: nodeA}); err != nil {
		t.Fatal(err)
	}
	if err := att.DeleteVA(ctx, restored, nodeA); err != nil {
		t.Fatal(err)
	}

	// Deleting the snapshot and both volumes leaves nothing on the RDS.
	if _, err := c.Ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: oldSnap}); err != nil {
		t.Fatalf("DeleteSnapshot of the earlier driver's snapshot: %v%s", err, diag())
	}
	for _, id := range []string{oldVol, restored} {
		if _, err := c.Ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
			t.Fatalf("DeleteVolume %s: %v%s", id, err, diag())
		}
	}
	if d := ts.Disks(); len(d) != 0 {
		t.Errorf("disks left on the RDS: %+v", d)
	}
	var files []string
	err = filepath.WalkDir(ts.DataDir(), func(p string, e fs.DirEntry, err error) error {
		if err == nil && !e.IsDir() && strings.HasSuffix(p, ".img") {
			files = append(files, p)
		}
		return err
	})
	if err != nil || len(files) != 0 {
		t.Errorf("files left on the RDS: %v %v", files, err)
	}
}

// nodeOps plays the kubelet against the node service.
type nodeOps struct {
	t    *testing.T
	c    *deployrig.Controller
	diag func() string
}

func (n nodeOps) up(id, stage, target string, pub, vc map[string]string) {
	n.t.Helper()
	ctx := n.t.Context()
	if _, err := n.c.Node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: id, StagingTargetPath: stage,
		VolumeCapability: fsCap, PublishContext: pub, VolumeContext: vc}); err != nil {
		n.t.Fatalf("NodeStage %s: %v%s", id, err, n.diag())
	}
	n.t.Cleanup(func() { n.down(id, stage, target) })
	if _, err := n.c.Node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: id, StagingTargetPath: stage, TargetPath: target,
		VolumeCapability: fsCap, PublishContext: pub, VolumeContext: vc}); err != nil {
		n.t.Fatalf("NodePublish %s: %v%s", id, err, n.diag())
	}
}

// down is idempotent: it runs in the test and again in its cleanup.
func (n nodeOps) down(id, stage, target string) {
	n.t.Helper()
	ctx := context.WithoutCancel(n.t.Context())
	if _, err := n.c.Node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target}); err != nil {
		n.t.Errorf("NodeUnpublish %s: %v", id, err)
	}
	if _, err := n.c.Node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: stage}); err != nil {
		n.t.Errorf("NodeUnstage %s: %v", id, err)
	}
}

func (n nodeOps) read(target, name string, want []byte) {
	n.t.Helper()
	got, err := os.ReadFile(filepath.Join(target, name))
	if err != nil || !bytes.Equal(got, want) {
		n.t.Fatalf("%s in %s: %q, %v; want %q", name, target, got, err, want)
	}
}

func (n nodeOps) write(target, name string, data []byte) {
	n.t.Helper()
	f, err := os.Create(filepath.Join(target, name))
	if err == nil {
		_, err = f.Write(data)
		if serr := f.Sync(); err == nil {
			err = serr
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}
	if err != nil {
		n.t.Fatal(err)
	}
}
