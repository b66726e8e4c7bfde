package rds

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/routeros"
)

func newStorage(t *testing.T, opts ...func(*rdssim.Config)) (*Storage, *rdssim.TestServer) {
	t.Helper()
	ts := rdssim.StartForTest(t, opts...)
	return NewStorage(startClient(t, fastConfig(ts))), ts
}

func TestStorageLifecycle(t *testing.T) {
	s, ts := newStorage(t)
	ctx := context.Background()
	sp := spec("pvc-11111111-2222-3333-4444-555555555555", 3<<29) // 1.5 GiB: exact, never rounded

	d, err := s.CreateDisk(ctx, sp)
	if err != nil {
		t.Fatalf("CreateDisk: %v", err)
	}
	want := Disk{Slot: sp.Slot, FilePath: sp.FilePath, Size: 3 << 29, Exported: true, Port: 4420, NQN: sp.NQN}
	if *d != want {
		t.Fatalf("CreateDisk = %+v, want %+v", *d, want)
	}
	if st, err := os.Stat(ts.HostPath(sp.FilePath)); err != nil || st.Size() != 3<<29 {
		t.Fatalf("backing file: %v, size %v", err, st)
	}

	t.Run("create again reports the existing disk", func(t *testing.T) {
		d, err := s.CreateDisk(ctx, sp)
		if !routeros.IsAlreadyExists(err) || d == nil || *d != want {
			t.Fatalf("second CreateDisk = %+v, %v; want the disk and AlreadyExists", d, err)
		}
	})
	t.Run("get", func(t *testing.T) {
		got, err := s.GetDisk(ctx, sp.Slot)
		if err != nil || *got != want {
			t.Fatalf("GetDisk = %+v, %v", got, err)
		}
		if _, err := s.GetDisk(ctx, "pvc-absent"); !routeros.IsNotFound(err) {
			t.Fatalf("GetDisk(absent) err = %v, want NotFound", err)
		}
	})
	t.Run("list by prefix", func(t *testing.T) {
		if _, err := s.CreateDisk(ctx, spec("other-1", 1<<20)); err != nil {
			t.Fatal(err)
		}
		ds, err := s.ListDisks(ctx, "pvc-")
		if err != nil || len(ds) != 1 || ds[0].Slot != sp.Slot {
			t.Fatalf("ListDisks(pvc-) = %+v, %v", ds, err)
		}
		all, err := s.ListDisks(ctx, "")
		if err != nil || len(all) != 2 {
			t.Fatalf("ListDisks() = %+v, %v", all, err)
		}
	})
	t.Run("resize exact and idempotent", func(t *testing.T) {
		got, err := s.ResizeDisk(ctx, sp.Slot, 2<<30+4096)
		if err != nil || got.Size != 2<<30+4096 {
			t.Fatalf("ResizeDisk = %+v, %v", got, err)
		}
		got, err = s.ResizeDisk(ctx, sp.Slot, 1<<30) // smaller: nothing to do
		if err != nil || got.Size != 2<<30+4096 {
			t.Fatalf("ResizeDisk(smaller) = %+v, %v", got, err)
		}
		if _, err := s.ResizeDisk(ctx, "pvc-absent", 1<<30); !routeros.IsNotFound(err) {
			t.Fatalf("ResizeDisk(absent) err = %v, want NotFound", err)
		}
	})
	t.Run("copy keeps content", func(t *testing.T) {
		payload := []byte("hello from the source volume")
		f, err := os.OpenFile(ts.HostPath(sp.FilePath), os.O_WRONLY, 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.WriteAt(payload, 1<<20); err != nil {
			t.Fatal(err)
		}
		_ = f.Close()
		cp := spec("snap-copy", 0)
		cp.Export = false
		d, err := s.CopyDisk(ctx, sp.Slot, cp)
		if err != nil || d.Size != 2<<30+4096 || d.Exported {
			t.Fatalf("CopyDisk = %+v, %v", d, err)
		}
		got := make([]byte, len(payload))
		cf, err := os.Open(ts.HostPath(cp.FilePath))
		if err != nil {
			t.Fatal(err)
		}
		defer cf.Close()
		if _, err := cf.ReadAt(got, 1<<20); err != nil || !bytes.Equal(got, payload) {
			t.Fatalf("copied content = %q, %v; want %q", got, err, payload)
		}
		if _, err := s.CopyDisk(ctx, "pvc-absent", spec("pvc-clone", 0)); !routeros.IsNotFound(err) {
			t.Fatalf("CopyDisk(absent source) err = %v, want NotFound", err)
		}
	})
	t.Run("pool capacity", func(t *testing.T) {
		c, err := s.PoolCapacity(ctx, "storage-pool")
		if err != nil {
			t.Fatal(err)
		}
		var used int64
		for _, d := range ts.Disks() {
			used += d.FileSize
		}
		if c.Total != rdssim.DefaultPoolSize || c.Free != c.Total-used {
			t.Fatalf("PoolCapacity = %+v, want total %d free %d", c, int64(rdssim.DefaultPoolSize), int64(rdssim.DefaultPoolSize)-used)
		}
		if _, err := s.PoolCapacity(ctx, "no-such-pool"); !routeros.IsNotFound(err) {
			t.Fatalf("PoolCapacity(absent) err = %v, want NotFound", err)
		}
	})
	t.Run("delete removes disk and file, idempotently", func(t *testing.T) {
		for i := 0; i < 2; i++ {
			if err := s.DeleteDisk(ctx, sp.Slot, sp.FilePath); err != nil {
				t.Fatalf("DeleteDisk #%d: %v", i+1, err)
			}
		}
		if _, err := os.Stat(ts.HostPath(sp.FilePath)); !os.IsNotExist(err) {
			t.Fatalf("backing file still there after delete: %v", err)
		}
		if _, err := s.GetDisk(ctx, sp.Slot); !routeros.IsNotFound(err) {
			t.Fatalf("disk entry still there: %v", err)
		}
	})
	t.Run("delete finishes a half-done delete", func(t *testing.T) {
		half := spec("pvc-half", 1<<20)
		if _, err := s.CreateDisk(ctx, half); err != nil {
			t.Fatal(err)
		}
		// The disk entry goes, the file stays: what an interrupted delete leaves on a real RDS.
		if res, err := ts.Exec(ctx, `/disk remove [find slot="pvc-half"]`); err != nil || res.Stdout != "" {
			t.Fatalf("manual remove: %+v %v", res, err)
		}
		if _, err := os.Stat(ts.HostPath(half.FilePath)); err != nil {
			t.Fatalf("simulator removed the file with the disk entry: %v", err)
		}
		if err := s.DeleteDisk(ctx, half.Slot, half.FilePath); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ts.HostPath(half.FilePath)); !os.IsNotExist(err) {
			t.Fatalf("leftover file not removed: %v", err)
		}
	})
	// An entry removed by an earlier delete, with the file in a StorageClass volumePath that the
	// caller does not know any more: the file is found by its name, and only an exact match goes.
	orphanIn := func(t *testing.T, slot, dir string) string {
		t.Helper()
		sp := spec(slot, 1<<20)
		sp.FilePath = dir + "/" + slot + ".img"
		if _, err := s.CreateDisk(ctx, sp); err != nil {
			t.Fatal(err)
		}
		if _, err := ts.Exec(ctx, `/disk remove [find slot="`+slot+`"]`); err != nil {
			t.Fatal(err)
		}
		return sp.FilePath
	}
	t.Run("half-done delete of a volume in another directory", func(t *testing.T) {
		f := orphanIn(t, "pvc-elsewhere", "/storage-pool/other-class")
		near := orphanIn(t, "xpvc-elsewhere", "/storage-pool/other-class")
		if err := s.DeleteDisk(ctx, "pvc-elsewhere", spec("pvc-elsewhere", 0).FilePath); err != nil {
			t.Fatal(err)
		}
		if _, err := os.Stat(ts.HostPath(f)); !os.IsNotExist(err) {
			t.Fatalf("backing file in the other directory not removed: %v", err)
		}
		if _, err := os.Stat(ts.HostPath(near)); err != nil {
			t.Fatalf("a file whose name merely contains the slot was touched: %v", err)
		}
	})
	t.Run("several files carry the slot's name: none removed", func(t *testing.T) {
		a := orphanIn(t, "pvc-twice", "/storage-pool/one")
		b := orphanIn(t, "pvc-twice", "/storage-pool/two")
		err := s.DeleteDisk(ctx, "pvc-twice", "")
		if routeros.KindOf(err) != routeros.KindInternal || !strings.Contains(err.Error(), "several") {
			t.Fatalf("DeleteDisk = %v, want an internal error naming both files", err)
		}
		for _, f := range []string{a, b} {
			if _, err := os.Stat(ts.HostPath(f)); err != nil {
				t.Fatalf("%s removed on a guess: %v", f, err)
			}
		}
	})
}

func TestStorageOutOfSpace(t *testing.T) {
	s, ts := newStorage(t, func(c *rdssim.Config) { c.PoolSize = 4 << 30 })
	ctx := context.Background()
	if _, err := s.CreateDisk(ctx, spec("pvc-big", 5<<30)); routeros.KindOf(err) != routeros.KindOutOfSpace {
		t.Fatalf("create beyond the pool: err = %v, want out of space", err)
	}
	if _, err := s.CreateDisk(ctx, spec("pvc-small", 1<<30)); err != nil {
		t.Fatal(err)
	}
	if _, err := s.ResizeDisk(ctx, "pvc-small", 8<<30); routeros.KindOf(err) != routeros.KindOutOfSpace {
		t.Fatalf("grow beyond the pool: err = %v, want out of space", err)
	}
	ts.SetOutOfSpace(true)
	if _, err := s.CreateDisk(ctx, spec("pvc-tiny", 1<<20)); routeros.KindOf(err) != routeros.KindOutOfSpace {
		t.Fatalf("create with the out-of-space fault: err = %v", err)
	}
	if n := len(ts.Disks()); n != 1 {
		t.Fatalf("%d disks after failed creates, want 1", n)
	}
}

// Every combination of the unverified failure behaviour is classified the same way.
func TestFailureReportingVariants(t *testing.T) {
	for _, exit := range []bool{false, true} {
		for _, stream := range []string{"stdout", "stderr"} {
			t.Run(fmt.Sprintf("exit=%t/%s", exit, stream), func(t *testing.T) {
				s, ts := newStorage(t)
				if err := ts.SetFailureMode(exit, stream); err != nil {
					t.Fatal(err)
				}
				ctx := context.Background()
				cases := []struct {
					text string
					kind routeros.Kind
				}{
					{"failure: no such item", routeros.KindNotFound},
					{"failure: not enough space", routeros.KindOutOfSpace},
					{"failure: invalid parameter", routeros.KindInvalidArgument},
					{"failure: file already exists", routeros.KindAlreadyExists},
					{"bad command name disk (line 1 column 2)", routeros.KindInternal},
					{"syntax error (line 1 column 7)", routeros.KindInternal},
				}
				for _, c := range cases {
					ts.FailNext(1, c.text)
					_, err := s.ListDisks(ctx, "")
					if routeros.KindOf(err) != c.kind || !strings.Contains(err.Error(), c.text) {
						t.Errorf("%q: err = %v, want kind %v", c.text, err, c.kind)
					}
				}
				if _, err := s.CreateDisk(ctx, spec("pvc-a", 1<<20)); err != nil {
					t.Fatal(err)
				}
				if d, err := s.CreateDisk(ctx, spec("pvc-a", 1<<20)); !routeros.IsAlreadyExists(err) || d == nil {
					t.Errorf("duplicate create: %+v %v", d, err)
				}
				if _, err := s.CopyDisk(ctx, "pvc-absent", spec("pvc-b", 0)); !routeros.IsNotFound(err) {
					t.Errorf("copy of absent source: %v", err)
				}
			})
		}
	}
}

// Output layout quirks (wrapping mid-token at any width, CRLF) never change what is read.
func TestOutputLayoutVariants(t *testing.T) {
	long := "pvc-0123456789abcdef-0123456789abcdef-0123456789abcdef-0123456789abcdef"
	for _, width := range []int{0, 30, 45, 80, 200} {
		for _, crlf := range []bool{false, true} {
			t.Run(fmt.Sprintf("width=%d/crlf=%t", width, crlf), func(t *testing.T) {
				s, ts := newStorage(t)
				ts.SetWrapWidth(width)
				ts.SetCRLF(crlf)
				ctx := context.Background()
				sp := spec(long, 53687091200)
				sp.FilePath = "/storage-pool/a-rather-long-directory-name/kubernetes/" + long + ".img"
				if _, err := s.CreateDisk(ctx, sp); err != nil {
					t.Fatal(err)
				}
				d, err := s.GetDisk(ctx, long)
				if err != nil {
					t.Fatal(err)
				}
				want := Disk{Slot: long, FilePath: sp.FilePath, Size: 53687091200, Exported: true, Port: 4420, NQN: sp.NQN}
				if *d != want {
					t.Fatalf("GetDisk = %+v\nwant       %+v", *d, want)
				}
				c, err := s.PoolCapacity(ctx, "storage-pool")
				if err != nil || c.Total-c.Free != 53687091200 {
					t.Fatalf("PoolCapacity = %+v, %v", c, err)
				}
				if err := s.DeleteDisk(ctx, long, ""); err != nil {
					t.Fatal(err)
				}
				if _, err := os.Stat(ts.HostPath(sp.FilePath)); !os.IsNotExist(err) {
					t.Fatalf("file left behind at width %d: %v", width, err)
				}
			})
		}
	}
}

func TestNothingUnsafeIsSent(t *testing.T) {
	s, ts := newStorage(t)
	ctx := context.Background()
	bad := []string{`pvc-a;/system reboot`, `pvc a`, `pvc-[find]`, `pvc-"x"`, `pvc-$x`, strings.Repeat("a", 300), "PVC-UPPER", "pvc-x\n/disk remove 0"}
	for _, slot := range bad {
		if _, err := s.CreateDisk(ctx, spec(slot, 1<<20)); routeros.KindOf(err) != routeros.KindInvalidArgument {
			t.Errorf("CreateDisk(%q) err = %v, want invalid argument", slot, err)
		}
		if err := s.DeleteDisk(ctx, slot, ""); routeros.KindOf(err) != routeros.KindInvalidArgument {
			t.Errorf("DeleteDisk(%q) err = %v, want invalid argument", slot, err)
		}
	}
	if _, err := s.CreateDisk(ctx, routeros.DiskSpec{Slot: "pvc-p", FilePath: "/storage-pool/../etc/x.img", Size: 1 << 20}); routeros.KindOf(err) != routeros.KindInvalidArgument {
		t.Errorf("path with '..': err = %v", err)
	}
	for _, size := range []int64{-1, 0, routeros.MaxFileSize + 1} {
		if _, err := s.CreateDisk(ctx, spec("pvc-size", size)); routeros.KindOf(err) != routeros.KindInvalidArgument {
			t.Errorf("size %d: err = %v", size, err)
		}
	}
	if n := ts.Stats().Commands; n != 0 {
		t.Fatalf("%d commands reached the RDS for invalid input: %v", n, ts.Commands())
	}
}
