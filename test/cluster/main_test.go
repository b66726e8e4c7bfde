package cluster

import (
	"context"
	"fmt"
	"os"
	"sync"
	"testing"
	"time"
)

// One cluster serves every test of the package: bringing it up takes minutes. Tests run in the
// order of the files and of the functions in them; the node-failure scenario powers a node off,
// so it comes last.
var (
	shared     *Cluster
	sharedErr  error
	sharedOnce sync.Once
	sharedLog  = func(format string, args ...any) { fmt.Fprintf(os.Stderr, "cluster: "+format+"\n", args...) }
)

func TestMain(m *testing.M) {
	code := m.Run()
	if shared != nil {
		shared.Stop()
	}
	os.Exit(code)
}

// cluster returns the package's cluster, starting it on first use.
func cluster(t *testing.T) *Cluster {
	t.Helper()
	if testing.Short() {
		t.Skip("a real cluster takes minutes to start: skipped in -short mode")
	}
	if os.Getenv(EnvImage) == "" && os.Getenv("RDS_CSI_CLUSTER_REQUIRED") == "" {
		// `make cluster-test` sets both; plain `go test ./...` has no images to run.
		t.Skip("no rds-csi image: run `make cluster-test` (it builds the images and the cluster's binaries)")
	}
	sharedOnce.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
		defer cancel()
		shared, sharedErr = Start(ctx, Options{Logf: sharedLog})
	})
	if sharedErr != nil {
		t.Fatalf("starting the cluster: %v", sharedErr)
	}
	return shared
}
