package chart

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
	"testing"
	"time"

	"k8s.io/client-go/rest"
)

// startRBACServer starts etcd and kube-apiserver (the binaries of hack/k8s-bins.sh) on loopback
// with --authorization-mode=RBAC, as a real cluster runs, and returns a config of a member of
// system:masters. pkg/k8stest starts its server with AlwaysAllow and has no way to change that,
// hence this small starter. Both processes end with the test.
func startRBACServer(t *testing.T) *rest.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with a real kube-apiserver: skipped in -short mode")
	}
	bins := k8sBins(t)
	dir := t.TempDir()
	ports := freePorts(t, 3)
	etcdURL := "http://127.0.0.1:" + strconv.Itoa(ports[0])
	peerURL := "http://127.0.0.1:" + strconv.Itoa(ports[1])
	spawn(t, dir, "etcd", filepath.Join(bins, "etcd"),
		"--name=default", "--data-dir="+filepath.Join(dir, "etcd"),
		"--listen-client-urls="+etcdURL, "--advertise-client-urls="+etcdURL,
		"--listen-peer-urls="+peerURL, "--initial-advertise-peer-urls="+peerURL,
		"--initial-cluster=default="+peerURL, "--unsafe-no-fsync", "--log-level=warn")

	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	token := hex.EncodeToString(b)
	tokens := filepath.Join(dir, "tokens.csv")
	if err := os.WriteFile(tokens, []byte(token+`,admin,admin,"system:masters"`+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	saKey := filepath.Join(dir, "sa.key")
	if err := os.WriteFile(saKey, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	port := strconv.Itoa(ports[2])
	apiserver := spawn(t, dir, "kube-apiserver", filepath.Join(bins, "kube-apiserver"),
		"--etcd-servers="+etcdURL, "--endpoint-reconciler-type=none",
		"--authorization-mode=RBAC", "--token-auth-file="+tokens,
		// A real cluster allows privileged containers (the node plugin is one); the default refuses them.
		"--allow-privileged=true",
		"--service-account-key-file="+saKey, "--service-account-signing-key-file="+saKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--secure-port="+port, "--bind-address=127.0.0.1", "--cert-dir="+filepath.Join(dir, "certs"),
		"--service-cluster-ip-range=10.96.0.0/16", "--v=0")
	cfg := &rest.Config{
		Host: "https://127.0.0.1:" + port, BearerToken: token,
		TLSClientConfig: rest.TLSClientConfig{Insecure: true},
		QPS:             1000, Burst: 2000, Timeout: 30 * time.Second,
	}
	waitReady(t, cfg, apiserver)
	return cfg
}

// k8sBins returns the directory of kube-apiserver and etcd: $RDS_CSI_K8S_BINS (set by `make
// test`), or hack/k8s-bins.sh's cache directory.
func k8sBins(t *testing.T) string {
	t.Helper()
	dir := os.Getenv("RDS_CSI_K8S_BINS")
	if dir == "" {
		out, err := exec.Command(root+"/hack/k8s-bins.sh", "--print-dir").Output()
		if err != nil {
			t.Fatalf("hack/k8s-bins.sh --print-dir: %v", err)
		}
		dir = strings.TrimSpace(string(out))
	}
	for _, b := range []string{"etcd", "kube-apiserver"} {
		if st, err := os.Stat(filepath.Join(dir, b)); err != nil || st.Mode()&0o111 == 0 {
			t.Fatalf("no executable %s in %s: run `make test` or `make k8s-bins`", b, dir)
		}
	}
	return dir
}

type process struct {
	name string
	log  string
	done chan struct{}
	err  error
}

// spawn starts a binary in its own process group, killed with the test binary if that dies, and
// stopped (SIGTERM, then SIGKILL after 10 s) when the test ends.
func spawn(t *testing.T, dir, name, bin string, args ...string) *process {
	t.Helper()
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting %s: %v", name, err)
	}
	p := &process{name: name, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}

func waitReady(t *testing.T, cfg *rest.Config, apiserver *process) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	hc := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{InsecureSkipVerify: true}, //nolint:gosec // loopback, self-signed
	}}
	defer hc.CloseIdleConnections()
	last := "no answer yet"
	for {
		select {
		case <-apiserver.done:
			t.Fatalf("kube-apiserver exited (%v); log:\n%s", apiserver.err, tail(apiserver.log))
		default:
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cfg.Host+"/readyz", nil)
		req.Header.Set("Authorization", "Bearer "+cfg.BearerToken)
		if resp, err := hc.Do(req); err != nil {
			last = err.Error()
		} else {
			_ = resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
			last = resp.Status
		}
		select {
		case <-ctx.Done():
			t.Fatalf("kube-apiserver not ready (last: %s); log:\n%s", last, tail(apiserver.log))
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

func tail(path string) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > 30 {
		ls = ls[len(ls)-30:]
	}
	return strings.Join(ls, "\n")
}
