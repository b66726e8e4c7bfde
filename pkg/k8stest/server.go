// Package k8stest runs a real kube-apiserver backed by a real etcd on loopback, for integration
// tests and benchmarks. The binaries are built once by hack/k8s-bins.sh; `make test` passes their
// directory in RDS_CSI_K8S_BINS.
//
// In a test package, start one server for the whole package:
//
//	func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }
//	func TestX(t *testing.T) { cfg := k8stest.Shared(t) ... }
//
// Outside tests (benchmarks), StartServer and Server.Stop do the same by hand.
package k8stest

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/rest"
)

// EnvBins names the environment variable holding the directory of kube-apiserver and etcd.
const EnvBins = "RDS_CSI_K8S_BINS"

// StartTimeout bounds how long StartServer waits for the API server to become ready.
var StartTimeout = 90 * time.Second

// Server is a running etcd + kube-apiserver pair.
type Server struct {
	// Config reaches the API server as a member of system:masters (bearer token, loopback TLS
	// with the server's self-signed certificate not verified).
	Config *rest.Config
	dir    string
	procs  []*proc
}

type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// BinDir returns the directory of the binaries: $RDS_CSI_K8S_BINS, or else the default cache
// directory of hack/k8s-bins.sh when it holds both binaries.
func BinDir() (string, error) {
	if d := os.Getenv(EnvBins); d != "" {
		return d, checkBins(d)
	}
	cache := os.Getenv("RDS_CSI_CACHE")
	if cache == "" {
		cache = "/var/cache/rds-csi"
	}
	d := filepath.Join(cache, "k8s-v1.37.2-etcd-v3.7.0")
	if checkBins(d) == nil {
		return d, nil
	}
	return "", fmt.Errorf("%s is not set and %s holds no kube-apiserver and etcd: run `make k8s-bins` (or `make test`), or export %s=$(hack/k8s-bins.sh --print-dir)", EnvBins, d, EnvBins)
}

func checkBins(dir string) error {
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			return fmt.Errorf("%s: no executable %s (build it with hack/k8s-bins.sh)", dir, b)
		}
	}
	return nil
}

// ServerOption changes how StartServer runs the API server.
type ServerOption func(*serverOptions)

type serverOptions struct {
	authorization   string
	allowPrivileged bool
}

// WithRBAC makes the API server authorize with RBAC, as a real cluster does, and allow privileged
// containers (a real cluster's node plugins are privileged); the default allows every request.
func WithRBAC() ServerOption {
	return func(o *serverOptions) { o.authorization, o.allowPrivileged = "RBAC", true }
}

// StartServer starts etcd and kube-apiserver from binDir on free loopback ports, with their data in
// a new temporary directory, and waits until the API server is ready. Stop ends both.
func StartServer(ctx context.Context, binDir string, opts ...ServerOption) (_ *Server, err error) {
	if err := checkBins(binDir); err != nil {
		return nil, err
	}
	so := serverOptions{authorization: "AlwaysAllow"}
	for _, o := range opts {
		o(&so)
	}
	dir, err := os.MkdirTemp("", "k8stest-")
	if err != nil {
		return nil, err
	}
	s := &Server{dir: dir}
	defer func() {
		if err != nil {
			s.Stop()
		}
	}()
	ports, err := freePorts(3)
	if err != nil {
		return nil, err
	}
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	if err := s.spawn("etcd", filepath.Join(binDir, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn",
	); err != nil {
		return nil, err
	}
	token, err := randomHex(16)
	if err != nil {
		return nil, err
	}
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		return nil, err
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := writeECKey(saKey); err != nil {
		return nil, err
	}
	port := strconv.Itoa(ports[2])
	if err := s.spawn("kube-apiserver", filepath.Join(binDir, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--endpoint-reconciler-type=none",
		"--authorization-mode="+so.authorization, "--allow-privileged="+strconv.FormatBool(so.allowPrivileged),
		"--token-auth-file="+tokens,
		"--service-account-key-file="+saKey, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--secure-port="+port, "--bind-address=127.0.0.1", "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.96.0.0/16", "--v=0",
	); err != nil {
		return nil, err
	}
	s.Config = &rest.Config{
		Host: "https://127.0.0.1:" + port, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000, Burst: 2000, Timeout: 30 * time.Second,
	}
	if err := s.waitReady(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// spawn starts one binary in its own process group, killed with the test binary if that dies.
func (s *Server) spawn(name, bin string, args ...string) error {
	logPath := filepath.Join(s.dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return err
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = childAttrs()
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	s.procs = append(s.procs, p)
	return nil
}

func (s *Server) waitReady(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, StartTimeout)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback, self-signed
	}}
	defer hc.CloseIdleConnections()
	tick := time.NewTicker(100 * time.Millisecond)
	defer tick.Stop()
	last := "no answer yet"
	for {
		for _, p := range s.procs {
			select {
			case <-p.done:
				return fmt.Errorf("%s exited before the API server was ready (%v); log:\n%s", p.name, p.err, tail(p.log, 30))
			default:
			}
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, s.Config.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+s.Config.BearerToken)
		if resp, err := hc.Do(req); err != nil {
			last = err.Error()
		} else {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
			last = resp.Status
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("API server not ready after %v (last: %s); log:\n%s", StartTimeout, last, tail(filepath.Join(s.dir, "kube-apiserver.log"), 30))
		case <-tick.C:
		}
	}
}

// Stop ends the API server, then etcd (SIGTERM to each process group, SIGKILL after 10 s), and
// removes the data directory. It is safe to call more than once.
func (s *Server) Stop() {
	for i := len(s.procs) - 1; i >= 0; i-- {
		p := s.procs[i]
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	}
	s.procs = nil
	if s.dir != "" {
		_ = os.RemoveAll(s.dir)
		s.dir = ""
	}
}

// Kill ends both processes at once with SIGKILL (for a test that fails half-way).
func (s *Server) Kill() {
	for _, p := range s.procs {
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	}
	s.Stop()
}

func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

func randomHex(n int) (string, error) {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

func writeECKey(path string) error {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		return err
	}
	return os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600)
}

func tail(path string, lines int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return "(" + err.Error() + ")"
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}
