package doctor_test

import (
	"context"
	"os"
	"path"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/internal/ctrlrig"
	"github.com/srvlab/rds-csi/pkg/doctor"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// One kube-apiserver + etcd for the package; each test has its own rig (driver name, namespace,
// nodes) and simulator.
func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

var seq atomic.Int32

const volDir = "/storage-pool/kubernetes-volumes"

// env is a running controller (internal/ctrlrig) on the shared API server with its simulator,
// and what doctor needs to look at both.
type env struct {
	t   *testing.T
	ctx context.Context
	rig *ctrlrig.Rig
	sim *rdssim.TestServer
	cs  kubernetes.Interface
	dyn dynamic.Interface
	st  *rds.Storage // doctor's own connection to the RDS, as the CLI makes it
	cfg doctor.Config
}

func newEnv(t *testing.T, simOpts ...func(*rdssim.Config)) *env {
	t.Helper()
	kcfg := k8stest.Shared(t)
	sim := rdssim.StartForTest(t, append([]func(*rdssim.Config){func(c *rdssim.Config) { c.PoolSize = 1 << 40 }}, simOpts...)...)
	e := &env{t: t, ctx: t.Context(), sim: sim}
	rig, err := ctrlrig.New(e.ctx, kcfg, sim, ctrlrig.Options{Prefix: "doc" + string(rune('a'+seq.Add(1)))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rig.Close)
	e.rig, e.cs = rig, rig.CS
	e.dyn = dynamic.NewForConfigOrDie(kcfg)
	installSnapshotCRD(t, kcfg)
	client, err := rds.NewClient(rds.Config{Address: sim.Addr(), User: sim.User, Signer: sim.Signer, HostKey: sim.HostKey})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	e.st = rds.NewStorage(client)
	e.cfg = doctor.Config{DriverName: rig.Driver}
	return e
}

func (e *env) src() doctor.Sources {
	return doctor.Sources{RDS: e.st, Kube: e.cs, Dynamic: e.dyn}
}

func (e *env) look() *doctor.Report {
	e.t.Helper()
	r := doctor.Look(e.ctx, e.src(), e.cfg)
	if r.Error != "" {
		e.t.Fatalf("doctor could not look: %s", r.Error)
	}
	return r
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// ros runs a RouterOS command on the simulator over a connection of its own: behind the driver's
// back.
func (e *env) ros(line string) string {
	e.t.Helper()
	c, err := ssh.Dial("tcp", e.sim.Addr(), &ssh.ClientConfig{User: e.sim.User, Auth: []ssh.AuthMethod{ssh.PublicKeys(e.sim.Signer)},
		HostKeyCallback: ssh.FixedHostKey(e.sim.HostKey), Timeout: 10 * time.Second})
	e.must(err)
	defer c.Close()
	s, err := c.NewSession()
	e.must(err)
	defer s.Close()
	out, err := s.CombinedOutput(line)
	if err != nil {
		e.t.Fatalf("%s: %v: %s", line, err, out)
	}
	return string(out)
}

// age sets a file's last-modified date on the simulator to d ago.
func (e *env) age(p string, d time.Duration) {
	e.t.Helper()
	t := time.Now().Add(-d)
	e.must(os.Chtimes(e.sim.HostPath(p), t, t))
}

// disk creates a disk on the RDS that Kubernetes knows nothing of, d old.
func (e *env) disk(slot string, d time.Duration) rds.Disk {
	e.t.Helper()
	p := volid.FilePath(volDir, slot)
	disk, err := e.st.CreateDisk(e.ctx, rds.DiskSpec{Slot: slot, FilePath: p, Size: 1 << 20, Export: true, Port: volid.DefaultPort, NQN: volid.NQN(slot)})
	e.must(err)
	e.age(p, d)
	return *disk
}

// file writes a volume file without a disk entry, d old.
func (e *env) file(name string, d time.Duration) string {
	e.t.Helper()
	p := path.Join(volDir, name)
	e.must(os.MkdirAll(path.Dir(e.sim.HostPath(p)), 0o755))
	e.must(os.WriteFile(e.sim.HostPath(p), make([]byte, 4096), 0o644))
	e.age(p, d)
	return p
}

func (e *env) hasFile(p string) bool {
	_, err := os.Stat(e.sim.HostPath(p))
	return err == nil
}

func (e *env) hasDisk(slot string) bool {
	for _, d := range e.sim.Disks() {
		if d.Slot == slot {
			return true
		}
	}
	return false
}

func (e *env) volume(vcap *csi.VolumeCapability, params map[string]string) *ctrlrig.Volume {
	e.t.Helper()
	v, err := e.rig.CreateVolume(e.ctx, vcap, params)
	e.must(err)
	return v
}

func (e *env) filePath(slot string) string {
	e.t.Helper()
	d, err := e.st.GetDisk(e.ctx, slot)
	e.must(err)
	return d.FilePath
}

// claim creates a claim that is still being provisioned, and returns the volume ID the
// provisioner will ask for.
func (e *env) claim(name string) string {
	e.t.Helper()
	pvc, err := e.cs.CoreV1().PersistentVolumeClaims(e.rig.Prefix).Create(e.ctx, &corev1.PersistentVolumeClaim{
		ObjectMeta: metav1.ObjectMeta{Name: name},
		Spec: corev1.PersistentVolumeClaimSpec{AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			Resources: corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Mi")}}},
	}, metav1.CreateOptions{})
	e.must(err)
	return "pvc-" + string(pvc.UID)
}

// content creates a VolumeSnapshotContent of the driver: taken (handle set) or being taken
// (handle empty, named through the VolumeSnapshot's UID).
func (e *env) content(name, handle, snapshotUID string) {
	e.t.Helper()
	obj := map[string]any{
		"apiVersion": "snapshot.storage.k8s.io/v1", "kind": "VolumeSnapshotContent",
		"metadata": map[string]any{"name": name},
		"spec": map[string]any{"driver": e.rig.Driver, "deletionPolicy": "Delete",
			"source":            map[string]any{"volumeHandle": "pvc-00000000-0000-0000-0000-000000000000"},
			"volumeSnapshotRef": map[string]any{"namespace": e.rig.Prefix, "name": "snap-of-" + name, "uid": snapshotUID}},
	}
	if handle != "" {
		obj["status"] = map[string]any{"snapshotHandle": handle, "readyToUse": true}
	}
	_, err := e.dyn.Resource(doctor.VolumeSnapshotContentsGVR).Create(e.ctx, &unstructured.Unstructured{Object: obj}, metav1.CreateOptions{})
	e.must(err)
	e.t.Cleanup(func() {
		_ = e.dyn.Resource(doctor.VolumeSnapshotContentsGVR).Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

// va creates a VolumeAttachment of the driver for a PV name on a node, as the attach-detach
// controller does, without any PV behind it.
func (e *env) va(pv, node string) {
	e.t.Helper()
	a := e.rig.Attacher()
	e.must(a.CreateVA(e.ctx, pv, pv, node))
	name := a.VAName(pv, node)
	e.t.Cleanup(func() {
		_ = e.cs.StorageV1().VolumeAttachments().Delete(context.Background(), name, metav1.DeleteOptions{})
	})
}

var _ = storagev1.VolumeAttachment{}

var crdOnce sync.Once

// installSnapshotCRD installs a minimal VolumeSnapshotContent CRD (status in the main resource,
// so that a test can write it as the snapshotter would) once for the package's API server.
func installSnapshotCRD(t *testing.T, cfg *rest.Config) {
	t.Helper()
	var err error
	crdOnce.Do(func() { err = createCRD(t.Context(), dynamic.NewForConfigOrDie(cfg)) })
	if err != nil {
		t.Fatal(err)
	}
}

func createCRD(ctx context.Context, dyn dynamic.Interface) error {
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	crd := &unstructured.Unstructured{Object: map[string]any{
		"apiVersion": "apiextensions.k8s.io/v1", "kind": "CustomResourceDefinition",
		"metadata": map[string]any{"name": "volumesnapshotcontents.snapshot.storage.k8s.io",
			"annotations": map[string]any{"api-approved.kubernetes.io": "https://github.com/kubernetes-csi/external-snapshotter/pull/814"}},
		"spec": map[string]any{
			"group": "snapshot.storage.k8s.io", "scope": "Cluster",
			"names": map[string]any{"kind": "VolumeSnapshotContent", "listKind": "VolumeSnapshotContentList", "plural": "volumesnapshotcontents", "singular": "volumesnapshotcontent"},
			"versions": []any{map[string]any{"name": "v1", "served": true, "storage": true,
				"schema": map[string]any{"openAPIV3Schema": map[string]any{"type": "object", "x-kubernetes-preserve-unknown-fields": true}}}},
		},
	}}
	if _, err := dyn.Resource(gvr).Create(ctx, crd, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	return wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		_, err := dyn.Resource(doctor.VolumeSnapshotContentsGVR).List(ctx, metav1.ListOptions{})
		return err == nil, nil
	})
}

func newUUID() string { return uuid.NewString() }
