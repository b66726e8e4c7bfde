package rdssim

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

func fileSize(t *testing.T, p string) int64 {
	t.Helper()
	fi, err := os.Stat(p)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Size()
}

func writeAt(t *testing.T, p string, off int64, data []byte) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt(data, off); err != nil {
		t.Fatal(err)
	}
}

func readAt(t *testing.T, p string, off int64, n int) []byte {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, off); err != nil {
		t.Fatal(err)
	}
	return b
}

// TestDiskLifecycle walks through the commands in order; each step is a
// subtest and sees the state the previous ones left.
func TestDiskLifecycle(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	aImg, bImg := "/storage-pool/k8s/pvc-a.img", "/storage-pool/k8s/pvc-b.img"
	marker := []byte("hello from pvc-a")
	steps := []struct {
		name, cmd, want string             // want: exact stdout, unless it is "*"
		check           func(t *testing.T) // optional extra assertions
	}{
		{"create", addCmd("pvc-a", aImg, "10G"), "", func(t *testing.T) {
			if got := fileSize(t, ts.HostPath(aImg)); got != 10<<30 {
				t.Fatalf("size %d", got)
			}
			writeAt(t, ts.HostPath(aImg), 5<<30, marker)
		}},
		{"duplicate slot", addCmd("pvc-a", "/storage-pool/k8s/other.img", "1G"), "failure: slot already exists\n", nil},
		{"existing file", addCmd("pvc-x", aImg, "1G"), "failure: file already exists\n", nil},
		{"fraction size", addCmd("pvc-x", "/storage-pool/k8s/x.img", "1.5T"), "failure: invalid parameter\n", nil},
		{"relative path", addCmd("pvc-x", "storage-pool/x.img", "1G"), "failure: invalid parameter\n", nil},
		{"dot-dot path", addCmd("pvc-x", "/storage-pool/../../x.img", "1G"), "failure: invalid parameter\n", nil},
		{"missing type", "/disk add file-path=/storage-pool/x.img file-size=1G slot=pvc-x", "failure: invalid parameter\n", nil},
		{"print one", "/disk print detail where slot=pvc-a", "*", func(t *testing.T) {
			items := parseDetail(t, mustOK(t, c, "/disk print detail where slot=pvc-a"))
			if len(items) != 1 {
				t.Fatalf("items %v", items)
			}
			want := map[string]string{"type": "file", "slot": "pvc-a", "size": "10 737 418 240",
				"file-size": "10.0GiB", "file-path": aImg, "model": aImg, "nvme-tcp-export": "yes",
				"nvme-tcp-server-port": "4420", "nvme-tcp-server-nqn": "nqn.2000-02.com.mikrotik:pvc-a"}
			for k, v := range want {
				if items[0][k] != v {
					t.Errorf("%s=%q, want %q", k, items[0][k], v)
				}
			}
			if _, ok := items[0]["status"]; ok {
				t.Error("file-backed disks have no status field")
			}
		}},
		{"print no match", "/disk print detail where slot=nope", diskFlags + "\n", nil},
		{"grow", "/disk set [find slot=pvc-a] file-size=20G", "", func(t *testing.T) {
			if got := fileSize(t, ts.HostPath(aImg)); got != 20<<30 {
				t.Fatalf("size %d", got)
			}
		}},
		{"shrink refused", "/disk set [find slot=pvc-a] file-size=5G", "failure: invalid parameter\n", nil},
		{"set empty find is a no-op", "/disk set [find slot=nope] file-size=5G", "", nil},
		{"set unknown name", "/disk set nope file-size=5G", "failure: no such item\n", nil},
		{"copy smaller refused", "/disk add type=file copy-from=[find slot=pvc-a] file-path=" + bImg +
			" slot=pvc-b file-size=1G", "failure: invalid parameter\n", nil},
		{"copy missing source", "/disk add type=file copy-from=[find slot=nope] file-path=" + bImg +
			" slot=pvc-b", "failure: no such item\n", nil},
		{"copy", "/disk add type=file copy-from=[find slot=pvc-a] file-path=" + bImg +
			" slot=pvc-b file-size=30G nvme-tcp-export=yes", "", func(t *testing.T) {
			p := ts.HostPath(bImg)
			if got := fileSize(t, p); got != 30<<30 {
				t.Fatalf("size %d", got)
			}
			if got := readAt(t, p, 5<<30, len(marker)); !bytes.Equal(got, marker) {
				t.Fatalf("content %q", got)
			}
			fi, _ := os.Stat(p)
			if alloc := allocatedBytes(fi); alloc > 16<<20 {
				t.Fatalf("copy is not sparse: %d bytes allocated", alloc)
			}
			if d := ts.Disks(); len(d) != 2 || d[1].Slot != "pvc-b" || d[1].FileSize != 30<<30 {
				t.Fatalf("disks %+v", d)
			}
		}},
		{"file in use", `/file remove [find name="storage-pool/k8s/pvc-a.img"]`, "failure: file is in use\n", nil},
		{"remove disk", "/disk remove [find slot=pvc-a]", "", func(t *testing.T) {
			if _, err := os.Stat(ts.HostPath(aImg)); err != nil {
				t.Fatalf("backing file must stay: %v", err)
			}
			if d := ts.Disks(); len(d) != 1 || d[0].Slot != "pvc-b" {
				t.Fatalf("disks %+v", d)
			}
		}},
		{"remove again is a no-op", "/disk remove [find slot=pvc-a]", "", nil},
		{"remove unknown name", "/disk remove pvc-a", "failure: no such item\n", nil},
		{"orphan still counts", "/disk print detail where mount-point=\"storage-pool\"", "*", func(t *testing.T) {
			items := parseDetail(t, mustOK(t, c, `/disk print detail where mount-point="storage-pool"`))
			if len(items) != 1 {
				t.Fatalf("items %v", items)
			}
			free := fmt.Sprint(groupDigits(DefaultPoolSize - 50<<30))
			if items[0]["free"] != free || items[0]["use"] != "50%" || items[0]["type"] != "partition" {
				t.Fatalf("pool %v, want free=%s", items[0], free)
			}
		}},
		{"list files", `/file print detail where name~"pvc-"`, "*", func(t *testing.T) {
			items := parseDetail(t, mustOK(t, c, `/file print detail where name~"pvc-"`))
			if len(items) != 2 || items[0]["name"] != "storage-pool/k8s/pvc-a.img" ||
				items[0]["type"] != ".img file" || items[0]["size"] != "20.0GiB" {
				t.Fatalf("files %v", items)
			}
		}},
		{"remove file", `/file remove [find name="storage-pool/k8s/pvc-a.img"]`, "", func(t *testing.T) {
			if _, err := os.Stat(ts.HostPath(aImg)); !os.IsNotExist(err) {
				t.Fatalf("file still there: %v", err)
			}
		}},
		{"remove file again is a no-op", `/file remove [find name="storage-pool/k8s/pvc-a.img"]`, "", nil},
		{"remove unknown file name", `/file remove "storage-pool/k8s/pvc-a.img"`, "failure: no such item\n", nil},
		{"list by regex", `/disk print detail where slot~"^pvc-"`, "*", func(t *testing.T) {
			items := parseDetail(t, mustOK(t, c, `/disk print detail where slot~"^pvc-"`))
			if len(items) != 1 || items[0]["slot"] != "pvc-b" {
				t.Fatalf("items %v", items)
			}
		}},
	}
	for _, s := range steps {
		t.Run(s.name, func(t *testing.T) {
			r := run(t, c, s.cmd)
			if (s.want != "*" && r.Stdout != s.want) || r.Stderr != "" {
				t.Fatalf("%s:\nstdout %q\nwant   %q\nstderr %q", s.cmd, r.Stdout, s.want, r.Stderr)
			}
			if s.check != nil {
				s.check(t)
			}
		})
	}
}

func TestPersistenceAcrossNew(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	mustOK(t, c, addCmd("pvc-1", "/storage-pool/k8s/pvc-1.img", "1G"))
	mustOK(t, c, addCmd("pvc-2", "/storage-pool/k8s/pvc-2.img", "2G"))
	mustOK(t, c, "/disk set [find slot=pvc-2] file-size=3G")
	mustOK(t, c, "/disk remove [find slot=pvc-1]")
	before := ts.Disks()
	if err := ts.Close(); err != nil {
		t.Fatal(err)
	}
	ts2 := StartForTest(t, func(cfg *Config) { cfg.DataDir = ts.DataDir() })
	after := ts2.Disks()
	if fmt.Sprint(before) != fmt.Sprint(after) || len(after) != 1 || after[0].FileSize != 3<<30 {
		t.Fatalf("state not kept: before %+v after %+v", before, after)
	}
	items := parseDetail(t, mustOK(t, dial(t, ts2), "/disk print detail where slot=pvc-2"))
	if len(items) != 1 || items[0]["file-size"] != "3.0GiB" {
		t.Fatalf("items %v", items)
	}
	if _, err := os.Stat(filepath.Join(ts.DataDir(), "storage-pool/k8s/pvc-1.img")); err != nil {
		t.Fatalf("orphan file gone: %v", err)
	}
}

func TestOutOfPoolSpace(t *testing.T) {
	ts := StartForTest(t, func(cfg *Config) { cfg.PoolSize = 3 << 30 })
	c := dial(t, ts)
	for _, s := range []struct{ name, cmd, want string }{
		{"fits", addCmd("a", "/storage-pool/a.img", "2G"), ""},
		{"too big", addCmd("b", "/storage-pool/b.img", "2G"), "failure: not enough space\n"},
		{"grow too big", "/disk set [find slot=a] file-size=4G", "failure: not enough space\n"},
		{"copy too big", "/disk add type=file copy-from=a file-path=/storage-pool/c.img slot=c", "failure: not enough space\n"},
		{"orphan keeps space", "/disk remove a", ""},
		{"still full", addCmd("d", "/storage-pool/d.img", "2G"), "failure: not enough space\n"},
		{"free the file", "/file remove storage-pool/a.img", ""},
		{"fits again", addCmd("d", "/storage-pool/d.img", "2G"), ""},
	} {
		t.Run(s.name, func(t *testing.T) {
			if r := run(t, c, s.cmd); r.Stdout != s.want {
				t.Fatalf("%s: %q, want %q", s.cmd, r.Stdout, s.want)
			}
		})
	}
}

// TestConcurrentSessions runs many mutating sessions at once (run with -race).
func TestConcurrentSessions(t *testing.T) {
	ts := StartForTest(t)
	clients := []*ssh.Client{dial(t, ts), dial(t, ts)}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c := clients[g%2]
			for i := 0; i < 5; i++ {
				slot := fmt.Sprintf("pvc-%d-%d", g, i)
				for _, cmd := range []string{
					addCmd(slot, "/storage-pool/k8s/"+slot+".img", "1G"),
					"/disk set [find slot=" + slot + "] file-size=2G",
					"/disk print detail where slot~\"^pvc-\"",
				} {
					r, err := RunOn(c, cmd)
					if err == nil && (isFailure(r.Stdout) || r.Stderr != "") {
						err = fmt.Errorf("%s: %q %q", cmd, r.Stdout, r.Stderr)
					}
					if err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	items := parseDetail(t, mustOK(t, clients[0], `/disk print detail where slot~"^pvc-"`))
	if len(items) != 40 || len(ts.Disks()) != 40 {
		t.Fatalf("%d items, %d disks", len(items), len(ts.Disks()))
	}
	for _, it := range items {
		if it["size"] != "2 147 483 648" {
			t.Fatalf("item %v", it)
		}
	}
}

// TestSparseCopyFast copies a mostly empty 64 GiB image.
func TestSparseCopyFast(t *testing.T) {
	dir := t.TempDir()
	src, dst := filepath.Join(dir, "src.img"), filepath.Join(dir, "dst.img")
	f, err := os.Create(src)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 30); err != nil {
		t.Fatal(err)
	}
	offs := []int64{0, 3<<30 + 17, 40 << 30, 64<<30 - 5}
	for _, off := range offs {
		if _, err := f.WriteAt([]byte("data"), off); err != nil {
			t.Fatal(err)
		}
	}
	f.Close()
	start := time.Now()
	sf, _ := os.Open(src)
	defer sf.Close()
	df, _ := os.Create(dst)
	if err := copySparse(df, sf); err != nil {
		t.Fatal(err)
	}
	df.Close()
	elapsed := time.Since(start)
	for _, off := range offs {
		if got := readAt(t, dst, off, 4); string(got) != "data" {
			t.Fatalf("at %d: %q", off, got)
		}
	}
	fi, _ := os.Stat(dst)
	if fi.Size() != 64<<30 || allocatedBytes(fi) > 64<<20 {
		t.Fatalf("size %d allocated %d", fi.Size(), allocatedBytes(fi))
	}
	if elapsed > 5*time.Second {
		t.Fatalf("sparse copy took %v", elapsed)
	}
}

// A copy holds what its source held when the command arrived, as a Btrfs reflink does on the
// RDS: writes to the source while the (slow) copy runs are not in it.
func TestCopyContentIsFixedWhenTheCommandArrives(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	mustOK(t, c, addCmd("src", "/pool/src.img", "1M"))
	srcPath, dstPath := ts.HostPath("/pool/src.img"), ts.HostPath("/pool/dst.img")
	writeFileAt(t, srcPath, 4096, "before")
	ts.SetCopyModel(1024*500*time.Millisecond, false) // 500 ms for the 1 MiB source

	done := make(chan Result, 1)
	go func() {
		r, err := RunOn(dial(t, ts), "/disk add type=file copy-from=[find slot=src] file-path=/pool/dst.img slot=dst")
		if err != nil {
			r.Stderr = err.Error()
		}
		done <- r
	}()
	eventually(t, "the copy's target file", func() bool { _, err := os.Stat(dstPath); return err == nil })
	writeFileAt(t, srcPath, 4096, "after!")
	if r := <-done; r.Stderr != "" || isFailure(r.Stdout) {
		t.Fatalf("copy: %+v", r)
	}
	if got := readAt(t, dstPath, 4096, 6); string(got) != "before" {
		t.Fatalf("the copy holds %q at 4096, want what the source held when the command arrived (%q)", got, "before")
	}
	if left, _ := filepath.Glob(filepath.Join(ts.DataDir(), stateDir, copyImagePrefix+"*")); len(left) != 0 {
		t.Fatalf("the copy's private image of its source is left behind: %v", left)
	}
}

func writeFileAt(t *testing.T, path string, off int64, s string) {
	t.Helper()
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteAt([]byte(s), off); err != nil {
		t.Fatal(err)
	}
}
