// Package sanityrun runs the official csi-sanity suite against rds-csi in `all` mode: the
// controller talks to the RDS simulator over real SSH, the node attaches the simulator's files as
// real loop devices, formats and mounts them. It needs root. Ginkgo allows one suite per process,
// so each access type has its own test package calling Run.
package sanityrun

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/kubernetes-csi/csi-test/v5/pkg/sanity"

	"github.com/srvlab/rds-csi/internal/allinone"
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
	// xfs: node expansion is exercised online, which this sandbox cannot do for ext4.
	Suite(t, ts, allinone.Serve(t, ts, "sanity-node", nil), access, "xfs")
}

// Suite runs csi-sanity for one access type against a driver already serving over the simulator
// ts, on volumes of fsType, and checks that the suite left no disk on the RDS.
func Suite(t *testing.T, ts *rdssim.TestServer, srv *allinone.Served, access, fsType string) {
	sock, dir := srv.Socket, srv.Dir
	cfg := sanity.NewTestConfig()
	cfg.Address = sock
	cfg.TargetPath = filepath.Join(dir, "target")
	cfg.StagingPath = filepath.Join(dir, "staging")
	cfg.IdempotentCount = 2
	cfg.TestVolumeSize = 320 << 20 // mkfs.xfs wants 300 MB at least
	cfg.TestVolumeExpandSize = 512 << 20
	cfg.TestVolumeAccessType = access
	cfg.TestVolumeParameters = map[string]string{"fsType": fsType}
	cfg.TestInvalidListVolumesStartingToken = "not-a-token"
	sanity.Test(t, cfg)

	// Nothing the suite created may be left on the RDS.
	if disks := ts.Disks(); len(disks) != 0 {
		t.Errorf("csi-sanity left %d disks on the simulator: %+v", len(disks), disks)
	}
}
