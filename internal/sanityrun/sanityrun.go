// Package sanityrun runs the official csi-sanity suite against rds-csi in `all` mode: the
// controller talks to the RDS simulator over real SSH, the node attaches the simulator's files as
// real loop devices, formats and mounts them. It needs root. Ginkgo allows one suite per process,
// so each access type has its own test package calling Run.
package sanityrun

import (
	"context"
	"net"
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// Run runs the whole suite (Identity, Controller, Node) for one access type, "mount" or "block".
func Run(t *testing.T, access string) {
	if testing.Short() {
		t.Skip("csi-sanity needs root, loop devices and mounts; skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("csi-sanity runs the node service with real loop devices and mounts: run as root (CI does)")
	}
	ts := rdssim.StartForTest(t, func(c *rdssim.Config) { c.PoolSize = 1 << 40 })
	client, err := rds.NewClient(rds.Config{Address: ts.Addr(), User: ts.User, Signer: ts.Signer, HostKey: ts.HostKey})
	if err != nil {
		t.Fatal(err)
	}
	client.Start()
	t.Cleanup(func() { _ = client.Close() })

	loop, err := nvme.NewLoop(nvme.LoopConfig{Root: ts.DataDir()})
	if err != nil {
		t.Fatal(err)
	}
	d, err := driver.New(driver.Options{
		NodeID: "sanity-node", Controller: true, Node: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"},
	}, rds.NewStorage(client), nil, &driver.NodeConfig{Initiator: loop})
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
	served := make(chan error, 1)
	go func() { served <- d.ServeListener(ctx, lis) }()
	t.Cleanup(func() {
		cancel()
		<-served
	})

	cfg := sanity.NewTestConfig()
	cfg.Address = sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.IdempotentCount = 2
	cfg.TestVolumeSize = 320 << 20 // mkfs.xfs wants 300 MB at least
	cfg.TestVolumeExpandSize = 512 << 20
	cfg.TestVolumeAccessType = access
	// xfs: node expansion is exercised online, which this sandbox cannot do for ext4.
	cfg.TestVolumeParameters = map[string]string{"fsType": "xfs"}
	cfg.TestInvalidListVolumesStartingToken = "not-a-token"
	sanity.Test(t, cfg)

	// Nothing the suite created may be left on the RDS.
	if disks := ts.Disks(); len(disks) != 0 {
		t.Errorf("csi-sanity left %d disks on the simulator: %+v", len(disks), disks)
	}
}
