package k8stest

import (
	"context"
	"flag"
	"os"
	"sync"

	"k8s.io/client-go/rest"
)

var shared struct {
	mu      sync.Mutex
	main    bool
	started bool
	srv     *Server
	err     error
}

// M is the part of *testing.M that Main uses, and TB the part of testing.TB that Shared uses:
// taking them instead of the testing types keeps the testing package out of the benchmark and
// the demo, which link this package.
type M interface{ Run() int }

// TB is what Shared needs of a test.
type TB interface {
	Helper()
	Skip(args ...any)
	Fatalf(format string, args ...any)
	Cleanup(func())
}

// Main runs the tests of a package, sharing one API server (started on first use by Shared)
// between them, and stops it afterwards. Use it as: func TestMain(m *testing.M) { os.Exit(k8stest.Main(m)) }.
func Main(m M) int {
	shared.mu.Lock()
	shared.main = true
	shared.mu.Unlock()
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.srv != nil {
		if code != 0 {
			shared.srv.Kill()
		} else {
			shared.srv.Stop()
		}
		shared.srv = nil
	}
	return code
}

// Shared returns a config for the package's API server, starting it on first use. It needs
// $RDS_CSI_K8S_BINS (set by `make test`): without it the test fails with a message saying how to
// set it, or is skipped under -short. Tests sharing the server must use their own namespaces,
// driver names and node names. Without Main, each call starts a server for the calling test.
func Shared(t TB) *rest.Config {
	t.Helper()
	if short() {
		t.Skip("integration test with a real kube-apiserver: skipped in -short mode")
	}
	dir := os.Getenv(EnvBins)
	if dir == "" {
		t.Fatalf("%s is not set: this integration test needs a real kube-apiserver and etcd; run `make test`, "+
			"or `make k8s-bins` and export %s=$(hack/k8s-bins.sh --print-dir) (or run with -short to skip it)", EnvBins, EnvBins)
	}
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if !shared.main {
		srv, err := StartServer(context.Background(), dir)
		if err != nil {
			t.Fatalf("starting kube-apiserver: %v", err)
		}
		t.Cleanup(srv.Stop)
		return rest.CopyConfig(srv.Config)
	}
	if !shared.started {
		shared.started = true
		shared.srv, shared.err = StartServer(context.Background(), dir)
	}
	if shared.err != nil {
		t.Fatalf("starting kube-apiserver: %v", shared.err)
	}
	return rest.CopyConfig(shared.srv.Config)
}

// short is testing.Short, read from the flag the testing package registers (see M).
func short() bool {
	f := flag.Lookup("test.short")
	return f != nil && f.Value.String() == "true"
}
