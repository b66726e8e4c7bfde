//go:build vmguest

// Package guestsanity runs the full csi-sanity suite inside the qemu guest of hack/vm.sh, over
// real NVMe/TCP: the simulator exports through the kernel target on loopback, the node service
// connects with nvme-cli. Ginkgo allows one suite per process: run each test in its own process
// (-test.run=TestSanityMount, then -test.run=TestSanityBlock), as test/vm does.
package guestsanity

import (
	"os"
	"testing"

	"github.com/srvlab/rds-csi/internal/allinone"
	"github.com/srvlab/rds-csi/internal/sanityrun"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
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
	// rds-csi --nvme-backend=nvme with its default reconnect settings.
	ini, err := nvme.NewCLI(nvme.CLIConfig{CtrlLossTmo: -1, ReconnectDelay: 2, KeepAliveTmo: 5})
	if err != nil {
		t.Fatal(err)
	}
	srv := allinone.ServeNode(t, ts, "vm-sanity-node", nil, &driver.NodeConfig{Initiator: ini, StateDir: t.TempDir()})
	// ext4: the guest can grow it online (the host sandbox's sanity runs use xfs for that).
	sanityrun.Suite(t, ts, srv, access, "ext4")
}
