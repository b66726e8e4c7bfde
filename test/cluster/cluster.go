package cluster

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// Environment variables naming what the cluster runs; `make cluster-test` (and `make test`) set
// them from the scripts that build each part.
const (
	EnvClusterBins = "RDS_CSI_CLUSTER_BINS" // hack/cluster-bins.sh --print-dir
	EnvImage       = "RDS_CSI_IMAGE"        // the rds-csi image reference printed by hack/image.sh
	EnvHelm        = "RDS_CSI_HELM"         // hack/helm.sh --print-bin
	EnvCrane       = "RDS_CSI_CRANE"        // hack/image.sh --print-crane
)

// Namespace is where the chart is installed; Release its release name; Driver the driver name.
const (
	Namespace = "rds-csi"
	Release   = "rds-csi"
	Driver    = "rds.csi.srvlab.io"
)

// Options shape a cluster.
type Options struct {
	// Nodes are the names of the real kubelets, each on its own containerd (default node-a,
	// node-b, node-c). The controller's two replicas run on the first two.
	Nodes []string
	// SimLatency is the simulator's delay before every command (0: none).
	SimLatency time.Duration
	// HelmValues are extra `--set` values for the chart install.
	HelmValues []string
	// Logf reports progress (nil: silent).
	Logf func(format string, args ...any)

	skipInstall bool // bring-up checks only
	noSnapshots bool // no snapshot CRDs and controller (debugging before they are built)
}

// Cluster is a running cluster with rds-csi installed.
type Cluster struct {
	Config *rest.Config
	Client kubernetes.Interface
	Sim    *rdssim.TestServer
	Nodes  []*Node
	// Image is the rds-csi image (also the base of the test pods: it has a shell).
	Image      string
	Dir        string
	Kubeconfig string

	logf    func(string, ...any)
	bins    bins
	procs   []*proc // control plane, in start order
	fwd     *forwarder
	simKeys simKeys
	lock    *os.File
	stopMu  sync.Mutex
}

type bins struct{ k8s, cluster, helm, crane string }

func cacheDir() string {
	if c := os.Getenv("RDS_CSI_CACHE"); c != "" {
		return c
	}
	return "/var/cache/rds-csi"
}

// defaultClusterBins is where hack/cluster-bins.sh builds (keep the versions in step with it).
const defaultClusterBins = "cluster-k8s-v1.37.2-pv6.4.0-av4.13.0-rv2.3.0-sv8.7.0"

func findBins() (bins, error) {
	var b bins
	var err error
	if b.k8s, err = k8stest.BinDir(); err != nil {
		return b, err
	}
	b.cluster = os.Getenv(EnvClusterBins)
	if b.cluster == "" {
		b.cluster = filepath.Join(cacheDir(), defaultClusterBins)
	}
	for _, f := range []string{"kubelet", "kube-controller-manager", "kube-scheduler"} {
		if _, err := os.Stat(filepath.Join(b.cluster, f)); err != nil {
			return b, fmt.Errorf("%s: run hack/cluster-bins.sh (or make cluster-test) to build the cluster's binaries: %w", b.cluster, err)
		}
	}
	b.helm = os.Getenv(EnvHelm)
	if b.helm == "" {
		b.helm = filepath.Join(cacheDir(), "helm-v3.22.0-k8s1.37", "helm")
	}
	b.crane = os.Getenv(EnvCrane)
	if b.crane == "" {
		b.crane = filepath.Join(cacheDir(), "crane-v0.22.1", "crane")
	}
	for _, f := range []string{b.helm, b.crane} {
		if _, err := os.Stat(f); err != nil {
			return b, fmt.Errorf("%w: run make cluster-test (it builds helm and crane)", err)
		}
	}
	return b, nil
}

// Start brings the cluster up and installs rds-csi; Stop tears everything down.
func Start(ctx context.Context, o Options) (_ *Cluster, err error) {
	if os.Geteuid() != 0 {
		return nil, errors.New("the cluster needs root (namespaces, mounts, loop devices, containerd)")
	}
	image := os.Getenv(EnvImage)
	if image == "" {
		return nil, fmt.Errorf("%s is not set: run `make cluster-test`, or export %s=$(hack/image.sh)", EnvImage, EnvImage)
	}
	b, err := findBins()
	if err != nil {
		return nil, err
	}
	if len(o.Nodes) == 0 {
		o.Nodes = []string{"node-a", "node-b", "node-c"}
	}
	c := &Cluster{Image: image, bins: b, logf: o.Logf}
	if c.logf == nil {
		c.logf = func(string, ...any) {}
	}
	// One cluster per machine: the network names and /var/lib/kubelet are fixed.
	if c.lock, err = os.OpenFile(filepath.Join(os.TempDir(), "rds-csi-cluster.lock"), os.O_CREATE|os.O_RDWR, 0o600); err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(c.lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			c.Stop()
		}
	}()
	cleanupStale()
	if c.Dir, err = os.MkdirTemp("", "rds-csi-cluster-"); err != nil {
		return nil, err
	}
	start := time.Now()
	if err := setupHub(); err != nil {
		return nil, fmt.Errorf("hub address: %w", err)
	}
	if err := c.startControlPlane(ctx); err != nil {
		return nil, err
	}
	c.logf("control plane ready in %v", time.Since(start).Round(time.Millisecond))

	registry, _, ok := strings.Cut(image, "/")
	if !ok {
		return nil, fmt.Errorf("%s=%q has no registry host", EnvImage, image)
	}
	_, regPort, err := net.SplitHostPort(registry)
	if err != nil {
		return nil, fmt.Errorf("registry of %s: %w", image, err)
	}
	if c.fwd, err = forward(net.JoinHostPort(HubIP, regPort), registry); err != nil {
		return nil, fmt.Errorf("registry forwarder: %w", err)
	}
	pause, err := c.pauseImage(image)
	if err != nil {
		return nil, err
	}

	if c.Sim, c.simKeys, err = startSim(filepath.Join(c.Dir, "rds"), o.SimLatency); err != nil {
		return nil, err
	}
	nc := nodeConfig{binDir: b.cluster, simData: c.Sim.DataDir(), kubeconfig: c.Kubeconfig,
		registryHost: registry, registryForward: net.JoinHostPort(HubIP, regPort), pauseImage: pause}
	for i, name := range o.Nodes {
		nc.labels = map[string]string{}
		if i < 2 {
			nc.labels[ControllerLabel] = "true"
		}
		n, err := startNode(ctx, filepath.Join(c.Dir, name), i+1, name, nc)
		if err != nil {
			return nil, err
		}
		c.Nodes = append(c.Nodes, n)
	}
	for _, n := range c.Nodes {
		if err := c.WaitNodeReady(ctx, n.Name, corev1.ConditionTrue, 2*time.Minute); err != nil {
			return nil, fmt.Errorf("%w; kubelet log:\n%s", err, n.Log("kubelet", 30))
		}
	}
	c.logf("%d nodes Ready after %v", len(c.Nodes), time.Since(start).Round(time.Millisecond))
	if o.skipInstall {
		return c, nil
	}
	if err := c.install(ctx, o.HelmValues, !o.noSnapshots); err != nil {
		return nil, err
	}
	c.logf("rds-csi installed and registered on every node after %v", time.Since(start).Round(time.Millisecond))
	return c, nil
}

// ControllerLabel marks the nodes the controller replicas may run on (the first two).
const ControllerLabel = "rds-csi.test/controller"

func (c *Cluster) startControlPlane(ctx context.Context) error {
	ports, err := freePorts("127.0.0.1", 2)
	if err != nil {
		return err
	}
	apiPorts, err := freePorts(HubIP, 1)
	if err != nil {
		return err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := c.spawn("etcd", filepath.Join(c.bins.k8s, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(c.Dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn"); err != nil {
		return err
	}
	p, err := newPKI([]net.IP{net.ParseIP(HubIP), net.ParseIP("127.0.0.1"), net.ParseIP("10.96.0.1")},
		[]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc"})
	if err != nil {
		return err
	}
	files := map[string][]byte{"ca.crt": p.caPEM, "apiserver.crt": p.certPEM, "apiserver.key": p.keyPEM}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(c.Dir, name), data, 0o600); err != nil {
			return err
		}
	}
	token, err := randomToken()
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(c.Dir, "tokens.csv"), []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return err
	}
	saKey := filepath.Join(c.Dir, "sa.key")
	if err := writeECKey(saKey); err != nil {
		return err
	}
	port := strconv.Itoa(apiPorts[0])
	if err := c.spawn("kube-apiserver", filepath.Join(c.bins.k8s, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC", "--allow-privileged=true",
		"--token-auth-file="+filepath.Join(c.Dir, "tokens.csv"),
		"--service-account-key-file="+saKey, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--secure-port="+port, "--bind-address="+HubIP, "--advertise-address="+HubIP,
		"--tls-cert-file="+filepath.Join(c.Dir, "apiserver.crt"), "--tls-private-key-file="+filepath.Join(c.Dir, "apiserver.key"),
		"--kubelet-preferred-address-types=InternalIP",
		"--service-cluster-ip-range=10.96.0.0/16", "--v=0"); err != nil {
		return err
	}
	c.Config = &rest.Config{Host: "https://" + net.JoinHostPort(HubIP, port), BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{CAData: p.caPEM}, QPS: 200, Burst: 400, Timeout: 30 * time.Second}
	if c.Client, err = kubernetes.NewForConfig(c.Config); err != nil {
		return err
	}
	if err := c.waitAPIReady(ctx); err != nil {
		return err
	}
	c.Kubeconfig = filepath.Join(c.Dir, "kubeconfig")
	if err := writeKubeconfig(c.Config, c.Kubeconfig); err != nil {
		return err
	}
	// The node lifecycle controller marks a silent node NotReady after 20 s (40 s by default).
	if err := c.spawn("kube-controller-manager", filepath.Join(c.bins.cluster, "kube-controller-manager"),
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0",
		"--service-account-private-key-file="+saKey, "--root-ca-file="+filepath.Join(c.Dir, "ca.crt"),
		"--node-monitor-grace-period=20s", "--controllers=*", "--v=2"); err != nil {
		return err
	}
	return c.spawn("kube-scheduler", filepath.Join(c.bins.cluster, "kube-scheduler"),
		"--kubeconfig="+c.Kubeconfig, "--leader-elect=false", "--secure-port=0", "--v=1")
}

func (c *Cluster) spawn(name, bin string, args ...string) error {
	p, err := spawn(name, filepath.Join(c.Dir, name+".log"), bin, args...)
	if err != nil {
		return err
	}
	c.procs = append(c.procs, p)
	return nil
}

// Log returns the end of a control plane process's log.
func (c *Cluster) Log(name string, lines int) string {
	return tail(filepath.Join(c.Dir, name+".log"), lines)
}

func (c *Cluster) waitAPIReady(ctx context.Context) error {
	rt, err := rest.TransportFor(c.Config)
	if err != nil {
		return err
	}
	hc := &http.Client{Transport: rt, Timeout: 2 * time.Second}
	return waitFor(ctx, 2*time.Minute, func() (bool, error) {
		for _, p := range c.procs {
			if p.exited() {
				return false, fmt.Errorf("%s exited: %s", p.name, tail(p.log, 30))
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, c.Config.Host+"/readyz", nil)
		resp, err := hc.Do(req)
		if err != nil {
			return false, nil
		}
		_ = resp.Body.Close()
		return resp.StatusCode == http.StatusOK, nil
	})
}

// pauseImage makes the pod sandbox image: the rds-csi image (already pulled for the driver) with
// a process that only waits. No image can be pulled from outside here.
func (c *Cluster) pauseImage(image string) (string, error) {
	repo, tag, ok := strings.Cut(image[strings.LastIndex(image, "/")+1:], ":")
	if !ok {
		return "", fmt.Errorf("image %q has no tag", image)
	}
	_ = repo
	ref := image[:strings.LastIndex(image, "/")+1] + "rds-csi-pause:" + tag
	out, err := exec.Command(c.bins.crane, "mutate", "--insecure", image,
		"--entrypoint", "/bin/sleep", "--cmd", "infinity", "-t", ref).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("crane mutate (pause image): %w: %s", err, out)
	}
	return ref, nil
}

// SSH key of the controller: the simulator accepts it; the chart's Secret carries it.
type simKeys struct {
	privatePEM []byte
	hostKey    string // authorized_keys line
}

// startSim starts the simulator on HubIP with a fresh client key for the controller.
func startSim(dir string, latency time.Duration) (*rdssim.TestServer, simKeys, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, simKeys{}, err
	}
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, simKeys{}, err
	}
	blk, err := ssh.MarshalPrivateKey(priv, "rds-csi test")
	if err != nil {
		return nil, simKeys{}, err
	}
	signer, err := ssh.NewSignerFromKey(priv)
	if err != nil {
		return nil, simKeys{}, err
	}
	ts, err := rdssim.StartLocal(dir, func(cfg *rdssim.Config) {
		cfg.Listen = net.JoinHostPort(HubIP, "0")
		cfg.Latency = latency
		cfg.AuthorizedKeys = append(cfg.AuthorizedKeys, signer.PublicKey())
	})
	if err != nil {
		return nil, simKeys{}, err
	}
	return ts, simKeys{privatePEM: pem.EncodeToMemory(blk), hostKey: strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ts.HostKey)))}, nil
}

// WaitNodeReady waits until the node's Ready condition has status.
func (c *Cluster) WaitNodeReady(ctx context.Context, name string, status corev1.ConditionStatus, timeout time.Duration) error {
	last := "not found"
	err := waitFor(ctx, timeout, func() (bool, error) {
		n, err := c.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		for _, cond := range n.Status.Conditions {
			if cond.Type == corev1.NodeReady {
				last = string(cond.Status) + ": " + cond.Message
				return cond.Status == status, nil
			}
		}
		return false, nil
	})
	if err != nil {
		return fmt.Errorf("node %s not Ready=%s (%s): %w", name, status, last, err)
	}
	return nil
}

// Node returns the node of that name.
func (c *Cluster) Node(name string) *Node {
	for _, n := range c.Nodes {
		if n.Name == name {
			return n
		}
	}
	return nil
}

// Stop tears the cluster down: nodes first (every process, mount and loop device), then the
// control plane, the simulator, the network and the directory. Safe to call more than once.
func (c *Cluster) Stop() {
	c.stopMu.Lock()
	defer c.stopMu.Unlock()
	for _, n := range c.Nodes {
		n.PowerOff()
	}
	c.Nodes = nil
	for i := len(c.procs) - 1; i >= 0; i-- {
		c.procs[i].stop(10 * time.Second)
	}
	c.procs = nil
	if c.Sim != nil {
		_ = c.Sim.Close()
		c.Sim = nil
	}
	if c.fwd != nil {
		_ = c.fwd.close()
		c.fwd = nil
	}
	teardownHub()
	if c.Dir != "" && os.Getenv("RDS_CSI_KEEP_CLUSTER_DIR") == "" {
		_ = os.RemoveAll(c.Dir)
	}
	if c.lock != nil {
		_ = c.lock.Close() // releases the flock
		c.lock = nil
	}
}

func freePorts(host string, n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomToken() (string, error) {
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return fmt.Sprintf("%x", b), nil
}

func writeKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["c"] = &clientcmdapi.Cluster{Server: cfg.Host, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["c"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["c"] = &clientcmdapi.Context{Cluster: "c", AuthInfo: "c"}
	kc.CurrentContext = "c"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}
