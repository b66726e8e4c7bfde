// Package deployrig runs the rds-csi binary as it is deployed, for the tests that check the
// deployment: a controller process with --kubeconfig against a real kube-apiserver, the RDS
// simulator over SSH with a pinned host key, and the CSI API on a unix socket. The attachment
// healing scenario lives here so that test/deploy (admin credentials) and test/chart (a token of
// the chart's ServiceAccount on an API server that authorizes with RBAC) run the same one.
//
// Test code only: it imports the testing package, and no production package may import it
// (TestNotLinkedIntoProduction checks).
package deployrig

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// Options describe the controller a rig runs.
type Options struct {
	// Driver is the CSI driver name (required).
	Driver string
	// Prefix prefixes node and PV names: rigs sharing an API server need distinct prefixes.
	Prefix string
	// Kubeconfig is the controller's kubeconfig; empty writes one with the admin config.
	Kubeconfig string
	// Args are the controller's flags as deployed (for instance the chart's); the rig appends its
	// own (endpoint, RDS address and keys, kubeconfig, metrics) and drops those flags from Args.
	// nil runs the driver's defaults with a long reconcile interval.
	Args []string
	// ClaimNamespace is the namespace of the PVCs the rig's PVs are bound to (created if missing),
	// where the controller posts its events; default "default".
	ClaimNamespace string
}

// Rig is one deployed controller with its simulator. Admin plays the rest of the cluster (kubelet,
// operator, kube-controller-manager and sidecars); only the controller uses Options.Kubeconfig.
type Rig struct {
	T          *testing.T
	Ctx        context.Context
	Admin      kubernetes.Interface
	Opts       Options
	Bin, Dir   string
	Args       []string
	MetricsURL string
	Sim        *rdssim.TestServer
}

// Controller is one rds-csi process in controller mode.
type Controller struct {
	Cmd  *exec.Cmd
	Log  *SyncBuffer
	done chan struct{}
	conn *grpc.ClientConn
	Ctl  csi.ControllerClient
	ID   csi.IdentityClient
	Node csi.NodeClient // served in --mode all or node
}

// SyncBuffer is a bytes.Buffer safe for a process's output and a test reading it.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// Binary builds cmd/rds-csi into a temporary directory of the test and returns its path (the Go
// build cache makes builds after the first one quick).
func Binary(t *testing.T) string {
	t.Helper()
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "rds-csi")
	cmd := exec.Command("go", "build", "-o", bin, "./cmd/rds-csi")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// moduleRoot is the directory of go.mod, found from the working directory (a test's package
// directory) upwards.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("no go.mod above the working directory")
		}
		dir = parent
	}
}

// New builds the binary, starts a simulator that accepts a key the rig writes to a file, and
// prepares the controller's flags; Start runs it. admin is a config with every right.
func New(t *testing.T, admin *rest.Config, o Options) *Rig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the driver binary against a real kube-apiserver")
	}
	if o.Driver == "" {
		t.Fatal("deployrig: Options.Driver is required")
	}
	if o.ClaimNamespace == "" {
		o.ClaimNamespace = "default"
	}
	cs, err := kubernetes.NewForConfig(admin)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	r := &Rig{T: t, Ctx: t.Context(), Admin: cs, Opts: o, Dir: dir, Bin: Binary(t)}
	if _, err := cs.CoreV1().Namespaces().Create(r.Ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: o.ClaimNamespace}},
		metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}

	keyFile := filepath.Join(dir, "id_ed25519")
	key, err := rdssim.LoadOrCreateHostKey(keyFile) // any OpenSSH private key file will do
	if err != nil {
		t.Fatal(err)
	}
	r.Sim = rdssim.StartForTest(t, func(c *rdssim.Config) {
		c.AuthorizedKeys = append(c.AuthorizedKeys, key.PublicKey())
		c.PoolSize = 1 << 40
	})
	kubeconfig := o.Kubeconfig
	if kubeconfig == "" {
		kubeconfig = filepath.Join(dir, "kubeconfig")
		if err := k8stest.WriteKubeconfig(admin, kubeconfig); err != nil {
			t.Fatal(err)
		}
	}
	port := freePort(t)
	r.MetricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	base := o.Args
	if base == nil {
		base = []string{"--mode=controller", "--reconcile-interval=1h", "-v=2"}
	}
	own := []string{"--endpoint=unix://" + filepath.Join(dir, "csi.sock"),
		"--driver-name=" + o.Driver, "--kubeconfig=" + kubeconfig,
		"--rds-address=" + r.Sim.Addr(), "--rds-key-file=" + keyFile,
		"--rds-host-key=" + strings.TrimSpace(string(ssh.MarshalAuthorizedKey(r.Sim.HostKey))),
		"--nvme-address=127.0.0.1", fmt.Sprintf("--metrics-address=127.0.0.1:%d", port),
		fmt.Sprintf("--health-address=127.0.0.1:%d", freePort(t))}
	r.Args = append(WithoutFlags(base, own), own...)
	return r
}

// WithoutFlags returns args without the flags that own sets (each "--name=value"; a flag in args
// may be "-name" or "--name", with "=value" or without).
func WithoutFlags(args, own []string) []string {
	set := map[string]bool{}
	for _, a := range own {
		set[flagName(a)] = true
	}
	var out []string
	for i := 0; i < len(args); i++ {
		a := args[i]
		if !set[flagName(a)] {
			out = append(out, a)
			continue
		}
		if !strings.Contains(a, "=") && i+1 < len(args) && !strings.HasPrefix(args[i+1], "-") {
			i++ // "--name value"
		}
	}
	return out
}

func flagName(a string) string {
	a = strings.TrimLeft(a, "-")
	name, _, _ := strings.Cut(a, "=")
	return name
}

// Start runs the controller and waits until Probe answers ready.
func (r *Rig) Start() *Controller {
	r.T.Helper()
	sock := filepath.Join(r.Dir, "csi.sock")
	_ = os.Remove(sock)
	c := &Controller{Log: &SyncBuffer{}, done: make(chan struct{})}
	c.Cmd = exec.Command(r.Bin, r.Args...)
	c.Cmd.Stdout, c.Cmd.Stderr = c.Log, c.Log
	if err := c.Cmd.Start(); err != nil {
		r.T.Fatal(err)
	}
	go func() { _ = c.Cmd.Wait(); close(c.done) }()
	r.T.Cleanup(func() { c.Stop(r.T) })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.T.Fatal(err)
	}
	c.conn, c.Ctl, c.ID, c.Node = conn, csi.NewControllerClient(conn), csi.NewIdentityClient(conn), csi.NewNodeClient(conn)
	err = wait.PollUntilContextTimeout(r.Ctx, 10*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-c.done:
			return false, fmt.Errorf("rds-csi exited: %v", c.Cmd.ProcessState)
		default:
		}
		resp, err := c.ID.Probe(ctx, &csi.ProbeRequest{})
		return err == nil && resp.GetReady().GetValue(), nil
	})
	if err != nil {
		r.T.Fatalf("controller never ready: %v\nlog:\n%s", err, c.Log)
	}
	return c
}

// Stop sends SIGTERM and waits for a clean exit.
func (c *Controller) Stop(t *testing.T) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.conn.Close()
	_ = c.Cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if !c.Cmd.ProcessState.Success() {
			t.Errorf("rds-csi did not exit cleanly on SIGTERM: %v\nlog:\n%s", c.Cmd.ProcessState, c.Log)
		}
	case <-time.After(30 * time.Second):
		_ = c.Cmd.Process.Kill()
		<-c.done
		t.Errorf("rds-csi still running 30s after SIGTERM\nlog:\n%s", c.Log)
	}
}

// Node is the name of this rig's node s.
func (r *Rig) Node(s string) string { return r.Opts.Prefix + "n-" + s }

// AddNode registers a Ready node, as its kubelet would.
func (r *Rig) AddNode(name string) {
	r.T.Helper()
	if err := k8stest.AddNode(r.Ctx, r.Admin, name, nil); err != nil {
		r.T.Fatal(err)
	}
}

// RWO is a single-node-writer filesystem capability.
var RWO = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

// CreateVolume provisions through the controller and creates the PV bound to PVC claim in the
// claim namespace, as the external-provisioner does.
func (r *Rig) CreateVolume(c *Controller, name, claim string) *csi.Volume {
	r.T.Helper()
	resp, err := c.Ctl.CreateVolume(r.Ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{RWO},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	if err != nil {
		r.T.Fatalf("CreateVolume: %v", err)
	}
	v := resp.GetVolume()
	ref := &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1", Namespace: r.Opts.ClaimNamespace, Name: claim}
	if err := k8stest.CreatePV(r.Ctx, r.Admin, r.Opts.Driver, name, v, false, ref); err != nil {
		r.T.Fatal(err)
	}
	return v
}

// Publish plays the external-attacher: VolumeAttachment, ControllerPublish, then status.attached.
func (r *Rig) Publish(c *Controller, pv string, v *csi.Volume, node string) error {
	a := k8stest.Attacher{Client: r.Admin, Driver: r.Opts.Driver, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		_, err := c.Ctl.ControllerPublishVolume(ctx, req)
		return err
	}}
	return a.Attach(r.Ctx, pv, &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: node,
		VolumeCapability: RWO, VolumeContext: v.GetVolumeContext()})
}

// Metrics returns the controller's metrics page.
func (r *Rig) Metrics() string {
	r.T.Helper()
	resp, err := http.Get(r.MetricsURL)
	if err != nil {
		r.T.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.T.Fatal(err)
	}
	return string(b)
}

// Grep returns the lines of s holding one of subs.
func Grep(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
				break
			}
		}
	}
	return strings.Join(out, "\n")
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}
