package driver

import (
	"context"
	"net"
	"path/filepath"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
)

// serveForTest serves d on a unix socket until the test ends and returns a Node client of it.
func serveForTest(t *testing.T, d *Driver) csi.NodeClient {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "csi.sock")
	lis, err := net.Listen("unix", sock)
	must(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan struct{})
	go func() { _ = d.ServeListener(ctx, lis); close(served) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	must(t, err)
	t.Cleanup(func() {
		_ = conn.Close()
		cancel()
		<-served
	})
	return csi.NewNodeClient(conn)
}

// The node service is registered as the csi.NodeServer itself; a process without one answers
// every Node call Unimplemented.
func TestNodeServiceRegistration(t *testing.T) {
	ctx := context.Background()
	t.Run("node enabled", func(t *testing.T) {
		d, err := New(Options{Node: true, NodeID: "node-1"}, nil, nil, &NodeConfig{Initiator: &fakeInitiator{}, MaxVolumesPerNode: 16})
		must(t, err)
		c := serveForTest(t, d)
		info, err := c.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		must(t, err)
		if info.GetNodeId() != "node-1" || info.GetMaxVolumesPerNode() != 16 {
			t.Fatalf("info %v", info)
		}
		_, err = c.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{})
		nodeWantCode(t, err, codes.InvalidArgument)
		_, err = c.NodeGetStorageHealth(ctx, &csi.NodeGetStorageHealthRequest{})
		nodeWantCode(t, err, codes.Unimplemented)
	})
	t.Run("node disabled", func(t *testing.T) {
		d, err := New(Options{}, nil, nil, nil)
		must(t, err)
		c := serveForTest(t, d)
		_, err = c.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
		nodeWantCode(t, err, codes.Unimplemented)
		_, err = c.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{})
		nodeWantCode(t, err, codes.Unimplemented)
	})
}
