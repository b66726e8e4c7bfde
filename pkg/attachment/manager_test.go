package attachment

import (
	"context"
	"fmt"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes/fake"
)

const (
	testDriver = "test.rds.csi.srvlab.io"
	vol1       = "pvc-11111111-1111-4111-8111-111111111111"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

type fixture struct {
	m      *Manager
	client *fake.Clientset
	rec    *MemoryRecorder
	disks  *staticDisks
	mu     sync.Mutex
	now    time.Time
}

// newFixture builds a manager whose caches hold cached; apiOnly objects exist only in the fake API
// (as if the cache lagged).
func newFixture(t *testing.T, cached []runtime.Object, apiOnly ...runtime.Object) *fixture {
	t.Helper()
	f := &fixture{client: fake.NewClientset(apiOnly...), rec: &MemoryRecorder{}, disks: &staticDisks{}, now: t0}
	m, err := NewManager(Config{DriverName: testDriver, Client: f.client, Recorder: f.rec, Backend: f.disks,
		ReconcileInterval: -1, Now: f.clock})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.loadCache(cached...); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	f.m = m
	return f
}

func (f *fixture) clock() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fixture) advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

func (f *fixture) put(t *testing.T, objs ...runtime.Object) {
	t.Helper()
	for _, o := range objs {
		if err := f.m.storeFor(o).Update(o); err != nil {
			t.Fatal(err)
		}
	}
}

func (f *fixture) remove(t *testing.T, objs ...runtime.Object) {
	t.Helper()
	for _, o := range objs {
		if err := f.m.storeFor(o).Delete(o); err != nil {
			t.Fatal(err)
		}
	}
}

func node(name string, opts ...nodeOpt) *corev1.Node {
	n := mkNode(name, ready("True"))
	if len(opts) > 0 {
		n = mkNode(name, opts...)
	}
	n.UID = types.UID("uid-" + name)
	return n
}

func notReadyNode(name string) *corev1.Node { return node(name, ready("False")) }

func oosNode(name string) *corev1.Node {
	return node(name, ready("False"), tainted(OutOfServiceTaint, corev1.TaintEffectNoExecute))
}

type pvOpt func(*corev1.PersistentVolume)

func rwxBlock(timeout string) pvOpt {
	return func(pv *corev1.PersistentVolume) {
		b := corev1.PersistentVolumeBlock
		pv.Spec.VolumeMode = &b
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
		if timeout != "" {
			pv.Spec.CSI.VolumeAttributes = map[string]string{VolumeContextMigrationTimeout: timeout}
		}
	}
}

func pvNamed(name string) pvOpt { return func(pv *corev1.PersistentVolume) { pv.Name = name } }

func pvFor(vol string, opts ...pvOpt) *corev1.PersistentVolume {
	pv, _ := pvAndVA(testDriver, vol, "x", t0)
	pv.Spec.ClaimRef.Namespace = "ns"
	for _, o := range opts {
		o(pv)
	}
	return pv
}

func vaFor(pv *corev1.PersistentVolume, node string, attached bool, created time.Time) *storagev1.VolumeAttachment {
	_, va := pvAndVA(testDriver, pv.Spec.CSI.VolumeHandle, node, created)
	va.Spec.Source.PersistentVolumeName = &pv.Name
	va.Status.Attached = attached
	return va
}

func rwo(node string) Request { return Request{VolumeID: vol1, NodeID: node} }

func rwx(node string, timeout time.Duration) Request {
	return Request{VolumeID: vol1, NodeID: node, MultiNode: true, MigrationTimeout: timeout}
}

func wantCode(t *testing.T, err error, code codes.Code, mention ...string) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("code = %v (%v), want %v", status.Code(err), err, code)
	}
	for _, s := range mention {
		if !strings.Contains(status.Convert(err).Message(), s) {
			t.Fatalf("message %q does not mention %q", status.Convert(err).Message(), s)
		}
	}
}

func TestManagerAttachRules(t *testing.T) {
	pv := pvFor(vol1)
	block := pvFor(vol1, rwxBlock("1m"))
	renamed := pvFor(vol1, pvNamed("pv-with-another-name"))
	old := t0.Add(-time.Hour)
	cases := []struct {
		name    string
		cached  []runtime.Object
		apiOnly []runtime.Object
		req     Request
		code    codes.Code
		mention []string
		events  []string
	}{
		{"free volume", []runtime.Object{node("a"), pv}, nil, rwo("a"), codes.OK, nil, nil},
		{"held by a Ready node", []runtime.Object{node("a"), node("b"), pv, vaFor(pv, "a", true, old)}, nil,
			rwo("b"), codes.FailedPrecondition, []string{"attached to node a", OutOfServiceTaint}, nil},
		{"held, PV named otherwise than the handle", []runtime.Object{node("a"), node("b"), renamed, vaFor(renamed, "a", true, old)}, nil,
			rwo("b"), codes.FailedPrecondition, []string{"node a"}, nil},
		{"holder's node deleted", []runtime.Object{node("b"), pv, vaFor(pv, "a", true, old)}, nil, rwo("b"), codes.OK, nil, nil},
		{"holder's node out of service", []runtime.Object{oosNode("a"), node("b"), pv, vaFor(pv, "a", true, old)}, nil, rwo("b"), codes.OK, nil, nil},
		{"holder NotReady only", []runtime.Object{notReadyNode("a"), node("b"), pv, vaFor(pv, "a", true, old)}, nil,
			rwo("b"), codes.FailedPrecondition, []string{"node a", "NotReady", OutOfServiceTaint}, []string{EventAttachRefused}},
		{"holder missing from the cache but in the API", []runtime.Object{node("b"), pv, vaFor(pv, "a", true, old)}, []runtime.Object{node("a")},
			rwo("b"), codes.FailedPrecondition, []string{"node a"}, nil},
		{"other VA still being attached", []runtime.Object{node("a"), node("b"), pv, vaFor(pv, "a", false, old)}, nil, rwo("b"), codes.OK, nil, nil},
		{"republish to the holder", []runtime.Object{node("a"), pv, vaFor(pv, "a", true, old)}, nil, rwo("a"), codes.OK, nil, nil},
		{"target out of service", []runtime.Object{oosNode("a"), pv}, nil, rwo("a"), codes.FailedPrecondition, []string{"a is tainted"}, nil},
		{"target unknown", []runtime.Object{pv}, nil, rwo("nobody"), codes.NotFound, []string{"nobody"}, nil},
		{"target only in the API", []runtime.Object{pv}, []runtime.Object{node("new")}, rwo("new"), codes.OK, nil, nil},
		{"RWX block second node", []runtime.Object{node("a"), node("b"), block, vaFor(block, "a", true, old)}, nil, rwx("b", time.Minute), codes.OK, nil, nil},
		{"RWX block third node", []runtime.Object{node("a"), node("b"), node("c"), block, vaFor(block, "a", true, t0), vaFor(block, "b", true, t0)}, nil,
			rwx("c", time.Minute), codes.FailedPrecondition, []string{"two nodes (a, b)", "the most"}, nil},
		{"RWX block third node after the timeout", []runtime.Object{node("a"), node("b"), node("c"), block, vaFor(block, "a", true, old), vaFor(block, "b", true, old)}, nil,
			rwx("c", time.Minute), codes.FailedPrecondition, []string{"longer than the migration timeout 1m0s"}, nil},
		{"RWX block, one of two holders deleted", []runtime.Object{node("a"), node("c"), block, vaFor(block, "a", true, old), vaFor(block, "b", true, old)}, nil,
			rwx("c", time.Minute), codes.OK, nil, nil},
		{"RWX mount is single-node", []runtime.Object{node("a"), node("b"), block, vaFor(block, "a", true, old)}, nil, rwo("b"), codes.FailedPrecondition, nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, tc.cached, tc.apiOnly...)
			err := f.m.Attach(context.Background(), tc.req)
			wantCode(t, err, tc.code, tc.mention...)
			if got := f.rec.Reasons(); !slices.Equal(got, tc.events) {
				t.Fatalf("events = %v, want %v", got, tc.events)
			}
			if err == nil && !slices.Contains(f.m.PublishedNodes(vol1), tc.req.NodeID) {
				t.Fatalf("PublishedNodes = %v after granting %s", f.m.PublishedNodes(vol1), tc.req.NodeID)
			}
		})
	}
}

func TestManagerIdempotenceAndDetach(t *testing.T) {
	pv := pvFor(vol1)
	vaA := vaFor(pv, "a", true, t0)
	cases := []struct {
		name  string
		steps func(t *testing.T, f *fixture) error
		code  codes.Code
	}{
		{"republish with the same flags", func(_ *testing.T, f *fixture) error {
			_ = f.m.Attach(context.Background(), rwo("a"))
			return f.m.Attach(context.Background(), rwo("a"))
		}, codes.OK},
		{"republish with another readonly flag", func(_ *testing.T, f *fixture) error {
			_ = f.m.Attach(context.Background(), rwo("a"))
			r := rwo("a")
			r.ReadOnly = true
			return f.m.Attach(context.Background(), r)
		}, codes.AlreadyExists},
		{"grant seen by a concurrent publish", func(_ *testing.T, f *fixture) error {
			_ = f.m.Attach(context.Background(), rwo("a"))
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.FailedPrecondition},
		{"detach of the grant", func(_ *testing.T, f *fixture) error {
			_ = f.m.Attach(context.Background(), rwo("a"))
			_ = f.m.Detach(context.Background(), vol1, "a")
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.OK},
		{"detach while the VolumeAttachment is still attached", func(t *testing.T, f *fixture) error {
			f.put(t, vaA)
			_ = f.m.Detach(context.Background(), vol1, "a")
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.OK},
		{"detach from every node", func(t *testing.T, f *fixture) error {
			f.put(t, vaA)
			_ = f.m.Detach(context.Background(), vol1, "")
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.OK},
		{"detach of another node keeps the holder", func(t *testing.T, f *fixture) error {
			f.put(t, vaA)
			_ = f.m.Detach(context.Background(), vol1, "b")
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.FailedPrecondition},
		{"reattach after detach counts again", func(t *testing.T, f *fixture) error {
			f.put(t, vaA)
			_ = f.m.Detach(context.Background(), vol1, "a")
			if err := f.m.Attach(context.Background(), rwo("a")); err != nil {
				return err
			}
			return f.m.Attach(context.Background(), rwo("b"))
		}, codes.FailedPrecondition},
		{"detach twice, and of unknown volumes", func(_ *testing.T, f *fixture) error {
			for range 2 {
				if err := f.m.Detach(context.Background(), vol1, "a"); err != nil {
					return err
				}
				if err := f.m.Detach(context.Background(), "pvc-unknown", ""); err != nil {
					return err
				}
			}
			return nil
		}, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, []runtime.Object{node("a"), node("b"), pv})
			wantCode(t, tc.steps(t, f), tc.code)
		})
	}
}

func TestManagerNotReadyBeforeSync(t *testing.T) {
	m, err := NewManager(Config{DriverName: testDriver, Client: fake.NewClientset(), Recorder: &MemoryRecorder{}, ReconcileInterval: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	if m.Ready() {
		t.Fatal("Ready before the caches synced")
	}
	wantCode(t, m.Attach(context.Background(), rwo("a")), codes.Unavailable, "syncing")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := m.WaitReady(ctx); err == nil {
		t.Fatal("WaitReady returned nil before sync")
	}
}

func TestManagerConcurrentPublishesExactlyOneWins(t *testing.T) {
	for _, mode := range []string{"single-node", "multi-node block"} {
		t.Run(mode, func(t *testing.T) {
			const n = 16
			objs := []runtime.Object{pvFor(vol1, rwxBlock(""))}
			for i := range n {
				objs = append(objs, node(fmt.Sprint("n", i)))
			}
			f := newFixture(t, objs)
			start := make(chan struct{})
			errs := make([]error, n)
			var wg sync.WaitGroup
			for i := range n {
				wg.Go(func() {
					<-start
					req := rwo(fmt.Sprint("n", i))
					req.MultiNode = mode != "single-node"
					errs[i] = f.m.Attach(context.Background(), req)
				})
			}
			close(start)
			wg.Wait()
			var won []string
			for i, err := range errs {
				if err == nil {
					won = append(won, fmt.Sprint("n", i))
				} else if status.Code(err) != codes.FailedPrecondition {
					t.Fatalf("n%d: %v", i, err)
				}
			}
			want := 1
			if mode != "single-node" {
				want = 2
			}
			if len(won) != want {
				t.Fatalf("winners = %v, want exactly %d", won, want)
			}
			slices.Sort(won)
			if got := f.m.PublishedNodes(vol1); !slices.Equal(got, won) {
				t.Fatalf("PublishedNodes = %v, want %v", got, won)
			}
		})
	}
}

// TestManagerPublishCostsNoAPICall: decisions are made from the caches.
func TestManagerPublishCostsNoAPICall(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{node("a"), node("b"), pv, vaFor(pv, "a", true, t0)})
	ctx := context.Background()
	if ok, err := f.m.NodeExists(ctx, "b"); !ok || err != nil {
		t.Fatalf("NodeExists(b) = %t, %v", ok, err)
	}
	_ = f.m.Attach(ctx, rwo("a"))
	_ = f.m.Attach(ctx, rwo("b"))
	_ = f.m.PublishedNodes(vol1)
	_ = f.m.Detach(ctx, vol1, "a")
	if err := f.m.Attach(ctx, rwo("b")); err != nil {
		t.Fatal(err)
	}
	if acts := f.client.Actions(); len(acts) != 0 {
		t.Fatalf("API calls: %v", acts)
	}
	if ok, err := f.m.NodeExists(ctx, "ghost"); ok || err != nil {
		t.Fatalf("NodeExists(ghost) = %t, %v", ok, err)
	}
	if n := len(f.client.Actions()); n != 1 {
		t.Fatalf("NodeExists of a node missing from the cache made %d API calls, want 1 GET", n)
	}
}

func TestManagerIgnoresOtherDrivers(t *testing.T) {
	pv := pvFor(vol1)
	other := vaFor(pv, "a", true, t0)
	other.Spec.Attacher = "other.csi.example.com"
	f := newFixture(t, []runtime.Object{node("a"), node("b"), pv, other})
	if err := f.m.Attach(context.Background(), rwo("b")); err != nil {
		t.Fatalf("a VolumeAttachment of another driver blocked the attach: %v", err)
	}
	otherPV := pvFor(vol1, pvNamed("foreign"))
	otherPV.Spec.CSI.Driver = "other.csi.example.com"
	f = newFixture(t, []runtime.Object{node("a"), node("b"), otherPV, vaFor(otherPV, "a", true, t0)})
	if err := f.m.Attach(context.Background(), rwo("b")); err != nil {
		t.Fatalf("a PV of another driver with the same handle blocked the attach: %v", err)
	}
}

// TestManagerStopLeavesNoGoroutines: informers, reconciler, event broadcaster and migration
// timers all end with Stop.
func TestManagerStopLeavesNoGoroutines(t *testing.T) {
	base := goruntime.NumGoroutine()
	for i := range 3 {
		pv := pvFor(vol1, rwxBlock("1h"))
		client := fake.NewClientset(node("a"), node("b"), pv)
		cfg := Config{DriverName: testDriver, Client: client, ReconcileInterval: time.Hour}
		if i == 1 {
			cfg.Recorder = &MemoryRecorder{}
		}
		m, err := NewManager(cfg)
		if err != nil {
			t.Fatal(err)
		}
		m.Start(context.Background())
		if err := m.WaitReady(t.Context()); err != nil {
			t.Fatal(err)
		}
		_ = m.Attach(context.Background(), rwx("a", time.Hour))
		_ = m.Attach(context.Background(), rwx("b", time.Hour)) // arms a migration timer
		m.Trigger("test")
		m.Stop()
		m.Stop()
		m.Trigger("after stop")
	}
	deadline := time.Now().Add(10 * time.Second)
	for goruntime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("%d goroutines left, %d before:\n%s", goruntime.NumGoroutine(), base, buf[:goruntime.Stack(buf, true)])
		}
		goruntime.Gosched()
	}
}

// TestManagerPendingAtStart: VolumeAttachments pending (not attached, not failed) when the caches
// synced count as holders until their own publish arrives, they fail, go, or the grant TTL passes.
func TestManagerPendingAtStart(t *testing.T) {
	failed := func(va *storagev1.VolumeAttachment) *storagev1.VolumeAttachment {
		va.Status.AttachError = &storagev1.VolumeError{Message: "refused"}
		return va
	}
	cases := []struct {
		name  string
		then  func(t *testing.T, f *fixture, pv *corev1.PersistentVolume)
		wantB codes.Code
	}{
		{"counts at first", func(*testing.T, *fixture, *corev1.PersistentVolume) {}, codes.FailedPrecondition},
		{"not after the grant TTL", func(_ *testing.T, f *fixture, _ *corev1.PersistentVolume) { f.advance(f.m.cfg.GrantTTL + time.Second) }, codes.OK},
		{"not once it failed", func(t *testing.T, f *fixture, pv *corev1.PersistentVolume) {
			f.put(t, failed(vaFor(pv, "a", false, t0)))
		}, codes.OK},
		{"not once it is gone", func(t *testing.T, f *fixture, pv *corev1.PersistentVolume) { f.remove(t, vaFor(pv, "a", false, t0)) }, codes.OK},
		{"not once its own publish was refused", func(t *testing.T, f *fixture, _ *corev1.PersistentVolume) {
			f.put(t, oosNode("a"))
			wantCode(t, f.m.Attach(context.Background(), rwo("a")), codes.FailedPrecondition)
			f.put(t, node("a"))
		}, codes.OK},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			pv := pvFor(vol1)
			f := newFixture(t, []runtime.Object{node("a"), node("b"), pv, vaFor(pv, "a", false, t0)})
			f.m.noteUncertain()
			tc.then(t, f, pv)
			wantCode(t, f.m.Attach(context.Background(), rwo("b")), tc.wantB)
		})
	}
}

// TestManagerRefusalEventsAreNotRepeated: the external-attacher retries a refused publish; the
// PVC hears about it once, and again only after refusalEventEvery.
func TestManagerRefusalEventsAreNotRepeated(t *testing.T) {
	pv := pvFor(vol1)
	f := newFixture(t, []runtime.Object{notReadyNode("a"), node("b"), node("c"), pv, vaFor(pv, "a", true, t0.Add(-time.Hour))})
	ctx := context.Background()
	for range 5 {
		wantCode(t, f.m.Attach(ctx, rwo("b")), codes.FailedPrecondition)
		f.advance(time.Minute)
	}
	if got := len(f.rec.Events()); got != 1 {
		t.Fatalf("%d events after 5 refusals within 5 minutes, want 1", got)
	}
	wantCode(t, f.m.Attach(ctx, rwo("c")), codes.FailedPrecondition) // another target: said too
	f.advance(refusalEventEvery)
	wantCode(t, f.m.Attach(ctx, rwo("b")), codes.FailedPrecondition)
	if got := f.rec.Reasons(); !slices.Equal(got, []string{EventAttachRefused, EventAttachRefused, EventAttachRefused}) {
		t.Fatalf("events = %v, want three refusals (b, c, b again later)", got)
	}
}
