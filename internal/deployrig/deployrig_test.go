package deployrig

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// No production package links this test helper (it imports the testing package).
func TestNotLinkedIntoProduction(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "list", "-deps", "./cmd/...", "./pkg/...")
	cmd.Dir = root
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	if slices.Contains(strings.Fields(string(out)), "github.com/srvlab/rds-csi/internal/deployrig") {
		t.Fatal("a package under cmd/ or pkg/ imports internal/deployrig")
	}
}

func TestWithoutFlags(t *testing.T) {
	args := []string{"--mode=controller", "--endpoint=unix:///csi/csi.sock", "-v", "2", "--kubeconfig", "/x", "--rds-address=a:22", "--v=2"}
	got := WithoutFlags(args, []string{"--endpoint=unix:///tmp/s", "--kubeconfig=/k", "--rds-address=b:22"})
	want := []string{"--mode=controller", "-v", "2", "--v=2"}
	if !slices.Equal(got, want) {
		t.Fatalf("WithoutFlags = %q, want %q", got, want)
	}
}
