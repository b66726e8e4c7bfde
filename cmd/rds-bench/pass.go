package main

import (
	"context"
	"fmt"
	"sync"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// passConfig sizes benchPass. Zero values take 10,000 VolumeAttachments over 1,000 nodes.
type passConfig struct {
	vas   int
	nodes int
}

// passStats measures one pass.
type passStats struct {
	duration time.Duration
	// apiCalls counts the requests the pass made to the API server: GETs of nodes missing from
	// the cache, plus one per event posted (the event recorder writes each asynchronously).
	apiCalls, gets, events int
	err                    error
}

func (s passStats) String() string {
	return fmt.Sprintf("%v, %d API calls (%d GETs, %d events)", s.duration.Round(time.Microsecond), s.apiCalls, s.gets, s.events)
}

// passResult is the result of benchPass.
type passResult struct {
	vas, nodes int
	// first is the controller-start pass, which finds everything (releases, NotReady holders,
	// missing disks) new and posts events; released, notReady and missing are its findings, by
	// the events it posted.
	first                       passStats
	released, notReady, missing int
	// orphans is what the next pass found, once the orphan exports' grace period had passed
	// (an export is only reported the second time a pass sees it); it logs them, and posts
	// nothing.
	orphans int
	// steady is the pass after that, with nothing new to report.
	steady      passStats
	attachments int // holders counted by the steady pass
	// walk is the baseline: one walk over the VolumeAttachments that looks up each one's PV and
	// Node in caches of the same kind, the reads that any pass must do at least.
	walk time.Duration
}

// benchPass measures reconcile passes of a manager whose informer caches hold cfg.vas attached
// VolumeAttachments (each with its PV and PVC reference) spread evenly over cfg.nodes nodes, of
// which 1% are deleted (absent from the cache and the API), 1% tainted out-of-service and 1%
// NotReady; the RDS lacks the disks of 1% of the volumes and exports 10 disks no PV uses. The
// API is a fake clientset, so that API calls can be counted exactly.
func benchPass(ctx context.Context, cfg passConfig) (*passResult, error) {
	b, err := newPassRig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	defer b.m.Stop()
	out := &passResult{vas: b.cfg.vas, nodes: b.cfg.nodes, first: b.first}
	if out.first.err != nil {
		return nil, out.first.err
	}
	out.released = b.rec.count(attachment.EventReleased)
	out.notReady = b.rec.count(attachment.EventHolderNotReady)
	out.missing = b.rec.count(attachment.EventMissingDisk)
	b.advance(time.Hour) // past the orphans' grace period
	s, r := b.measure(ctx)
	if s.err != nil {
		return nil, s.err
	}
	out.orphans = len(r.OrphanExports)
	out.steady, r = b.measure(ctx)
	if out.steady.err != nil {
		return nil, out.steady.err
	}
	out.attachments = r.Attachments
	out.walk = b.walk()
	return out, nil
}

// passRig is a manager with a large cache, a counting fake API and recorder, and its first
// pass done.
type passRig struct {
	cfg    passConfig
	m      *attachment.Manager
	client *fake.Clientset
	rec    *countingRecorder
	first  passStats
	// vas, pvs and nodes hold the objects of the manager's caches, for the walk baseline.
	vas, pvs, nodes cache.Indexer

	mu  sync.Mutex
	now time.Time
}

// newPassRig starts a manager on the fake API, as a controller starts: its informers list
// everything, and the start-up pass runs over the full caches, measured as the first pass.
// Afterwards the reconciler is stopped, so that only the benchmark's direct calls run passes.
func newPassRig(ctx context.Context, cfg passConfig) (*passRig, error) {
	if cfg.vas <= 0 {
		cfg.vas = 10000
	}
	if cfg.nodes <= 0 {
		cfg.nodes = 1000
	}
	const driver = "bench.rds.csi.srvlab.io"
	b := &passRig{cfg: cfg, rec: &countingRecorder{byReason: map[string]int{}}, now: time.Now(),
		vas:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		pvs:   cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{}),
		nodes: cache.NewIndexer(cache.MetaNamespaceKeyFunc, cache.Indexers{})}
	disks := &staticDisks{}
	var objs []runtime.Object
	add := func(idx cache.Indexer, o runtime.Object) {
		objs = append(objs, o)
		_ = idx.Add(o)
	}
	pct := func(n int) int { return max(n/100, 1) }
	nodeName := func(i int) string { return fmt.Sprintf("node-%05d", i) }
	for i := range cfg.nodes {
		switch {
		case i < pct(cfg.nodes): // deleted
			continue
		case i < 2*pct(cfg.nodes):
			add(b.nodes, benchK8sNode(nodeName(i), true, true))
		case i < 3*pct(cfg.nodes):
			add(b.nodes, benchK8sNode(nodeName(i), false, false))
		default:
			add(b.nodes, benchK8sNode(nodeName(i), true, false))
		}
	}
	for i := range cfg.vas {
		vol := fmt.Sprintf("pvc-00000000-0000-4000-8000-%012d", i)
		pv, va := benchPVAndVA(driver, vol, nodeName(i%cfg.nodes), b.now.Add(-time.Hour))
		add(b.pvs, pv)
		add(b.vas, va)
		if i%100 != 99 { // 1% of the disks missing
			disks.list = append(disks.list, rds.Disk{Slot: vol, Exported: true})
		}
	}
	for i := range 10 {
		disks.list = append(disks.list, rds.Disk{Slot: fmt.Sprintf("pvc-ffffffff-0000-4000-8000-%012d", i), Exported: true})
	}
	b.client = fake.NewClientset(objs...)
	m, err := attachment.NewManager(attachment.Config{DriverName: driver, Client: b.client, Recorder: b.rec, Backend: disks,
		ReconcileInterval: -1, Now: b.clock})
	if err != nil {
		return nil, err
	}
	b.m = m
	m.Start(ctx)
	p, err := m.Reconciler().WaitPass(ctx, 1)
	m.Reconciler().Stop()
	if err != nil {
		m.Stop()
		return nil, err
	}
	b.first = passStats{duration: p.Duration, gets: b.gets(), events: b.rec.total(), err: p.Err}
	b.first.apiCalls = b.first.gets + b.first.events
	return b, nil
}

func (b *passRig) clock() time.Time {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.now
}

func (b *passRig) advance(d time.Duration) {
	b.mu.Lock()
	b.now = b.now.Add(d)
	b.mu.Unlock()
}

// gets counts the GETs made so far: the informers only list and watch.
func (b *passRig) gets() int {
	n := 0
	for _, a := range b.client.Actions() {
		if a.GetVerb() == "get" {
			n++
		}
	}
	return n
}

// measure runs one pass directly.
func (b *passRig) measure(ctx context.Context) (passStats, *attachment.PassResult) {
	gets, events := b.gets(), b.rec.total()
	start := time.Now()
	r := b.m.Reconcile(ctx)
	s := passStats{duration: time.Since(start), gets: b.gets() - gets, events: b.rec.total() - events, err: r.Err}
	s.apiCalls = s.gets + s.events
	return s, r
}

// walk times the cache reads a pass cannot avoid; found keeps the compiler from dropping them.
func (b *passRig) walk() time.Duration {
	start := time.Now()
	found := 0
	for _, o := range b.vas.List() {
		va := o.(*storagev1.VolumeAttachment)
		if _, ok, _ := b.pvs.GetByKey(*va.Spec.Source.PersistentVolumeName); ok {
			found++
		}
		if _, ok, _ := b.nodes.GetByKey(va.Spec.NodeName); ok {
			found++
		}
	}
	d := time.Since(start)
	if found == 0 {
		return -1
	}
	return d
}

func benchK8sNode(name string, isReady, oos bool) *corev1.Node {
	st := corev1.ConditionTrue
	if !isReady {
		st = corev1.ConditionFalse
	}
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, UID: types.UID("uid-" + name)},
		Status: corev1.NodeStatus{Conditions: []corev1.NodeCondition{{Type: corev1.NodeReady, Status: st}}}}
	if oos {
		n.Spec.Taints = []corev1.Taint{{Key: attachment.OutOfServiceTaint, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute}}
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

// countingRecorder is a record.EventRecorder that counts events by reason instead of posting
// them, so that the events a pass would post are counted exactly.
type countingRecorder struct {
	mu       sync.Mutex
	byReason map[string]int
}

var _ record.EventRecorder = (*countingRecorder)(nil)

func (r *countingRecorder) Event(_ runtime.Object, _, reason, _ string) {
	r.mu.Lock()
	r.byReason[reason]++
	r.mu.Unlock()
}

// Eventf formats the message, as a real recorder would, so that the pass pays for it.
func (r *countingRecorder) Eventf(obj runtime.Object, eventType, reason, format string, args ...any) {
	r.Event(obj, eventType, reason, fmt.Sprintf(format, args...))
}

func (r *countingRecorder) AnnotatedEventf(obj runtime.Object, _ map[string]string, eventType, reason, format string, args ...any) {
	r.Eventf(obj, eventType, reason, format, args...)
}

func (r *countingRecorder) count(reason string) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byReason[reason]
}

func (r *countingRecorder) total() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, c := range r.byReason {
		n += c
	}
	return n
}
