//go:build vmguest

package guest

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

const nvmetRoot = "/sys/kernel/config/nvmet"

// The simulator's nvmet export follows its disk table: a disk added with nvme-tcp-export is a
// subsystem on its port (a host discovers and connects to it), a new port moves it, a simulator
// started again over the same data keeps it and its connected host, and nvme-tcp-export=no and
// remove take it away.
func TestSimulatorExportFollowsDiskTable(t *testing.T) {
	dir := t.TempDir()
	export := func(c *rdssim.Config) { c.NVMeTCPExport = true }
	ts, err := rdssim.StartLocal(dir, export)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		_ = ts.UnexportNVMe()
		if !closed {
			_ = ts.Close()
		}
	})
	const nqn = "nqn.2000-02.com.mikrotik:vm-export-a"
	exec := func(cmd string) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		r, err := ts.Exec(ctx, cmd)
		if err != nil || strings.TrimSpace(r.Stdout+r.Stderr) != "" {
			t.Fatalf("%s: %v %s%s", cmd, err, r.Stdout, r.Stderr)
		}
	}
	linked := func(port string) bool {
		_, err := os.Lstat(filepath.Join(nvmetRoot, "ports", port, "subsystems", nqn))
		return err == nil
	}
	exec("/disk add type=file file-path=/pool/export-a.img file-size=64M slot=vm-export-a nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=" + nqn)
	ns := filepath.Join(nvmetRoot, "subsystems", nqn, "namespaces", "1")
	if got := readAttr(t, filepath.Join(ns, "device_path")); got != ts.HostPath("/pool/export-a.img") {
		t.Fatalf("namespace 1 of %s is backed by %q", nqn, got)
	}
	if readAttr(t, filepath.Join(ns, "enable")) != "1" || !linked("4420") {
		t.Fatal("the export is not enabled on port 4420")
	}
	if out := run(t, "nvme", "discover", "-t", "tcp", "-a", "127.0.0.1", "-s", "4420"); !strings.Contains(out, nqn) {
		t.Fatalf("nvme discover on port 4420 does not list %s:\n%s", nqn, out)
	}

	exec("/disk set vm-export-a nvme-tcp-server-port=4421")
	if linked("4420") || !linked("4421") {
		t.Fatal("after a port change the subsystem is not on port 4421 alone")
	}
	if _, err := os.Stat(filepath.Join(nvmetRoot, "ports", "4420")); err == nil {
		t.Fatal("port 4420 exports nothing any more but is still configured")
	}
	run(t, "nvme", "connect", "-t", "tcp", "-a", "127.0.0.1", "-s", "4421", "-n", nqn)
	t.Cleanup(func() { _, _ = runErr("nvme", "disconnect", "-n", nqn) })
	eventually(t, "the host's controller is live", 30*time.Second, func() bool { return hostLive(nqn) })
	ctrl := hostControllers(nqn)

	// A restart over the same data keeps the export as it is: the host notices nothing.
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	closed = true
	ts, err = rdssim.StartLocal(dir, export)
	if err != nil {
		t.Fatalf("starting the simulator again over its exports: %v", err)
	}
	closed = false
	if !linked("4421") || readAttr(t, filepath.Join(ns, "enable")) != "1" {
		t.Fatal("the export is gone after the simulator started again")
	}
	if got := hostControllers(nqn); !hostLive(nqn) || strings.Join(got, ",") != strings.Join(ctrl, ",") {
		t.Fatalf("the host's controllers went from %v to %v (live %t) across the restart", ctrl, got, hostLive(nqn))
	}

	exec("/disk set vm-export-a nvme-tcp-export=no")
	if _, err := os.Stat(filepath.Join(nvmetRoot, "subsystems", nqn)); err == nil || linked("4421") {
		t.Fatal("nvme-tcp-export=no left the subsystem in place")
	}
	eventually(t, "the host lost its controller", 30*time.Second, func() bool { return !hostLive(nqn) })
	run(t, "nvme", "disconnect", "-n", nqn)

	exec("/disk set vm-export-a nvme-tcp-export=yes")
	if !linked("4421") {
		t.Fatal("nvme-tcp-export=yes did not export the disk again")
	}
	exec("/disk remove vm-export-a")
	if _, err := os.Stat(filepath.Join(nvmetRoot, "subsystems", nqn)); err == nil {
		t.Fatal("/disk remove left the subsystem in place")
	}
	if _, err := os.Stat(filepath.Join(nvmetRoot, "ports", "4421")); err == nil {
		t.Fatal("/disk remove left port 4421 configured")
	}
}

// hostControllers lists the initiator's controllers (nvmeX) of an NQN; hostLive says whether one
// is live.
func hostControllers(nqn string) []string {
	var out []string
	ctrls, _ := filepath.Glob("/sys/class/nvme/nvme*")
	for _, c := range ctrls {
		if b, err := os.ReadFile(filepath.Join(c, "subsysnqn")); err == nil && strings.TrimSpace(string(b)) == nqn {
			out = append(out, filepath.Base(c))
		}
	}
	return out
}

func hostLive(nqn string) bool {
	for _, c := range hostControllers(nqn) {
		if b, err := os.ReadFile(filepath.Join("/sys/class/nvme", c, "state")); err == nil && strings.TrimSpace(string(b)) == "live" {
			return true
		}
	}
	return false
}
