//go:build vmguest

package guest

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// driverEnv names the rds-csi binary test/vm copies into the guest.
const driverEnv = "RDS_CSI_VM_DRIVER"

// The rds-csi binary itself, with --nvme-backend=nvme and reconnect flags other than the defaults,
// stages a volume over NVMe/TCP: the kernel's controller carries exactly the flags' tunables, the
// volume takes data, and unstage leaves no controller.
func TestBinaryWithNVMeBackend(t *testing.T) {
	bin := os.Getenv(driverEnv)
	if bin == "" {
		t.Fatalf("%s must name the rds-csi binary (test/vm sets it)", driverEnv)
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	ts := rdssim.StartForTest(t, func(c *rdssim.Config) {
		c.PoolSize = 1 << 40
		c.NVMeTCPExport = true
		c.AuthorizedKeys = append(c.AuthorizedKeys, sshPub)
	})
	t.Cleanup(func() { _ = ts.UnexportNVMe() })
	dir := t.TempDir()
	block, err := ssh.MarshalPrivateKey(priv, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	ctx, cancel := context.WithCancel(context.Background())
	cmd := exec.CommandContext(ctx, bin, "--mode=all", "--endpoint=unix://"+sock, "--node-id=vm-binary",
		"--rds-address="+ts.Addr(), "--rds-key-file="+keyFile,
		"--rds-host-key="+strings.TrimSpace(string(ssh.MarshalAuthorizedKey(ts.HostKey))),
		"--nvme-backend=nvme", "--nvme-ctrl-loss-tmo=-1", "--nvme-reconnect-delay=3", "--nvme-keep-alive-tmo=7",
		"--node-state-dir="+filepath.Join(dir, "state"))
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cancel()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("rds-csi output:\n%s", logs.String())
		}
	})
	eventually(t, "rds-csi serves its socket", time.Minute, func() bool { _, err := os.Stat(sock); return err == nil })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	// The cleanups above run after this one: the volume is gone before the driver stops.
	e := &env{ts: ts, ctl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), dir: dir, nodeID: "vm-binary"}
	t.Cleanup(func() { noControllersLeft(t) })
	eventually(t, "rds-csi is connected to the RDS", time.Minute, func() bool {
		r, err := csi.NewIdentityClient(conn).Probe(context.Background(), &csi.ProbeRequest{})
		return err == nil && r.GetReady().GetValue()
	})
	v := e.create(t, "binary", 64<<20, mountCap("ext4"), nil)
	e.attach(t, v)
	data := randomBytes(t, 1<<20)
	writeSynced(t, filepath.Join(v.target, "data.bin"), data)
	ctrls := hostControllers(volid.NQN(v.id))
	if len(ctrls) != 1 {
		t.Fatalf("%d controllers for the volume, want 1: %v", len(ctrls), ctrls)
	}
	sys := filepath.Join("/sys/class/nvme", ctrls[0])
	for attr, want := range map[string]string{"ctrl_loss_tmo": "off", "reconnect_delay": "3", "kato": "7", "transport": "tcp"} {
		if got := readAttr(t, filepath.Join(sys, attr)); got != want {
			t.Errorf("controller %s: %s is %q, want %q (from the flags)", ctrls[0], attr, got, want)
		}
	}
	e.detach(t, v)
	assertDisconnected(t, v.id)
	e.attach(t, v)
	readEqual(t, filepath.Join(v.target, "data.bin"), data)
}
