package attachment_test

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// One kube-apiserver + etcd for the package; each test has its own driver name, namespace and
// node names, so tests do not see each other's objects.
func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

var envSeq atomic.Int32

// env is one controller (driver + Kubernetes-backed attachment manager) on the shared API
// server, with its own RDS simulator. The test plays the external-attacher: it creates the
// VolumeAttachment, calls ControllerPublishVolume, then sets status.attached.
type env struct {
	t      *testing.T
	ctx    context.Context
	cs     kubernetes.Interface
	prefix string // of node names and the namespace
	name   string // driver name
	sim    *rdssim.TestServer
	rds    *rds.Client
	reg    *prometheus.Registry
	m      *attachment.Manager
	d      *driver.Driver
}

func newEnv(t *testing.T, simOpts ...func(*rdssim.TestServer)) *env {
	t.Helper()
	cfg := k8stest.Shared(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	n := envSeq.Add(1)
	e := &env{t: t, ctx: t.Context(), cs: cs, prefix: fmt.Sprintf("t%d", n), name: fmt.Sprintf("t%d.rds.csi.test", n)}
	if _, err := cs.CoreV1().Namespaces().Create(e.ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: e.prefix}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	e.sim = rdssim.StartForTest(t, func(c *rdssim.Config) { c.PoolSize = 1 << 40 })
	for _, o := range simOpts {
		o(e.sim)
	}
	e.rds, err = rds.NewClient(rds.Config{Address: e.sim.Addr(), User: e.sim.User, Signer: e.sim.Signer, HostKey: e.sim.HostKey,
		BackoffInitial: 20 * time.Millisecond, BackoffMax: 200 * time.Millisecond, BreakerCooldown: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	e.rds.Start()
	t.Cleanup(func() { _ = e.rds.Close() })
	e.startController()
	return e
}

// startController starts a controller: a new manager (fresh caches, no memory) and driver.
func (e *env) startController() {
	e.t.Helper()
	e.reg = prometheus.NewRegistry()
	m, err := attachment.NewManager(attachment.Config{DriverName: e.name, Client: e.cs, Registerer: e.reg,
		Backend: rds.NewStorage(e.rds), Subscribe: e.rds.Subscribe})
	if err != nil {
		e.t.Fatal(err)
	}
	e.m, e.d = m, newDriver(e.t, e, m)
	e.t.Cleanup(m.Stop)
	m.Start(e.ctx)
	if err := m.WaitReady(e.ctx); err != nil {
		e.t.Fatal(err)
	}
}

func newDriver(t *testing.T, e *env, a driver.Attacher) *driver.Driver {
	t.Helper()
	d, err := driver.New(driver.Options{DriverName: e.name, Controller: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, rds.NewStorage(e.rds), a, nil)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) nodeName(s string) string { return e.prefix + "-" + s }

// addNode creates a Ready node.
func (e *env) addNode(s string) { e.must(k8stest.AddNode(e.ctx, e.cs, e.nodeName(s), nil)) }

func (e *env) setReady(s string, status corev1.ConditionStatus) {
	e.must(k8stest.SetReady(e.ctx, e.cs, e.nodeName(s), status))
}

func (e *env) taintOutOfService(s string) {
	e.must(k8stest.TaintOutOfService(e.ctx, e.cs, e.nodeName(s)))
}

func (e *env) deleteNode(s string) {
	e.must(e.cs.CoreV1().Nodes().Delete(e.ctx, e.nodeName(s), metav1.DeleteOptions{}))
}

func (e *env) must(err error) {
	e.t.Helper()
	if err != nil {
		e.t.Fatal(err)
	}
}

// volume is a volume created on the simulator through CreateVolume, with its PV (bound to a
// claim in the test's namespace) as the external-provisioner would create it.
type volume struct {
	id    string
	pv    string
	claim string
	vcap  *csi.VolumeCapability
	vctx  map[string]string
}

var (
	rwoMount = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	rwxBlock = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
)

func (e *env) createVolume(vcap *csi.VolumeCapability, params map[string]string) *volume {
	e.t.Helper()
	name := "pvc-" + uuid.NewString()
	resp, err := e.d.CreateVolume(e.ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params,
		VolumeCapabilities: []*csi.VolumeCapability{vcap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		e.t.Fatalf("CreateVolume: %v", err)
	}
	v := &volume{id: resp.GetVolume().GetVolumeId(), pv: name, claim: "claim-" + name[4:12], vcap: vcap, vctx: resp.GetVolume().GetVolumeContext()}
	claim := &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: e.prefix, Name: v.claim}
	e.must(k8stest.CreatePV(e.ctx, e.cs, e.name, v.pv, resp.GetVolume(), vcap.GetBlock() != nil, claim))
	return v
}

// attacher plays the external-attacher against this controller, retrying Aborted as it does.
func (e *env) attacher() k8stest.Attacher {
	return k8stest.Attacher{Client: e.cs, Driver: e.name, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		for {
			_, err := e.d.ControllerPublishVolume(ctx, req)
			if !isAborted(err) {
				return err
			}
		}
	}}
}

// createVA creates the VolumeAttachment of v on node s.
func (e *env) createVA(v *volume, s string) {
	e.must(e.attacher().CreateVA(e.ctx, v.pv, v.id, e.nodeName(s)))
}

// publish does what the external-attacher does for a new VolumeAttachment. API failures come
// back as errors too (safe in goroutines).
func (e *env) publish(v *volume, s string) error {
	return e.attacher().Attach(e.ctx, v.pv, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: e.nodeName(s),
		VolumeCapability: v.vcap, VolumeContext: v.vctx})
}

// unpublish does what the external-attacher does on detach: ControllerUnpublishVolume, then the
// VolumeAttachment goes away.
func (e *env) unpublish(v *volume, s string) {
	e.t.Helper()
	node := e.nodeName(s)
	_, err := e.d.ControllerUnpublishVolume(e.ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: node})
	e.must(err)
	e.must(e.attacher().DeleteVA(e.ctx, v.id, node))
}

// waitPass waits for a reconcile pass triggered by reason after pass number after.
func (e *env) waitPass(after uint64, reason string) attachment.PassInfo {
	e.t.Helper()
	return e.waitPassSince(after, reason, time.Time{})
}

// waitPassSince waits for a reconcile pass triggered by reason, started at or after since.
func (e *env) waitPassSince(after uint64, reason string, since time.Time) attachment.PassInfo {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
	defer cancel()
	p, err := e.m.Reconciler().WaitReasonSince(ctx, after, reason, since)
	if err != nil {
		e.t.Fatalf("no reconcile pass for %q after pass %d: %v (last: %+v)", reason, after, err, e.m.Reconciler().LastPass())
	}
	return p
}

func (e *env) seq() uint64 { return e.m.Reconciler().LastPass().Seq }

// waitEvent waits for an event with the reason on the volume's PVC and returns its message.
func (e *env) waitEvent(v *volume, reason string) string {
	e.t.Helper()
	var msg string
	sel := fields.Set{"involvedObject.kind": "PersistentVolumeClaim", "involvedObject.name": v.claim, "reason": reason}.String()
	err := wait.PollUntilContextTimeout(e.ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.cs.CoreV1().Events(e.prefix).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("no %s event on PVC %s/%s: %v", reason, e.prefix, v.claim, err)
	}
	return msg
}

func (e *env) probe() bool {
	r, err := e.d.Probe(e.ctx, &csi.ProbeRequest{})
	if err != nil {
		e.t.Fatal(err)
	}
	return r.GetReady().GetValue()
}

// waitProbe waits until Probe answers ready (or not) and returns when it did.
func (e *env) waitProbe(ready bool) time.Time {
	e.t.Helper()
	err := wait.PollUntilContextTimeout(e.ctx, 5*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		return e.probe() == ready, nil
	})
	if err != nil {
		e.t.Fatalf("Probe never answered ready=%t: %v", ready, err)
	}
	return time.Now()
}

func wantRefused(t *testing.T, err error, mention ...string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), "FailedPrecondition") {
		t.Fatalf("err = %v, want FailedPrecondition", err)
	}
	for _, s := range mention {
		if !strings.Contains(err.Error(), s) {
			t.Fatalf("refusal %q does not mention %q", err, s)
		}
	}
}

func isAborted(err error) bool {
	if status.Code(err) == codes.Aborted {
		runtime.Gosched() // another call holds the volume: retry, as the external-attacher does
		return true
	}
	return false
}
