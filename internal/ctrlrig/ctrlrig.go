// Package ctrlrig runs one rds-csi controller (the driver with the Kubernetes-backed attachment
// manager) against a kube-apiserver and an RDS simulator, for the attachment integration tests
// and the attach benchmarks of cmd/rds-bench, which play the external-attacher against it.
package ctrlrig

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"runtime"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// NodeLabel marks the nodes a rig created (its value is the rig's prefix), so that Close can
// delete them: nodes are cluster-wide, unlike the rig's namespace.
const NodeLabel = "rds-csi-rig"

// Options tune a rig; zero values take the defaults.
type Options struct {
	// Prefix names the rig's namespace and prefixes its node names and driver name, so that
	// rigs sharing an API server do not see each other's objects (default: random).
	Prefix string
	// RDS adjusts the RDS client configuration (default: the driver's defaults, as deployed).
	RDS func(*rds.Config)
}

// Rig is one controller on the API server, with its own RDS client to the simulator. M, D and
// Registry are those of the controller started last (see StartController).
type Rig struct {
	CS     kubernetes.Interface
	Prefix string // the namespace, and the prefix of node names
	Driver string // CSI driver name, of this rig only
	Sim    *rdssim.TestServer
	RDS    *rds.Client

	Registry *prometheus.Registry
	M        *attachment.Manager
	D        *driver.Driver
}

// New creates the rig's namespace, connects to the simulator (which the caller starts, and
// closes after Close) and starts a controller, returning once its caches have synced. The RDS
// may be down: the controller starts all the same, as deployed.
func New(ctx context.Context, cfg *rest.Config, sim *rdssim.TestServer, o Options) (_ *Rig, err error) {
	r := &Rig{Sim: sim, Prefix: o.Prefix}
	if r.Prefix == "" {
		b := make([]byte, 4)
		_, _ = rand.Read(b)
		r.Prefix = "rig-" + hex.EncodeToString(b)
	}
	r.Driver = r.Prefix + ".rds.csi.test"
	defer func() {
		if err != nil {
			r.Close()
		}
	}()
	if r.CS, err = kubernetes.NewForConfig(cfg); err != nil {
		return nil, err
	}
	if _, err = r.CS.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: r.Prefix}}, metav1.CreateOptions{}); err != nil {
		return nil, err
	}
	rcfg := rds.Config{Address: sim.Addr(), User: sim.User, Signer: sim.Signer, HostKey: sim.HostKey}
	if o.RDS != nil {
		o.RDS(&rcfg)
	}
	if r.RDS, err = rds.NewClient(rcfg); err != nil {
		return nil, err
	}
	r.RDS.Start()
	return r, r.StartController(ctx)
}

// StartController starts a new controller (fresh caches, no memory, new metrics registry), as a
// restarted process would, and waits until its caches have synced. The previous one, if any,
// is left running: stop it first to restart.
func (r *Rig) StartController(ctx context.Context) error {
	reg := prometheus.NewRegistry()
	m, err := attachment.NewManager(attachment.Config{DriverName: r.Driver, Client: r.CS, Registerer: reg,
		Backend: rds.NewStorage(r.RDS), Subscribe: r.RDS.Subscribe})
	if err != nil {
		return err
	}
	d, err := r.NewDriver(m)
	if err != nil {
		m.Stop()
		return err
	}
	r.Registry, r.M, r.D = reg, m, d
	m.Start(ctx)
	return m.WaitReady(ctx)
}

// NewDriver returns a controller-only driver on the rig's RDS client that decides attachments
// with a.
func (r *Rig) NewDriver(a driver.Attacher) (*driver.Driver, error) {
	return driver.New(driver.Options{DriverName: r.Driver, Controller: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, rds.NewStorage(r.RDS), a, nil)
}

// Close stops the controller and the RDS client, and deletes the rig's namespace and nodes.
func (r *Rig) Close() {
	if r.M != nil {
		r.M.Stop()
	}
	if r.RDS != nil {
		_ = r.RDS.Close()
	}
	if r.CS != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = r.CS.CoreV1().Namespaces().Delete(ctx, r.Prefix, metav1.DeleteOptions{})
		_ = r.CS.CoreV1().Nodes().DeleteCollection(ctx, metav1.DeleteOptions{}, metav1.ListOptions{LabelSelector: NodeLabel + "=" + r.Prefix})
	}
}

// NodeName is the name of the rig's node s.
func (r *Rig) NodeName(s string) string { return r.Prefix + "-" + s }

// AddNode creates the rig's node s, Ready.
func (r *Rig) AddNode(ctx context.Context, s string) error {
	return k8stest.AddNode(ctx, r.CS, r.NodeName(s), map[string]string{NodeLabel: r.Prefix})
}

// Volume is a volume created through CreateVolume, with its PV.
type Volume struct {
	ID    string
	PV    string
	Claim string // name of the PVC in the rig's namespace the PV is bound to
	Cap   *csi.VolumeCapability
	Ctx   map[string]string // volume context
}

// CreateVolume creates a 1 MiB volume on the simulator and its PV, bound to a claim in the rig's
// namespace, as the external-provisioner would.
func (r *Rig) CreateVolume(ctx context.Context, vcap *csi.VolumeCapability, params map[string]string) (*Volume, error) {
	name := "pvc-" + uuid.NewString()
	resp, err := r.D.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, Parameters: params,
		VolumeCapabilities: []*csi.VolumeCapability{vcap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 20}})
	if err != nil {
		return nil, err
	}
	v := &Volume{ID: resp.GetVolume().GetVolumeId(), PV: name, Claim: "claim-" + name[4:12], Cap: vcap, Ctx: resp.GetVolume().GetVolumeContext()}
	claim := &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: r.Prefix, Name: v.Claim}
	return v, k8stest.CreatePV(ctx, r.CS, r.Driver, v.PV, resp.GetVolume(), vcap.GetBlock() != nil, claim)
}

// Attacher plays the external-attacher against the current controller, retrying Aborted as it
// does (another call holds the volume).
func (r *Rig) Attacher() k8stest.Attacher {
	d := r.D
	return k8stest.Attacher{Client: r.CS, Driver: r.Driver, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		for {
			_, err := d.ControllerPublishVolume(ctx, req)
			if status.Code(err) != codes.Aborted {
				return err
			}
			runtime.Gosched()
		}
	}}
}

// Publish does what the external-attacher does for a VolumeAttachment of v on the rig's node s:
// creates it if missing, calls ControllerPublishVolume, sets its status.
func (r *Rig) Publish(ctx context.Context, v *Volume, s string) error {
	return r.Attacher().Attach(ctx, v.PV, &csi.ControllerPublishVolumeRequest{VolumeId: v.ID, NodeId: r.NodeName(s),
		VolumeCapability: v.Cap, VolumeContext: v.Ctx})
}

// WaitPass waits (30 s at most) for a reconcile pass of the current controller triggered by
// reason, after pass number after and started at or after since (zero: any time).
func (r *Rig) WaitPass(ctx context.Context, after uint64, reason string, since time.Time) (attachment.PassInfo, error) {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	p, err := r.M.Reconciler().WaitReasonSince(ctx, after, reason, since)
	if err != nil {
		return p, fmt.Errorf("no reconcile pass for %s after pass %d (last: %+v): %w", reason, after, r.M.Reconciler().LastPass(), err)
	}
	return p, nil
}
