package main

// This file measures how fast attachments heal against a real kube-apiserver (see pkg/k8stest),
// with the controller of internal/ctrlrig on an in-process RDS simulator:
//
//   - failover: from a node event (deletion or out-of-service taint) to the reconcile pass
//     finishing and a publish of the node's volume to another node succeeding;
//   - probeRecovery: from the simulator accepting connections after a restart to Probe ready
//     (and to the reconcile pass the reconnect triggers).

import (
	"context"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/srvlab/rds-csi/internal/ctrlrig"
	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// healOptions tune the measurements; zero values take the defaults.
type healOptions struct {
	samples int           // measurements per figure (default 5)
	down    time.Duration // probeRecovery: how long the simulator stays down (default 2s)
	// rds adjusts the RDS client configuration; by default the driver's defaults are used
	// (reconnect backoff from 500ms, capped at 5s), so the figures are what a deployment sees.
	rds func(*rds.Config)
}

// failoverSample is one node failure, with the baselines measured in the same sample.
type failoverSample struct {
	event    string        // "delete" or "taint"
	passDone time.Duration // node event → reconcile pass finished
	publish  time.Duration // node event → publish to the other node succeeded (after the pass)

	// watch is the floor of any reaction to a node event: from a node update (a label) to a node
	// informer on the same API server delivering it.
	watch time.Duration
	// freshPublish is the same publish of a volume that no node holds (VolumeAttachment,
	// ControllerPublish, status), the floor of the failover publish.
	freshPublish time.Duration
}

// probeSample is one RDS restart.
type probeSample struct {
	probeReady time.Duration // simulator listening again → Probe ready
	passDone   time.Duration // simulator listening again → reconnect-triggered pass finished
	// dial is the baseline: simulator listening again → a new SSH connection, dialled at once
	// without any backoff, has run one command.
	dial time.Duration
}

// failover measures o.samples node failures of the given kind ("delete" or "taint") against the
// API server at cfg. Each sample publishes a single-node volume to a node, creates the
// VolumeAttachment for a second node, then deletes or taints the first node (the clock starts
// before that API call), waits for the reconcile pass the event triggers and publishes to the
// second node.
func failover(ctx context.Context, cfg *rest.Config, event string, o healOptions) ([]failoverSample, error) {
	if event != "delete" && event != "taint" {
		return nil, fmt.Errorf("event must be delete or taint, not %q", event)
	}
	h, err := newHealRig(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	defer h.close()
	var out []failoverSample
	for i := range samples(o) {
		a, b := fmt.Sprintf("%d-a", i), fmt.Sprintf("%d-b", i)
		for _, n := range []string{a, b} {
			if err := h.AddNode(ctx, n); err != nil {
				return nil, err
			}
		}
		v, err := h.CreateVolume(ctx, rwo, nil)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := h.Publish(ctx, v, a); err != nil {
			return nil, err
		}
		fresh := time.Since(t0)
		watch, err := h.watchLatency(ctx, h.NodeName(b), i)
		if err != nil {
			return nil, err
		}
		if err := h.Attacher().CreateVA(ctx, v.PV, v.ID, h.NodeName(b)); err != nil {
			return nil, err
		}
		seq := h.M.Reconciler().LastPass().Seq
		reason := attachment.ReasonNodeDeleted
		start := time.Now()
		if event == "delete" {
			err = h.CS.CoreV1().Nodes().Delete(ctx, h.NodeName(a), metav1.DeleteOptions{})
		} else {
			reason = attachment.ReasonNodeOutOfService
			err = k8stest.TaintOutOfService(ctx, h.CS, h.NodeName(a))
		}
		if err != nil {
			return nil, err
		}
		p, err := h.WaitPass(ctx, seq, reason, start)
		if err != nil {
			return nil, err
		}
		if err := h.Publish(ctx, v, b); err != nil {
			return nil, fmt.Errorf("publish to %s after %s of %s: %w", b, event, a, err)
		}
		out = append(out, failoverSample{event: event, passDone: p.End.Sub(start), publish: time.Since(start), watch: watch, freshPublish: fresh})
	}
	return out, nil
}

// probeRecovery measures o.samples simulator restarts, each down for o.down, against the API
// server at cfg (the controller runs the Kubernetes-backed manager, as deployed).
func probeRecovery(ctx context.Context, cfg *rest.Config, o healOptions) ([]probeSample, error) {
	if o.down <= 0 {
		o.down = 2 * time.Second
	}
	h, err := newHealRig(ctx, cfg, o)
	if err != nil {
		return nil, err
	}
	defer h.close()
	var out []probeSample
	for range samples(o) {
		if err := h.waitProbe(ctx, true); err != nil {
			return nil, err
		}
		seq := h.M.Reconciler().LastPass().Seq
		h.Sim.Restart(o.down)
		if err := h.waitProbe(ctx, false); err != nil {
			return nil, err
		}
		if err := h.Sim.WaitListening(ctx); err != nil {
			return nil, err
		}
		listening := time.Now()
		dial := make(chan error, 1)
		var dialed time.Duration
		go func() {
			err := h.dialOnce()
			dialed = time.Since(listening)
			dial <- err
		}()
		if err := h.waitProbe(ctx, true); err != nil {
			return nil, err
		}
		ready := time.Since(listening)
		if err := <-dial; err != nil {
			return nil, fmt.Errorf("baseline SSH dial after the restart: %w", err)
		}
		p, err := h.WaitPass(ctx, seq, attachment.ReasonRDSReconnect, listening)
		if err != nil {
			return nil, err
		}
		out = append(out, probeSample{probeReady: ready, passDone: p.End.Sub(listening), dial: dialed})
	}
	return out, nil
}

func samples(o healOptions) int {
	if o.samples <= 0 {
		return 5
	}
	return o.samples
}

var rwo = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

// healRig is the controller rig with its own simulator, and a node informer of its own for the
// watch-latency baseline.
type healRig struct {
	*ctrlrig.Rig
	dir     string
	stopInf chan struct{}

	mu    sync.Mutex
	pings map[string]chan struct{} // "node=value" of the ping label → closed when the informer saw it
}

func newHealRig(ctx context.Context, cfg *rest.Config, o healOptions) (_ *healRig, err error) {
	h := &healRig{pings: map[string]chan struct{}{}}
	defer func() {
		if err != nil {
			h.close()
		}
	}()
	if h.dir, err = os.MkdirTemp("", "rds-bench-heal-"); err != nil {
		return nil, err
	}
	sim, err := rdssim.StartLocal(h.dir, func(c *rdssim.Config) { c.PoolSize = 1 << 40 })
	if err != nil {
		return nil, err
	}
	if h.Rig, err = ctrlrig.New(ctx, cfg, sim, ctrlrig.Options{RDS: o.rds}); err != nil {
		_ = sim.Close()
		return nil, err
	}
	f := informers.NewSharedInformerFactoryWithOptions(h.CS, 0, informers.WithTweakListOptions(func(lo *metav1.ListOptions) {
		lo.LabelSelector = ctrlrig.NodeLabel + "=" + h.Prefix
	}))
	if _, err = f.Core().V1().Nodes().Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: h.sawPing}); err != nil {
		return nil, err
	}
	h.stopInf = make(chan struct{})
	f.Start(h.stopInf)
	for typ, ok := range f.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return nil, fmt.Errorf("node informer of the watch baseline: %v never synced", typ)
		}
	}
	return h, nil
}

func (h *healRig) close() {
	if h.stopInf != nil {
		close(h.stopInf)
	}
	if h.Rig != nil {
		h.Rig.Close()
		_ = h.Sim.Close()
	}
	if h.dir != "" {
		_ = os.RemoveAll(h.dir)
	}
}

// waitProbe polls Probe (every millisecond: the figure is a latency) until it answers ready.
func (h *healRig) waitProbe(ctx context.Context, ready bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		resp, err := h.D.Probe(ctx, &csi.ProbeRequest{})
		if err != nil {
			return err
		}
		if resp.GetReady().GetValue() == ready {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("probe never answered ready=%t: %w", ready, ctx.Err())
		case <-t.C:
		}
	}
}

const pingLabel = "rds-bench-ping"

// watchLatency labels a node and returns how long a node informer took to deliver the update:
// the floor under any reaction to a node event. The informer is the bench's own, watching the
// same API server as the manager's: the manager does not expose its informers.
func (h *healRig) watchLatency(ctx context.Context, node string, i int) (time.Duration, error) {
	val := fmt.Sprint(i)
	seen := make(chan struct{})
	h.mu.Lock()
	h.pings[node+"="+val] = seen
	h.mu.Unlock()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, pingLabel, val)
	start := time.Now()
	if _, err := h.CS.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	select {
	case <-seen:
		return time.Since(start), nil
	case <-ctx.Done():
		return 0, fmt.Errorf("node informer never delivered the label update of %s: %w", node, ctx.Err())
	}
}

func (h *healRig) sawPing(_, obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	key := n.Name + "=" + n.Labels[pingLabel]
	h.mu.Lock()
	defer h.mu.Unlock()
	if ch := h.pings[key]; ch != nil {
		close(ch)
		delete(h.pings, key)
	}
}

// dialOnce opens a new SSH connection to the simulator, retrying at once (no backoff) until it
// is accepted, and runs one command: the baseline of Probe recovery.
func (h *healRig) dialOnce() error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := h.Sim.Dial()
		if err == nil {
			defer c.Close()
			_, err = rdssim.RunOn(c, "/system resource print")
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
