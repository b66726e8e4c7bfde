package driver

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

// nvmeCalls records nvme-cli command lines instead of running them.
type nvmeCalls struct {
	mu    sync.Mutex
	lines []string
}

func (r *nvmeCalls) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lines = append(r.lines, strings.Join(append([]string{name}, args...), " "))
	return nil, nil
}

func (r *nvmeCalls) all() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.lines...)
}

// recordedSysfs copies one of pkg/nvme's recorded sysfs trees into a temporary directory.
func recordedSysfs(t *testing.T, tree string) string {
	t.Helper()
	src := filepath.Join("..", "nvme", "testdata", "sysfs", tree)
	dst := t.TempDir()
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		if d.IsDir() {
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(filepath.Join(dst, rel), b, 0o644)
	})
	if err != nil {
		t.Fatalf("copying sysfs tree %s: %v", tree, err)
	}
	return dst
}

// TestNodeUnstageDisconnectsAControllerWithoutNamespace: a controller that connected but never
// showed a namespace (the stage gave up waiting for it) has no block device, yet it reconnects to
// the RDS forever unless unstage disconnects it.
func TestNodeUnstageDisconnectsAControllerWithoutNamespace(t *testing.T) {
	const volB = "pvc-22222222-2222-2222-2222-222222222222" // recorded tree "reconnecting": B has nvme1, no namespace
	tests := []struct {
		name, tree, vol string
		want            []string
	}{
		{name: "controller without namespace", tree: "reconnecting", vol: volB,
			want: []string{"nvme disconnect -n nqn.2000-02.com.mikrotik:" + volB}},
		{name: "nothing connected", tree: "none", vol: volB},
		{name: "another volume connected", tree: "single", vol: "pvc-33333333-3333-3333-3333-333333333333"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			calls := &nvmeCalls{}
			cli, err := nvme.NewCLI(nvme.CLIConfig{SysfsRoot: recordedSysfs(t, tc.tree), DevRoot: t.TempDir(), Runner: calls})
			must(t, err)
			ns, err := newNodeService("node-1", NodeConfig{Initiator: cli})
			must(t, err)
			_, err = ns.NodeUnstageVolume(context.Background(), &csi.NodeUnstageVolumeRequest{VolumeId: tc.vol, StagingTargetPath: t.TempDir()})
			must(t, err)
			got := calls.all()
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Fatalf("nvme commands:\n got  %q\n want %q", got, tc.want)
			}
		})
	}
}
