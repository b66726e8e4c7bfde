package attachment

import (
	"context"
	"fmt"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"

	"github.com/srvlab/rds-csi/pkg/rds"
)

// PassBenchConfig sizes BenchPass. Zero values take 10,000 VolumeAttachments over 1,000 nodes.
type PassBenchConfig struct {
	VolumeAttachments int
	Nodes             int
}

// PassStats measures one pass.
type PassStats struct {
	Duration time.Duration
	// APICalls counts the requests the pass made to the API server: GETs of nodes missing from
	// the cache, plus one per event posted (the event recorder writes each asynchronously).
	APICalls int
	GETs     int
	Events   int
	Result   *PassResult
}

// PassBench is the result of BenchPass.
type PassBench struct {
	VolumeAttachments, Nodes int
	// First is the first pass, which finds everything (releases, NotReady holders, missing
	// disks) new and posts events; Steady is the next pass, with nothing new to report.
	First, Steady PassStats
	// Walk is the baseline: one walk over the cached VolumeAttachments that looks up each one's
	// PV and Node in the caches, the reads that any pass must do at least.
	Walk time.Duration
}

func (s PassStats) String() string {
	return fmt.Sprintf("%v, %d API calls (%d GETs, %d events)", s.Duration.Round(time.Microsecond), s.APICalls, s.GETs, s.Events)
}

// BenchPass measures reconcile passes with the informer caches holding cfg.VolumeAttachments
// attached VolumeAttachments (each with its PV and PVC reference) spread evenly over cfg.Nodes
// nodes, of which 1% are deleted (absent from the cache and the API), 1% tainted out-of-service
// and 1% NotReady; the RDS lacks the disks of 1% of the volumes and exports 10 disks no PV uses.
// The API is a fake clientset, so that API calls can be counted exactly; the caches are filled
// directly, as an informer's initial list would.
func BenchPass(ctx context.Context, cfg PassBenchConfig) (*PassBench, error) {
	b, err := newPassBench(cfg)
	if err != nil {
		return nil, err
	}
	defer b.m.Stop()
	out := &PassBench{VolumeAttachments: b.cfg.VolumeAttachments, Nodes: b.cfg.Nodes}
	out.First = b.measure(ctx)
	if out.First.Result.Err != nil {
		return nil, out.First.Result.Err
	}
	out.Steady = b.measure(ctx)
	out.Walk = b.walk()
	return out, nil
}

// passBench is a manager with a large cache, a counting fake API and recorder.
type passBench struct {
	cfg    PassBenchConfig
	m      *Manager
	client *fake.Clientset
	rec    *MemoryRecorder
}

func newPassBench(cfg PassBenchConfig) (*passBench, error) {
	if cfg.VolumeAttachments <= 0 {
		cfg.VolumeAttachments = 10000
	}
	if cfg.Nodes <= 0 {
		cfg.Nodes = 1000
	}
	const driver = "bench.rds.csi.srvlab.io"
	b := &passBench{cfg: cfg, client: fake.NewClientset(), rec: &MemoryRecorder{}}
	now := time.Now()
	disks := &staticDisks{}
	m, err := NewManager(Config{DriverName: driver, Client: b.client, Recorder: b.rec, Backend: disks, ReconcileInterval: -1})
	if err != nil {
		return nil, err
	}
	b.m = m
	var objs []runtime.Object
	pct := func(n int) int { return max(n/100, 1) }
	nodeName := func(i int) string { return fmt.Sprintf("node-%05d", i) }
	for i := range cfg.Nodes {
		switch {
		case i < pct(cfg.Nodes): // deleted
			continue
		case i < 2*pct(cfg.Nodes):
			objs = append(objs, benchNode(nodeName(i), true, true))
		case i < 3*pct(cfg.Nodes):
			objs = append(objs, benchNode(nodeName(i), false, false))
		default:
			objs = append(objs, benchNode(nodeName(i), true, false))
		}
	}
	for i := range cfg.VolumeAttachments {
		vol := fmt.Sprintf("pvc-00000000-0000-4000-8000-%012d", i)
		pv, va := benchPVAndVA(driver, vol, nodeName(i%cfg.Nodes), now.Add(-time.Hour))
		objs = append(objs, pv, va)
		if i%100 != 99 { // 1% of the disks missing
			disks.list = append(disks.list, rds.Disk{Slot: vol, Exported: true})
		}
	}
	for i := range 10 { // exported for an hour already: past the grace period
		slot := fmt.Sprintf("pvc-ffffffff-0000-4000-8000-%012d", i)
		disks.list = append(disks.list, rds.Disk{Slot: slot, Exported: true})
		m.orphans[slot] = now.Add(-time.Hour)
	}
	if err := m.loadCache(objs...); err != nil {
		return nil, err
	}
	return b, nil
}

func (b *passBench) measure(ctx context.Context) PassStats {
	calls, events := len(b.client.Actions()), len(b.rec.Events())
	start := time.Now()
	r := b.m.Reconcile(ctx)
	s := PassStats{Duration: time.Since(start), Result: r,
		GETs: len(b.client.Actions()) - calls, Events: len(b.rec.Events()) - events}
	s.APICalls = s.GETs + s.Events
	return s
}

// walk times the cache reads a pass cannot avoid; found keeps the compiler from dropping them.
func (b *passBench) walk() time.Duration {
	start := time.Now()
	found := 0
	for _, o := range b.m.vas.GetStore().List() {
		va := o.(*storagev1.VolumeAttachment)
		if _, ok, _ := b.m.pvs.GetIndexer().GetByKey(*va.Spec.Source.PersistentVolumeName); ok {
			found++
		}
		if _, ok, _ := b.m.nodes.GetIndexer().GetByKey(va.Spec.NodeName); ok {
			found++
		}
	}
	d := time.Since(start)
	if found == 0 {
		return -1
	}
	return d
}

func benchNode(name string, isReady, oos bool) *corev1.Node {
	st := corev1.ConditionTrue
	if !isReady {
		st = corev1.ConditionFalse
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
	if oos {
		n.Spec.Taints = []corev1.Taint{{Key: OutOfServiceTaint, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}}
	}
	return n
}

func benchPVAndVA(driver, vol, node string, created time.Time) (*corev1.PersistentVolume, *storagev1.VolumeAttachment) {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: vol, UID: types.UID("uid-" + vol)},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driver, VolumeHandle: vol}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "bench", Name: "claim-" + vol, UID: types.UID("uid-claim-" + vol)},
		},
	}
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-" + vol + "-" + node, UID: types.UID("uid-va-" + vol + "-" + node),
			CreationTimestamp: metav1.NewTime(created)},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: driver, NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv.Name}},
		Status: storagev1.VolumeAttachmentStatus{Attached: true},
	}
	return pv, va
}

// staticDisks is a DiskLister over a fixed list.
type staticDisks struct{ list []rds.Disk }

func (s *staticDisks) ListDisks(context.Context, string) ([]rds.Disk, error) { return s.list, nil }

// loadCache puts objects into the informer caches, as an informer's list would, and marks the
// manager synced. It is for benchmarks and unit tests, which run without informers.
func (m *Manager) loadCache(objs ...runtime.Object) error {
	for _, o := range objs {
		if err := m.storeFor(o).Add(o); err != nil {
			return err
		}
	}
	if m.synced.CompareAndSwap(false, true) {
		close(m.readyCh)
	}
	return nil
}

// storeFor returns the cache an object belongs in.
func (m *Manager) storeFor(o runtime.Object) cache.Indexer {
	switch o.(type) {
	case *corev1.Node:
		return m.nodes.GetIndexer()
	case *corev1.PersistentVolume:
		return m.pvs.GetIndexer()
	default:
		return m.vas.GetIndexer()
	}
}
