package nvme

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

const (
	nqnA = "nqn.2000-02.com.mikrotik:pvc-11111111-1111-1111-1111-111111111111"
	nqnB = "nqn.2000-02.com.mikrotik:pvc-22222222-2222-2222-2222-222222222222"
	nqnC = "nqn.2000-02.com.mikrotik:pvc-33333333-3333-3333-3333-333333333333"
)

// fakeRunner records command lines and answers them with respond.
type fakeRunner struct {
	mu      sync.Mutex
	calls   []string
	respond func(line string) ([]byte, error)
}

func (f *fakeRunner) Run(_ context.Context, name string, args ...string) ([]byte, error) {
	line := strings.Join(append([]string{name}, args...), " ")
	f.mu.Lock()
	f.calls = append(f.calls, line)
	respond := f.respond
	f.mu.Unlock()
	if respond != nil {
		return respond(line)
	}
	return nil, nil
}

func (f *fakeRunner) Calls() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.calls...)
}

// copyTree copies testdata/sysfs/<name> into dst, replacing @ROOT@ in file contents.
func copyTree(t *testing.T, name, dst, root string) {
	t.Helper()
	src := filepath.Join("testdata", "sysfs", name)
	err := filepath.WalkDir(src, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(src, p)
		out := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(out, 0o755)
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		return os.WriteFile(out, []byte(strings.ReplaceAll(string(b), "@ROOT@", root)), 0o644)
	})
	if err != nil {
		t.Fatalf("copying sysfs tree %s: %v", name, err)
	}
}

// fakeDev makes a /dev stand-in holding the given device nodes as plain files.
func fakeDev(t *testing.T, names ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, n := range names {
		if err := os.WriteFile(filepath.Join(dir, n), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func sameCalls(t *testing.T, got, want []string) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("commands:\n got  %q\n want %q", got, want)
	}
	for i := range got {
		if got[i] != want[i] {
			t.Fatalf("command %d:\n got  %q\n want %q", i, got[i], want[i])
		}
	}
}
