package doctor_test

import (
	"bytes"
	"encoding/json"
	"errors"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/srvlab/rds-csi/internal/deployrig"
	"github.com/srvlab/rds-csi/pkg/doctor"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// TestDoctorBinary runs `rds-csi doctor` as an operator does, from outside the cluster with a
// kubeconfig and the RDS flags: findings and exit status 1, a dry run that removes nothing, a
// cleanup that removes the old orphan and logs it, and exit status 0 once nothing is left.
func TestDoctorBinary(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	key, err := rdssim.LoadOrCreateHostKey(keyFile) // a fresh ed25519 key, written as OpenSSH expects
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, func(c *rdssim.Config) { c.AuthorizedKeys = append(c.AuthorizedKeys, key.PublicKey()) })
	bin := deployrig.Binary(t) // after newEnv, which skips under -short
	kubeconfig := filepath.Join(dir, "kubeconfig")
	e.must(k8stest.WriteKubeconfig(k8stest.Shared(t), kubeconfig))

	orphan := e.disk("pvc-"+newUUID(), 2*time.Hour)
	gone := e.volume(rwoMount, nil)
	e.must(e.st.DeleteDisk(e.ctx, gone.ID, ""))

	run := func(args ...string) (int, string, string) {
		t.Helper()
		cmd := exec.Command(bin, append([]string{"doctor", "--kubeconfig", kubeconfig, "--driver-name", e.rig.Driver,
			"--rds-address", e.sim.Addr(), "--rds-key-file", keyFile,
			"--rds-host-key", string(ssh.MarshalAuthorizedKey(e.sim.HostKey))}, args...)...)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		err := cmd.Run()
		code := 0
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			code = exit.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return code, out.String(), errOut.String()
	}

	code, out, stderr := run("--output", "json")
	var r doctor.Report
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != doctor.ExitNeedAction {
		t.Fatalf("exit %d, %v\n%s\n%s", code, err, out, stderr)
	}
	kinds := map[string]doctor.Kind{}
	for _, f := range r.Findings {
		kinds[f.Volume] = f.Kind
	}
	if kinds[orphan.Slot] != doctor.OrphanDisk || kinds[gone.ID] != doctor.PVDiskMissing || len(kinds) != 2 {
		t.Fatalf("findings: %s", out)
	}

	code, out, stderr = run("--cleanup")
	if code != doctor.ExitNeedAction || !strings.Contains(stderr, "cleanup: would remove disk "+orphan.Slot) || !e.hasDisk(orphan.Slot) {
		t.Fatalf("dry run: exit %d\n%s\n%s", code, out, stderr)
	}
	code, out, stderr = run("--cleanup", "--yes")
	t.Logf("rds-csi doctor --cleanup --yes (exit %d):\n%s\nstderr:\n%s", code, out, stderr)
	if code != doctor.ExitNeedAction || !strings.Contains(stderr, "cleanup: removed disk "+orphan.Slot) || e.hasDisk(orphan.Slot) {
		t.Fatalf("cleanup: exit %d", code)
	}

	// Deleted: it stays while a finalizer waits (no controller-manager here) and names its disk
	// still, but doctor has nothing to say about a PV that is going.
	e.must(e.cs.CoreV1().PersistentVolumes().Delete(e.ctx, gone.PV, metav1.DeleteOptions{}))
	code, out, _ = run()
	if code != doctor.ExitOK || !strings.Contains(out, "Nothing out of line") {
		t.Fatalf("after the PV went: exit %d\n%s", code, out)
	}
}
