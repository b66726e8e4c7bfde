// Package attachbench measures how fast attachments heal, against a real kube-apiserver (see
// pkg/k8stest) and the in-process RDS simulator, for cmd/rds-bench:
//
//   - Failover: from a node event (deletion or out-of-service taint) to the reconcile pass
//     finishing and a publish of the node's volume to another node succeeding;
//   - ProbeRecovery: from the simulator accepting connections after a restart to Probe ready
//     (and to the reconcile pass the reconnect triggers).
//
// The pass over a large cache is measured by attachment.BenchPass, which needs no API server.
package attachbench

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/cache"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// Options tune the measurements; zero values take the defaults.
type Options struct {
	Samples int           // measurements per figure (default 5)
	Down    time.Duration // ProbeRecovery: how long the simulator stays down (default 2s)
	// RDS adjusts the RDS client configuration; by default the driver's defaults are used
	// (reconnect backoff from 500ms, capped at 5s), so the figures are what a deployment sees.
	RDS func(*rds.Config)
}

// FailoverSample is one node failure, with the baselines measured in the same sample.
type FailoverSample struct {
	Event    string        // "delete" or "taint"
	PassDone time.Duration // node event → reconcile pass finished
	Publish  time.Duration // node event → publish to the other node succeeded (after the pass)

	// Watch is the floor of any reaction to a node event: from a node update (a label) to the
	// manager's node informer delivering it.
	Watch time.Duration
	// FreshPublish is the same publish of a volume that no node holds (VolumeAttachment,
	// ControllerPublish, status), the floor of the failover publish.
	FreshPublish time.Duration
}

// ProbeSample is one RDS restart.
type ProbeSample struct {
	ProbeReady time.Duration // simulator listening again → Probe ready
	PassDone   time.Duration // simulator listening again → reconnect-triggered pass finished
	// Dial is the baseline: simulator listening again → a new SSH connection, dialled at once
	// without any backoff, has run one command.
	Dial time.Duration
}

// Failover measures opts.Samples node failures of the given kind ("delete" or "taint") against
// the API server at cfg. Each sample publishes a single-node volume to a node, creates the
// VolumeAttachment for a second node, then deletes or taints the first node (the clock starts
// before that API call), waits for the reconcile pass the event triggers and publishes to the
// second node.
func Failover(ctx context.Context, cfg *rest.Config, event string, opts Options) ([]FailoverSample, error) {
	if event != "delete" && event != "taint" {
		return nil, fmt.Errorf("event must be delete or taint, not %q", event)
	}
	r, err := newRig(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var out []FailoverSample
	for i := range samples(opts) {
		a, b := fmt.Sprintf("%s-%d-a", r.prefix, i), fmt.Sprintf("%s-%d-b", r.prefix, i)
		for _, n := range []string{a, b} {
			if err := r.addNode(ctx, n); err != nil {
				return nil, err
			}
		}
		v, err := r.volume(ctx)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := r.publish(ctx, v, a); err != nil {
			return nil, err
		}
		fresh := time.Since(t0)
		watch, err := r.watchLatency(ctx, b, i)
		if err != nil {
			return nil, err
		}
		if err := r.createVA(ctx, v, b); err != nil {
			return nil, err
		}
		seq := r.m.Reconciler().LastPass().Seq
		reason := attachment.ReasonNodeDeleted
		start := time.Now()
		if event == "delete" {
			err = r.cs.CoreV1().Nodes().Delete(ctx, a, metav1.DeleteOptions{})
		} else {
			reason = attachment.ReasonNodeOutOfService
			err = r.taint(ctx, a)
		}
		if err != nil {
			return nil, err
		}
		p, err := r.waitPass(ctx, seq, reason, start)
		if err != nil {
			return nil, err
		}
		if err := r.publish(ctx, v, b); err != nil {
			return nil, fmt.Errorf("publish to %s after %s of %s: %w", b, event, a, err)
		}
		out = append(out, FailoverSample{Event: event, PassDone: p.End.Sub(start), Publish: time.Since(start), Watch: watch, FreshPublish: fresh})
	}
	return out, nil
}

// ProbeRecovery measures opts.Samples simulator restarts, each down for opts.Down, against the
// API server at cfg (the controller runs the Kubernetes-backed manager, as deployed).
func ProbeRecovery(ctx context.Context, cfg *rest.Config, opts Options) ([]ProbeSample, error) {
	if opts.Down <= 0 {
		opts.Down = 2 * time.Second
	}
	r, err := newRig(ctx, cfg, opts)
	if err != nil {
		return nil, err
	}
	defer r.close()
	var out []ProbeSample
	for range samples(opts) {
		if err := r.waitProbe(ctx, true); err != nil {
			return nil, err
		}
		seq := r.m.Reconciler().LastPass().Seq
		r.sim.Restart(opts.Down)
		if err := r.waitProbe(ctx, false); err != nil {
			return nil, err
		}
		if err := r.sim.WaitListening(ctx); err != nil {
			return nil, err
		}
		listening := time.Now()
		dial := make(chan error, 1)
		var dialed time.Duration
		go func() {
			err := r.dialOnce()
			dialed = time.Since(listening)
			dial <- err
		}()
		if err := r.waitProbe(ctx, true); err != nil {
			return nil, err
		}
		ready := time.Since(listening)
		if err := <-dial; err != nil {
			return nil, fmt.Errorf("baseline SSH dial after the restart: %w", err)
		}
		p, err := r.waitPass(ctx, seq, attachment.ReasonRDSReconnect, listening)
		if err != nil {
			return nil, err
		}
		out = append(out, ProbeSample{ProbeReady: ready, PassDone: p.End.Sub(listening), Dial: dialed})
	}
	return out, nil
}

func samples(o Options) int {
	if o.Samples <= 0 {
		return 5
	}
	return o.Samples
}

// rig is a controller (driver + manager) on the API server, with its own simulator.
type rig struct {
	cs     kubernetes.Interface
	prefix string
	driver string
	dir    string
	sim    *rdssim.Server
	client *rds.Client
	m      *attachment.Manager
	d      *driver.Driver
	key    ssh.Signer

	mu    sync.Mutex
	pings map[string]chan struct{} // "node=value" of the ping label → closed when the informer saw it
}

func newRig(ctx context.Context, cfg *rest.Config, opts Options) (_ *rig, err error) {
	b := make([]byte, 4)
	_, _ = rand.Read(b)
	id := hex.EncodeToString(b)
	r := &rig{prefix: "bench-" + id, driver: "bench-" + id + ".rds.csi.srvlab.io", pings: map[string]chan struct{}{}}
	defer func() {
		if err != nil {
			r.close()
		}
	}()
	if r.cs, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if _, err = r.cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.prefix}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	if r.dir, err = os.MkdirTemp("", "attachbench-"); err != nil {
		return nil, err
	}
	key, err := rdssim.GenerateSigner()
	if err != nil {
		return nil, err
	}
	r.key = key
	if r.sim, err = rdssim.New(rdssim.Config{DataDir: r.dir, AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, PoolSize: 1 << 40}); err != nil {
		return nil, err
	}
	if err = r.sim.Start(); err != nil {
		return nil, err
	}
	rcfg := rds.Config{Address: r.sim.Addr(), User: "admin", Signer: key, HostKey: r.sim.HostPublicKey()}
	if opts.RDS != nil {
		opts.RDS(&rcfg)
	}
	if r.client, err = rds.NewClient(rcfg); err != nil {
		return nil, err
	}
	r.client.Start()
	backend := rds.NewStorage(r.client)
	if r.m, err = attachment.NewManager(attachment.Config{DriverName: r.driver, Client: r.cs, Backend: backend, Subscribe: r.client.Subscribe}); err != nil {
		return nil, err
	}
	if _, err = r.m.Nodes().AddEventHandler(cache.ResourceEventHandlerFuncs{UpdateFunc: r.sawPing}); err != nil {
		return nil, err
	}
	r.m.Start(ctx)
	if err = r.m.WaitReady(ctx); err != nil {
		return nil, err
	}
	r.d, err = driver.New(driver.Options{DriverName: r.driver, Controller: true, DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, backend, r.m, nil)
	return r, err
}

func (r *rig) close() {
	if r.m != nil {
		r.m.Stop()
	}
	if r.client != nil {
		_ = r.client.Close()
	}
	if r.sim != nil {
		_ = r.sim.Close()
	}
	if r.dir != "" {
		_ = os.RemoveAll(r.dir)
	}
	if r.cs != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.cs.CoreV1().Namespaces().Delete(ctx, r.prefix, metav1.DeleteOptions{})
		_ = r.cs.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: "attachbench=" + r.prefix})
	}
}

func (r *rig) addNode(ctx context.Context, name string) error {
	return k8stest.AddNode(ctx, r.cs, name, map[string]string{"attachbench": r.prefix})
}

func (r *rig) taint(ctx context.Context, name string) error {
	return k8stest.TaintOutOfService(ctx, r.cs, name)
}

var rwo = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

// volume creates a volume on the simulator and its PV (named as the volume).
func (r *rig) volume(ctx context.Context) (string, error) {
	name := "pvc-" + uuid.NewString()
	resp, err := r.d.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		return "", err
	}
	claim := &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: r.prefix, Name: "claim-" + name[4:12]}
	return name, k8stest.CreatePV(ctx, r.cs, r.driver, name, resp.GetVolume(), false, claim)
}

func (r *rig) attacher() k8stest.Attacher {
	return k8stest.Attacher{Client: r.cs, Driver: r.driver, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		_, err := r.d.ControllerPublishVolume(ctx, req)
		return err
	}}
}

func (r *rig) createVA(ctx context.Context, vol, node string) error {
	return r.attacher().CreateVA(ctx, vol, vol, node)
}

// publish plays the external-attacher: VolumeAttachment (if missing), ControllerPublish, status.
func (r *rig) publish(ctx context.Context, vol, node string) error {
	return r.attacher().Attach(ctx, vol, &csi.ControllerPublishVolumeRequest{VolumeId: vol, NodeId: node, VolumeCapability: rwo})
}

// waitPass waits for a pass triggered by reason that started at or after since.
func (r *rig) waitPass(ctx context.Context, after uint64, reason string, since time.Time) (attachment.PassInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := r.m.Reconciler().WaitReasonSince(ctx, after, reason, since)
	if err != nil {
		return p, fmt.Errorf("no reconcile pass for %s: %w", reason, err)
	}
	return p, nil
}

// waitProbe polls Probe (every millisecond: the figure is a latency) until it answers ready.
func (r *rig) waitProbe(ctx context.Context, ready bool) error {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	t := time.NewTicker(time.Millisecond)
	defer t.Stop()
	for {
		resp, err := r.d.Probe(ctx, &csi.ProbeRequest{})
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

const pingLabel = "attachbench-ping"

// watchLatency labels a node and returns how long the manager's node informer took to deliver
// the update: the floor under any reaction to a node event.
func (r *rig) watchLatency(ctx context.Context, node string, i int) (time.Duration, error) {
	val := fmt.Sprint(i)
	seen := make(chan struct{})
	r.mu.Lock()
	r.pings[node+"="+val] = seen
	r.mu.Unlock()
	patch := fmt.Sprintf(`{"metadata":{"labels":{%q:%q}}}`, pingLabel, val)
	start := time.Now()
	if _, err := r.cs.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(patch), metav1.PatchOptions{}); err != nil {
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

func (r *rig) sawPing(_, obj any) {
	n, ok := obj.(*corev1.Node)
	if !ok {
		return
	}
	key := n.Name + "=" + n.Labels[pingLabel]
	r.mu.Lock()
	defer r.mu.Unlock()
	if ch := r.pings[key]; ch != nil {
		close(ch)
		delete(r.pings, key)
	}
}

// dialOnce opens a new SSH connection to the simulator, retrying at once (no backoff) until it
// is accepted, and runs one command: the baseline of Probe recovery.
func (r *rig) dialOnce() error {
	cfg := &ssh.ClientConfig{User: "admin", Auth: []ssh.AuthMethod{ssh.PublicKeys(r.key)},
		HostKeyCallback: ssh.FixedHostKey(r.sim.HostPublicKey()), Timeout: 10 * time.Second}
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := ssh.Dial("tcp", r.sim.Addr(), cfg)
		if err == nil {
			defer c.Close()
			sess, err := c.NewSession()
			if err != nil {
				return err
			}
			defer sess.Close()
			_, err = sess.Output("/system resource print")
			return err
		}
		if time.Now().After(deadline) {
			return err
		}
	}
}
