package chart

import (
	"context"
	"testing"

	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/pkg/k8stest"
)

// startRBACServer starts etcd and kube-apiserver (the binaries of hack/k8s-bins.sh) on loopback
// with --authorization-mode=RBAC, as a real cluster runs, and returns a config of a member of
// system:masters. Both processes end with the test.
func startRBACServer(t *testing.T) *rest.Config {
	t.Helper()
	if testing.Short() {
		t.Skip("integration test with a real kube-apiserver: skipped in -short mode")
	}
	bins, err := k8stest.BinDir()
	if err != nil {
		t.Fatal(err)
	}
	srv, err := k8stest.StartServer(context.Background(), bins, k8stest.WithRBAC())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Stop)
	return srv.Config
}
