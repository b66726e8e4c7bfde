//go:build vmguest

// Package guestsanity runs the full csi-sanity suite inside the qemu guest of hack/vm.sh, over
// real NVMe/TCP: the simulator exports through the kernel target on loopback, the node service
// connects with nvme-cli. Ginkgo allows one suite per process: run each test in its own process
// (-test.run=TestSanityMount, then -test.run=TestSanityBlock), as test/vm does.
package guestsanity

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

func TestSanityMount(t *testing.T) { run(t, "mount") }
func TestSanityBlock(t *testing.T) { run(t, "block") }

func run(t *testing.T, access string) {
	if os.Geteuid() != 0 {
		t.Fatal("csi-sanity in the guest runs as root (hack/vm.sh)")
	}
	ts := rdssim.StartForTest(t, func(c *rdssim.Config) {
		c.PoolSize = 1 << 40
		c.NVMeTCPExport = true
	})
	t.Cleanup(func() {
		if err := ts.UnexportNVMe(); err != nil {
			t.Errorf("removing the NVMe/TCP exports: %v", err)
		}
	})
	client, err := rds.NewClient(rds.Config{Address: ts.Addr(), User: ts.User, Signer: ts.Signer, HostKey: ts.HostKey})
	if err != nil {
		t.Fatal(err)
	}
	client.Start()
	t.Cleanup(func() { _ = client.Close() })
	// rds-csi --nvme-backend=nvme with its default reconnect settings.
	ini, err := nvme.NewCLI(nvme.CLIConfig{CtrlLossTmo: -1, ReconnectDelay: 2, KeepAliveTmo: 5})
	if err != nil {
		t.Fatal(err)
	}
	d, err := driver.New(driver.Options{NodeID: "vm-sanity-node", Controller: true, Node: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}},
		rds.NewStorage(client), nil, &driver.NodeConfig{Initiator: ini, StateDir: t.TempDir()})
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
	t.Cleanup(func() { cancel(); <-served })

	cfg := sanity.NewTestConfig()
	cfg.Address = sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.IdempotentCount = 2
	cfg.TestVolumeSize = 320 << 20 // mkfs.xfs wants 300 MB at least
	cfg.TestVolumeExpandSize = 512 << 20
	cfg.TestVolumeAccessType = access
	// ext4: the guest can grow it online (the host sandbox's sanity runs use xfs for that).
	cfg.TestVolumeParameters = map[string]string{"fsType": "ext4"}
	cfg.TestInvalidListVolumesStartingToken = "not-a-token"
	sanity.Test(t, cfg)

	if disks := ts.Disks(); len(disks) != 0 {
		t.Errorf("csi-sanity left %d disks on the simulator: %+v", len(disks), disks)
	}
}
