// Package allinone serves the whole driver in process (controller and node, by default with the
// loop initiator over the simulator's files) on a unix socket, for tests that drive it through its
// gRPC API as a CO would.
package allinone

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// Served is a driver serving on Socket; Dir is a temporary directory for the test's paths.
type Served struct {
	Socket string
	Dir    string
}

// Serve connects to the simulator (tune, if given, adjusts the RDS client configuration), starts
// the driver in `all` mode with node ID nodeID and the loop initiator over the simulator's files,
// and serves it until the test ends.
func Serve(t testing.TB, ts *rdssim.TestServer, nodeID string, tune func(*rds.Config)) *Served {
	t.Helper()
	loop, err := nvme.NewLoop(nvme.LoopConfig{Root: ts.DataDir()})
	if err != nil {
		t.Fatal(err)
	}
	return ServeNode(t, ts, nodeID, tune, &driver.NodeConfig{Initiator: loop})
}

// ServeNode is Serve with the node's configuration given (the real NVMe/TCP initiator in the
// guest of test/vm).
func ServeNode(t testing.TB, ts *rdssim.TestServer, nodeID string, tune func(*rds.Config), node *driver.NodeConfig) *Served {
	t.Helper()
	cfg := rds.Config{Address: ts.Addr(), User: ts.User, Signer: ts.Signer, HostKey: ts.HostKey}
	if tune != nil {
		tune(&cfg)
	}
	client, err := rds.NewClient(cfg)
	if err != nil {
		t.Fatal(err)
	}
	client.Start()
	t.Cleanup(func() { _ = client.Close() })
	d, err := driver.New(driver.Options{NodeID: nodeID, Controller: true, Node: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, rds.NewStorage(client), nil, node)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sock := filepath.Join(dir, "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = d.ServeListener(ctx, lis); close(served) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})
	return &Served{Socket: sock, Dir: dir}
}
