// Package deploy runs the rds-csi binary as it is deployed: a controller process with
// --kubeconfig against a real kube-apiserver + etcd, the RDS simulator over SSH with a pinned host
// key, and the CSI API on a unix socket. It checks the wiring the in-process tests cannot: flags,
// the Kubernetes-backed attachment manager, metrics, and a restart of the process.
package deploy

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
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }

// runs numbers the rigs of this process: the API server is shared, so names must not repeat
// (go test -count=N).
var runs atomic.Int32

// controller is one rds-csi process in controller mode.
type controller struct {
	cmd  *exec.Cmd
	log  *syncBuffer
	done chan struct{}
	conn *grpc.ClientConn
	ctl  csi.ControllerClient
	id   csi.IdentityClient
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type rig struct {
	driver     string // CSI driver name, unique per rig
	id         int32
	t          *testing.T
	ctx        context.Context
	cs         kubernetes.Interface
	bin, dir   string
	args       []string
	metricsURL string
}

func newRig(t *testing.T) *rig {
	t.Helper()
	if testing.Short() {
		t.Skip("builds and runs the driver binary against a real kube-apiserver")
	}
	cfg := k8stest.Shared(t)
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	id := runs.Add(1)
	r := &rig{t: t, ctx: t.Context(), cs: cs, dir: dir, bin: filepath.Join(dir, "rds-csi"), id: id, driver: fmt.Sprintf("deploy%d.rds.csi.test", id)}
	build := exec.Command("go", "build", "-o", r.bin, "./cmd/rds-csi")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}

	keyFile := filepath.Join(dir, "id_ed25519")
	key, err := rdssim.LoadOrCreateHostKey(keyFile) // any OpenSSH private key file will do
	if err != nil {
		t.Fatal(err)
	}
	sim := rdssim.StartForTest(t, func(c *rdssim.Config) {
		c.AuthorizedKeys = append(c.AuthorizedKeys, key.PublicKey())
		c.PoolSize = 1 << 40
	})
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := k8stest.WriteKubeconfig(cfg, kubeconfig); err != nil {
		t.Fatal(err)
	}
	port := freePort(t)
	r.metricsURL = fmt.Sprintf("http://127.0.0.1:%d/metrics", port)
	r.args = []string{"--mode", "controller", "--endpoint", "unix://" + filepath.Join(dir, "csi.sock"),
		"--driver-name", r.driver, "--kubeconfig", kubeconfig,
		"--rds-address", sim.Addr(), "--rds-key-file", keyFile,
		"--rds-host-key", strings.TrimSpace(string(ssh.MarshalAuthorizedKey(sim.HostKey))),
		"--nvme-address", "127.0.0.1", "--metrics-address", fmt.Sprintf("127.0.0.1:%d", port),
		"--reconcile-interval", "1h", "-v", "2"}
	return r
}

// start runs the controller and waits until Probe answers ready.
func (r *rig) start() *controller {
	r.t.Helper()
	_ = os.Remove(filepath.Join(r.dir, "csi.sock"))
	c := &controller{log: &syncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command(r.bin, r.args...)
	c.cmd.Stdout, c.cmd.Stderr = c.log, c.log
	if err := c.cmd.Start(); err != nil {
		r.t.Fatal(err)
	}
	go func() { _ = c.cmd.Wait(); close(c.done) }()
	r.t.Cleanup(func() { c.stop(r.t) })
	conn, err := grpc.NewClient("unix://"+filepath.Join(r.dir, "csi.sock"), grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		r.t.Fatal(err)
	}
	c.conn, c.ctl, c.id = conn, csi.NewControllerClient(conn), csi.NewIdentityClient(conn)
	err = wait.PollUntilContextTimeout(r.ctx, 10*time.Millisecond, 60*time.Second, true, func(ctx context.Context) (bool, error) {
		select {
		case <-c.done:
			return false, fmt.Errorf("rds-csi exited: %v", c.cmd.ProcessState)
		default:
		}
		resp, err := c.id.Probe(ctx, &csi.ProbeRequest{})
		return err == nil && resp.GetReady().GetValue(), nil
	})
	if err != nil {
		r.t.Fatalf("controller never ready: %v\nlog:\n%s", err, c.log)
	}
	return c
}

// stop sends SIGTERM and waits for a clean exit.
func (c *controller) stop(t *testing.T) {
	select {
	case <-c.done:
		return
	default:
	}
	_ = c.conn.Close()
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		if !c.cmd.ProcessState.Success() {
			t.Errorf("rds-csi did not exit cleanly on SIGTERM: %v\nlog:\n%s", c.cmd.ProcessState, c.log)
		}
	case <-time.After(30 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.done
		t.Errorf("rds-csi still running 30s after SIGTERM\nlog:\n%s", c.log)
	}
}

// node is the name of this rig's node s.
func (r *rig) node(s string) string { return fmt.Sprintf("dn%d-%s", r.id, s) }

func (r *rig) addNode(name string) {
	r.t.Helper()
	if err := k8stest.AddNode(r.ctx, r.cs, name, nil); err != nil {
		r.t.Fatal(err)
	}
}

var rwo = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

// createVolume provisions through the controller and creates the PV, as the external-provisioner does.
func (r *rig) createVolume(c *controller, name string) *csi.Volume {
	r.t.Helper()
	resp, err := c.ctl.CreateVolume(r.ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{rwo},
		CapacityRange: &csi.CapacityRange{RequiredBytes: 64 << 20}})
	if err != nil {
		r.t.Fatalf("CreateVolume: %v", err)
	}
	v := resp.GetVolume()
	if err := k8stest.CreatePV(r.ctx, r.cs, r.driver, name, v, false, nil); err != nil {
		r.t.Fatal(err)
	}
	return v
}

// publish plays the external-attacher: VolumeAttachment, ControllerPublish, then status.attached.
func (r *rig) publish(c *controller, pv string, v *csi.Volume, node string) error {
	a := k8stest.Attacher{Client: r.cs, Driver: r.driver, Publish: func(ctx context.Context, req *csi.ControllerPublishVolumeRequest) error {
		_, err := c.ctl.ControllerPublishVolume(ctx, req)
		return err
	}}
	return a.Attach(r.ctx, pv, &csi.ControllerPublishVolumeRequest{VolumeId: v.GetVolumeId(), NodeId: node,
		VolumeCapability: rwo, VolumeContext: v.GetVolumeContext()})
}

func (r *rig) metrics() string {
	r.t.Helper()
	resp, err := http.Get(r.metricsURL)
	if err != nil {
		r.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// TestControllerBinaryHealsAttachments: the deployed controller decides attachments from the
// cluster, releases the volume of a deleted node by itself, reports it in its metrics, and after a
// restart of the process makes the same decisions from the VolumeAttachments.
func TestControllerBinaryHealsAttachments(t *testing.T) {
	r := newRig(t)
	nodeA, nodeB, nodeC := r.node("a"), r.node("b"), r.node("c")
	for _, n := range []string{nodeA, nodeB, nodeC} {
		r.addNode(n)
	}
	c := r.start()
	if log := c.log.String(); !strings.Contains(log, "Attachment view synced") || strings.Contains(log, "in memory only") {
		t.Fatalf("controller did not run the Kubernetes-backed attachment manager:\n%s", log)
	}
	pv := fmt.Sprintf("pvc-6f0a4c1e-8d1b-4a53-9a2e-%012d", r.id)
	v := r.createVolume(c, pv)
	if err := r.publish(c, pv, v, nodeA); err != nil {
		t.Fatal(err)
	}
	err := r.publish(c, pv, v, nodeB)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), nodeA) {
		t.Fatalf("publish to node b while node a holds the volume: %v, want FailedPrecondition naming node a", err)
	}

	if err := r.cs.CoreV1().Nodes().Delete(r.ctx, nodeA, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	err = wait.PollUntilContextTimeout(r.ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		err := r.publish(c, pv, v, nodeB)
		if status.Code(err) == codes.FailedPrecondition {
			return false, nil
		}
		return true, err
	})
	if err != nil {
		t.Fatalf("publish to node b after node a was deleted: %v\nlog:\n%s", err, c.log)
	}
	if m := r.metrics(); !strings.Contains(m, `rds_csi_attachment_releases_total{reason="node_deleted"} 1`) ||
		!strings.Contains(m, "rds_csi_rds_connected 1") {
		t.Errorf("metrics lack the release or the RDS connection:\n%s", grep(m, "rds_csi_attachment_releases_total", "rds_csi_rds_connected"))
	}

	c.stop(t)
	c = r.start()
	err = r.publish(c, pv, v, nodeC)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), nodeB) {
		t.Fatalf("after a restart, publish to node c while node b holds the volume: %v, want FailedPrecondition naming node b", err)
	}
	if err := r.publish(c, pv, v, nodeB); err != nil {
		t.Fatalf("after a restart, republish to the holder: %v", err)
	}
	pub, err := c.ctl.ControllerGetVolume(r.ctx, &csi.ControllerGetVolumeRequest{VolumeId: v.GetVolumeId()})
	if err != nil {
		t.Fatal(err)
	}
	if got := pub.GetStatus().GetPublishedNodeIds(); len(got) != 1 || got[0] != nodeB {
		t.Errorf("published nodes after the restart = %v, want [node b]", got)
	}
}

func grep(s string, subs ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, sub := range subs {
			if strings.Contains(l, sub) {
				out = append(out, l)
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
