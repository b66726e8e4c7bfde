package driver

import (
	"bytes"
	"os"
	"os/exec"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
)

// halfFormat leaves what an mkfs killed half-way leaves: data near the start, no signature.
func halfFormat(t *testing.T, file string) {
	t.Helper()
	writeAt(t, file, bytes.Repeat([]byte{0x5a}, 8192), 2048)
}

// A format interrupted by a restart of the plugin leaves a device that is neither blank nor a
// filesystem. With the record of that format, the next stage formats it again; without one, the
// device is unknown data and is left alone.
func TestNodeLoopInterruptedFormatIsRedone(t *testing.T) {
	const id = "pvc-halfformat"
	t.Run("with the record of the interrupted format", func(t *testing.T) {
		e := newNodeEnv(t)
		e.ns.journal = formatJournal{dir: t.TempDir()}
		file := e.newVolume(t, id, 64<<20)
		if err := e.ns.journal.begin(id, "/dev/previous"); err != nil {
			t.Fatal(err)
		}
		halfFormat(t, file)
		if err := e.stage(id, nodeMountCap("ext4", snw)); err != nil {
			t.Fatalf("stage after an interrupted format: %v", err)
		}
		if !e.exec.ran("mkfs.ext4") {
			t.Fatalf("mkfs.ext4 did not run: %v", e.exec.commands)
		}
		if out, err := exec.Command("blkid", "-p", "-s", "TYPE", "-o", "value", file).Output(); err != nil || strings.TrimSpace(string(out)) != "ext4" {
			t.Fatalf("blkid after stage: %q %v, want ext4", out, err)
		}
		if again, _ := e.ns.journal.interrupted(id); again {
			t.Fatal("the format record outlived a complete format")
		}
	})
	t.Run("without a record", func(t *testing.T) {
		e := newNodeEnv(t)
		e.ns.journal = formatJournal{dir: t.TempDir()}
		file := e.newVolume(t, id, 64<<20)
		halfFormat(t, file)
		err := e.stage(id, nodeMountCap("ext4", snw))
		nodeWantCode(t, err, codes.FailedPrecondition)
		if e.exec.ran("mkfs") {
			t.Fatalf("mkfs ran on unknown data: %v", e.exec.commands)
		}
	})
	t.Run("a record never excuses an unreadable device", func(t *testing.T) {
		e := newNodeEnv(t)
		e.ns.journal = formatJournal{dir: t.TempDir()}
		file := e.newVolume(t, id, 64<<20)
		if err := e.ns.journal.begin(id, "/dev/previous"); err != nil {
			t.Fatal(err)
		}
		e.ns.initiator = &hookInitiator{Initiator: e.loop, connected: func(string) { must(t, os.Truncate(file, 0)) }}
		err := e.stage(id, nodeMountCap("ext4", snw))
		nodeWantCode(t, err, codes.Internal)
		if e.exec.ran("mkfs") {
			t.Fatalf("mkfs ran on an unreadable device: %v", e.exec.commands)
		}
	})
	t.Run("a complete format removes a record left behind", func(t *testing.T) {
		e := newNodeEnv(t)
		e.ns.journal = formatJournal{dir: t.TempDir()}
		file := e.newVolume(t, id, 64<<20)
		if out, err := exec.Command("mkfs.ext4", "-q", "-F", file).CombinedOutput(); err != nil {
			t.Fatalf("mkfs.ext4: %v %s", err, out)
		}
		if err := e.ns.journal.begin(id, "/dev/previous"); err != nil {
			t.Fatal(err)
		}
		if err := e.stage(id, nodeMountCap("ext4", snw)); err != nil {
			t.Fatal(err)
		}
		if e.exec.ran("mkfs") {
			t.Fatal("an existing filesystem was formatted")
		}
		if again, _ := e.ns.journal.interrupted(id); again {
			t.Fatal("the record of a format that completed was kept")
		}
	})
}
