package attachment_test

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/internal/ctrlrig"
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

// env is one controller (driver + Kubernetes-backed attachment manager, see internal/ctrlrig) on
// the shared API server, with its own RDS simulator. The test plays the external-attacher: it
// creates the VolumeAttachment, calls ControllerPublishVolume, then sets status.attached.
type env struct {
	t      *testing.T
	ctx    context.Context
	rig    *ctrlrig.Rig
	cs     kubernetes.Interface
	prefix string // of node names and the namespace
	name   string // driver name
	sim    *rdssim.TestServer
}

func newEnv(t *testing.T, simOpts ...func(*rdssim.TestServer)) *env {
	t.Helper()
	cfg := k8stest.Shared(t)
	sim := rdssim.StartForTest(t, func(c *rdssim.Config) { c.PoolSize = 1 << 40 })
	for _, o := range simOpts {
		o(sim)
	}
	e := &env{t: t, ctx: t.Context()}
	rig, err := ctrlrig.New(e.ctx, cfg, sim, ctrlrig.Options{Prefix: fmt.Sprintf("t%d", envSeq.Add(1)),
		RDS: func(c *rds.Config) {
			c.BackoffInitial, c.BackoffMax, c.BreakerCooldown = 20*time.Millisecond, 200*time.Millisecond, 200*time.Millisecond
		}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rig.Close)
	t.Cleanup(rig.M.Stop) // the tests may replace rig.M; Close stops only the last one
	e.rig, e.cs, e.prefix, e.name, e.sim = rig, rig.CS, rig.Prefix, rig.Driver, sim
	return e
}

// startController starts a controller: a new manager (fresh caches, no memory) and driver.
func (e *env) startController() {
	e.t.Helper()
	if err := e.rig.StartController(e.ctx); err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(e.rig.M.Stop)
}

func newDriver(t *testing.T, e *env, a driver.Attacher) *driver.Driver {
	t.Helper()
	d, err := e.rig.NewDriver(a)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func (e *env) nodeName(s string) string { return e.rig.NodeName(s) }

// addNode creates a Ready node.
func (e *env) addNode(s string) { e.must(e.rig.AddNode(e.ctx, s)) }

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

type volume = ctrlrig.Volume

var (
	rwoMount = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	rwxBlock = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
)

// createVolume creates a volume on the simulator and its PV, bound to a claim in the test's
// namespace, as the external-provisioner would.
func (e *env) createVolume(vcap *csi.VolumeCapability, params map[string]string) *volume {
	e.t.Helper()
	v, err := e.rig.CreateVolume(e.ctx, vcap, params)
	if err != nil {
		e.t.Fatalf("CreateVolume: %v", err)
	}
	return v
}

// attacher plays the external-attacher against this controller, retrying Aborted as it does.
func (e *env) attacher() k8stest.Attacher { return e.rig.Attacher() }

// createVA creates the VolumeAttachment of v on node s.
func (e *env) createVA(v *volume, s string) {
	e.must(e.attacher().CreateVA(e.ctx, v.PV, v.ID, e.nodeName(s)))
}

// publish does what the external-attacher does for a new VolumeAttachment. API failures come
// back as errors too (safe in goroutines).
func (e *env) publish(v *volume, s string) error {
	return e.attacher().Attach(e.ctx, v.PV, &csi.ControllerPublishVolumeRequest{VolumeId: v.ID, NodeId: e.nodeName(s),
		VolumeCapability: v.Cap, VolumeContext: v.Ctx})
}

// unpublish does what the external-attacher does on detach: ControllerUnpublishVolume, then the
// VolumeAttachment goes away.
func (e *env) unpublish(v *volume, s string) {
	e.t.Helper()
	node := e.nodeName(s)
	_, err := e.rig.D.ControllerUnpublishVolume(e.ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.ID, NodeId: node})
	e.must(err)
	e.must(e.attacher().DeleteVA(e.ctx, v.ID, node))
}

// waitPass waits for a reconcile pass triggered by reason after pass number after.
func (e *env) waitPass(after uint64, reason string) attachment.PassInfo {
	e.t.Helper()
	return e.waitPassSince(after, reason, time.Time{})
}

// waitPassSince waits for a reconcile pass triggered by reason, started at or after since.
func (e *env) waitPassSince(after uint64, reason string, since time.Time) attachment.PassInfo {
	e.t.Helper()
	p, err := e.rig.WaitPass(e.ctx, after, reason, since)
	if err != nil {
		e.t.Fatal(err)
	}
	return p
}

func (e *env) seq() uint64 { return e.rig.M.Reconciler().LastPass().Seq }

// waitEvent waits for an event with the reason on the volume's PVC and returns its message.
func (e *env) waitEvent(v *volume, reason string) string {
	e.t.Helper()
	var msg string
	sel := fields.Set{"involvedObject.kind": "PersistentVolumeClaim", "involvedObject.name": v.Claim, "reason": reason}.String()
	err := wait.PollUntilContextTimeout(e.ctx, 20*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		evs, err := e.cs.CoreV1().Events(e.prefix).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil || len(evs.Items) == 0 {
			return false, nil
		}
		msg = evs.Items[0].Message
		return true, nil
	})
	if err != nil {
		e.t.Fatalf("no %s event on PVC %s/%s: %v", reason, e.prefix, v.Claim, err)
	}
	return msg
}

func (e *env) probe() bool {
	r, err := e.rig.D.Probe(e.ctx, &csi.ProbeRequest{})
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
