package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

func runDoctor(args ...string) (int, string, string) {
	var out, errOut bytes.Buffer
	code := doctorMain(args, &out, &errOut)
	return code, out.String(), errOut.String()
}

func TestDoctorRefusesBadFlags(t *testing.T) {
	base := []string{"--rds-address", "127.0.0.1:22", "--rds-key-file", "/k", "--rds-insecure-skip-host-key-verification"}
	for _, c := range []struct {
		args []string
		want string
	}{
		{nil, "--rds-address and --rds-key-file are required"},
		{append(base[:4:4], "--rds-user", "x"), "host key"},
		{append(base, "--yes"), "--yes is for --cleanup"},
		{append(base, "--output", "yaml"), "--output must be table or json"},
		{append(base, "--min-age", "0s"), "--min-age must be positive"},
		{append(base, "extra"), "takes no arguments"},
	} {
		code, _, stderr := runDoctor(c.args...)
		if code != 2 || !strings.Contains(stderr, c.want) {
			t.Errorf("%q: exit %d, stderr %q; want 2 and %q", c.args, code, stderr, c.want)
		}
	}
}

// TestDoctorCannotLookIsExitTwo: with the API server unreachable, or the RDS, doctor exits 2 and
// says it could not look, in both output formats.
func TestDoctorCannotLookIsExitTwo(t *testing.T) {
	dir := t.TempDir()
	keyFile := filepath.Join(dir, "id_ed25519")
	signer, err := rdssim.LoadOrCreateHostKey(keyFile) // any ed25519 key file will do as the client key
	if err != nil {
		t.Fatal(err)
	}
	sim, err := rdssim.New(rdssim.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "rds"), AuthorizedKeys: []ssh.PublicKey{signer.PublicKey()}})
	if err != nil {
		t.Fatal(err)
	}
	if err := sim.Start(); err != nil {
		t.Fatal(err)
	}
	defer sim.Close()
	kubeconfig := filepath.Join(dir, "kubeconfig")
	if err := k8stest.WriteKubeconfig(&rest.Config{Host: "https://127.0.0.1:1", BearerToken: "x", TLSClientConfig: rest.TLSClientConfig{Insecure: true}}, kubeconfig); err != nil {
		t.Fatal(err)
	}
	args := []string{"--rds-address", sim.Addr(), "--rds-key-file", keyFile, "--rds-host-key",
		string(ssh.MarshalAuthorizedKey(sim.HostPublicKey())), "--kubeconfig", kubeconfig, "--timeout", "20s"}

	code, out, _ := runDoctor(args...)
	if code != 2 || !strings.Contains(out, "COULD NOT LOOK: could not list PersistentVolumes") {
		t.Fatalf("API server down: exit %d\n%s", code, out)
	}
	code, out, _ = runDoctor(append(args, "--output", "json")...)
	var r struct {
		Error    string `json:"error"`
		Findings []any  `json:"findings"`
	}
	if err := json.Unmarshal([]byte(out), &r); err != nil || code != 2 || r.Error == "" || len(r.Findings) != 0 {
		t.Fatalf("API server down, json: exit %d, %v\n%s", code, err, out)
	}

	_ = sim.Close()
	code, out, _ = runDoctor(append(args, "--cleanup", "--yes")...)
	if code != 2 || !strings.Contains(out, "could not list RDS disks") || strings.Contains(out, "removed") {
		t.Fatalf("RDS down: exit %d\n%s", code, out)
	}
	_ = os.Remove(keyFile)
}
