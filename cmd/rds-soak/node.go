//go:build linux

package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"unsafe"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

// dataFile is the file each staged volume holds; its checksum is the volume's expected content.
const dataFile = "soak-data.bin"

// opStage does what the kubelet and the external-attacher do for a pod on this node: the volume
// is moved here (unpublished elsewhere, published here), staged, published at the target path;
// then what it holds is checked against what it was last known to hold.
func (s *soak) opStage(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool {
		return v.state == ready && v.pins == 0 && v.node != staged && (v.node == dirty || s.m.stagedCountLocked() < s.cfg.maxStaged)
	})
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	if v.node == dirty && !s.nodeTeardown(v) {
		return true
	}
	if !s.restoreAttachments(v) {
		return true
	}
	var others []string
	s.m.do(func() {
		for n := range v.holders {
			if n != localNode {
				others = append(others, n)
			}
		}
	})
	for _, n := range others {
		if !s.unpublish(v, n, "ControllerUnpublishVolume") {
			return true
		}
	}
	if _, ok := v.holders[localNode]; !ok || v.pubCtx == nil {
		if s.publish(v, localNode, "ControllerPublishVolume") != succeeded {
			return true
		}
	}
	if err := os.MkdirAll(filepath.Dir(v.targetPath), 0o750); err != nil {
		s.stats.violation("soak error", "creating %s: %v", filepath.Dir(v.targetPath), err)
		return true
	}
	call, expect := "NodeStageVolume", codes.OK
	s.m.do(func() {
		v.node = dirty // until both calls are confirmed
		if v.halfFormatted {
			call, expect = "NodeStageVolume (after an interrupted format)", codes.FailedPrecondition
		}
	})
	o, _ := s.rpc(&v.retry, call, nodeCall, expect, func(ctx context.Context) error {
		_, err := s.env.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.id, PublishContext: v.pubCtx,
			StagingTargetPath: v.stagePath, VolumeCapability: capFor(v.fsType), VolumeContext: v.volCtx})
		return err
	})
	s.m.do(func() {
		if o == succeeded {
			v.formatted, v.halfFormatted = true, false
		} else if !v.formatted {
			v.halfFormatted = true
		}
	})
	if o != succeeded {
		return true
	}
	if !isMountPoint(v.stagePath) {
		s.stats.violation("success not on node: NodeStageVolume", "%s: nothing mounted at %s", v.id, v.stagePath)
		return true
	}
	o, _ = s.rpc(&v.retry, "NodePublishVolume", nodeCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.id, PublishContext: v.pubCtx,
			StagingTargetPath: v.stagePath, TargetPath: v.targetPath, VolumeCapability: capFor(v.fsType), VolumeContext: v.volCtx})
		return err
	})
	if o != succeeded {
		return true
	}
	if !isMountPoint(v.targetPath) {
		s.stats.violation("success not on node: NodePublishVolume", "%s: nothing mounted at %s", v.id, v.targetPath)
		return true
	}
	s.m.do(func() { v.node = staged })
	s.verifyContent(v, "verify data (after staging)")
	if v.needNodeExpand {
		s.nodeExpand(v)
	}
	pinned := false
	s.m.do(func() { pinned = v.pins > 0 })
	if !pinned && w.rng.IntN(2) == 0 { // a pending copy from this volume must find what it found first
		s.write(v, w.rng)
	}
	return true
}

// nodeTeardown unpublishes and unstages v on this node; after a success nothing of it may be
// mounted and no loop device may hold its file.
func (s *soak) nodeTeardown(v *vol) bool {
	s.m.do(func() { v.node = dirty })
	o, _ := s.rpc(&v.retry, "NodeUnpublishVolume", nodeCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.targetPath})
		return err
	})
	if o != succeeded {
		return false
	}
	if isMountPoint(v.targetPath) {
		s.stats.violation("success not on node: NodeUnpublishVolume", "%s still mounted at %s", v.id, v.targetPath)
	}
	o, _ = s.rpc(&v.retry, "NodeUnstageVolume", nodeCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stagePath})
		return err
	})
	if o != succeeded {
		return false
	}
	if isMountPoint(v.stagePath) {
		s.stats.violation("success not on node: NodeUnstageVolume", "%s still mounted at %s", v.id, v.stagePath)
	}
	if devs := s.loopDevices(v.id + ".img"); len(devs) > 0 {
		s.stats.violation("success not on node: NodeUnstageVolume", "%s unstaged but loop devices %v still hold its file", v.id, devs)
	}
	s.m.do(func() { v.node = unstaged })
	return true
}

func (s *soak) opWrite(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready && v.node == staged && v.pins == 0 })
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	s.write(v, w.rng)
	return true
}

func (s *soak) write(v *vol, rng *rand.Rand) {
	sum, err := writeData(v.targetPath, rng)
	if err != nil {
		s.stats.count("write data", func(c *opCount) { c.Failed++ })
		s.stats.violation("node I/O error", "writing to %s (%s): %v", v.targetPath, v.id, err)
		s.m.do(func() { v.content = content{} })
		return
	}
	s.stats.count("write data", func(c *opCount) { c.OK++ })
	s.m.do(func() { v.content = content{known: true, sum: sum} })
}

func (s *soak) opVerify(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready && v.node == staged })
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	s.verifyContent(v, "verify data")
	return true
}

// verifyContent reads the data file from the device (O_DIRECT, not the page cache) and compares
// it with what the volume is known to hold: a staged volume's data never changes unless written,
// and a clone or restore holds what its source held.
func (s *soak) verifyContent(v *vol, call string) {
	sum, err := readData(v.targetPath)
	if err != nil {
		s.stats.count(call, func(c *opCount) { c.Failed++ })
		s.stats.violation("node I/O error", "reading %s (%s): %v", v.targetPath, v.id, err)
		return
	}
	if v.content.known && sum != v.content.sum {
		s.stats.count(call, func(c *opCount) { c.Failed++ })
		s.stats.violation("data changed without a write", "%s (%s volume %s): data file checksum %s, expected %s",
			call, v.kind, v.id, short(sum), short(v.content.sum))
	} else {
		s.stats.count(call, func(c *opCount) { c.OK++ })
	}
	s.m.do(func() { v.content = content{known: true, sum: sum} })
}

func short(sum string) string {
	if sum == "" {
		return "(no data file)"
	}
	return sum[:12]
}

func (s *soak) opUnstage(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready && v.pins == 0 && v.node != unstaged })
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	if s.nodeTeardown(v) && w.rng.IntN(2) == 0 {
		s.unpublish(v, localNode, "ControllerUnpublishVolume")
	}
	return true
}

// noForkWhileOpen holds off this process's fork+exec (fsfreeze, a driver restart) while it has a
// file of a volume open, and returns the release. A child forked meanwhile holds a copy of every
// open file until its exec closes it (close-on-exec), so an unmount by the driver in that instant
// fails "target is busy": a true answer about a process the soak itself made. syscall.ForkLock
// exists for this. Reads never wait on a frozen source (atime is not updated while frozen), and
// pinned (frozen) volumes are not written, so holding it cannot stall a thaw.
func noForkWhileOpen() (release func()) {
	syscall.ForkLock.RLock()
	return syscall.ForkLock.RUnlock
}

// writeData replaces the data file with 64 KiB to 1 MiB of random bytes, durably (file and
// directory synced), and returns its checksum.
func writeData(dir string, rng *rand.Rand) (string, error) {
	defer noForkWhileOpen()()
	buf := make([]byte, (1+rng.IntN(16))*64<<10)
	var seed [32]byte
	for i := range seed {
		seed[i] = byte(rng.Uint32())
	}
	_, _ = rand.NewChaCha8(seed).Read(buf)
	tmp := filepath.Join(dir, dataFile+".tmp")
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o644)
	if err != nil {
		return "", err
	}
	if _, err := f.Write(buf); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Sync(); err != nil {
		_ = f.Close()
		return "", err
	}
	if err := f.Close(); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, filepath.Join(dir, dataFile)); err != nil {
		return "", err
	}
	d, err := os.Open(dir)
	if err != nil {
		return "", err
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return "", err
	}
	sum := sha256.Sum256(buf)
	return hex.EncodeToString(sum[:]), nil
}

// readData returns the checksum of the data file, "" when there is none. It reads with O_DIRECT
// so that the bytes come from the device, not from the page cache.
func readData(dir string) (string, error) {
	defer noForkWhileOpen()()
	p := filepath.Join(dir, dataFile)
	f, err := os.OpenFile(p, os.O_RDONLY|syscall.O_DIRECT, 0)
	if errors.Is(err, syscall.EINVAL) {
		f, err = os.Open(p)
	}
	if os.IsNotExist(err) {
		return "", nil
	}
	if err != nil {
		return "", err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return "", err
	}
	const align = 4096
	size := int(st.Size())
	raw := make([]byte, (size+align-1)/align*align+align)
	off := int(uintptr(unsafe.Pointer(&raw[0])) & (align - 1))
	if off != 0 {
		off = align - off
	}
	buf := raw[off : off+(size+align-1)/align*align]
	n, err := io.ReadFull(f, buf)
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	if n != size {
		return "", fmt.Errorf("read %d bytes of %d", n, size)
	}
	sum := sha256.Sum256(buf[:size])
	return hex.EncodeToString(sum[:]), nil
}

// mountPoints lists the mount points of this mount namespace.
func mountPoints() []string {
	b, err := os.ReadFile("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 {
			out = append(out, strings.ReplaceAll(f[4], `\040`, " "))
		}
	}
	return out
}

func isMountPoint(p string) bool {
	for _, m := range mountPoints() {
		if m == p {
			return true
		}
	}
	return false
}

func mountsUnder(dir string) []string {
	var out []string
	for _, m := range mountPoints() {
		if strings.HasPrefix(m, dir+"/") {
			out = append(out, m)
		}
	}
	return out
}

// loopDevices lists the loop devices backed by a file under the simulator's data directory, all
// of them or those with the given base name.
func (s *soak) loopDevices(base string) []string {
	root, err := filepath.EvalSymlinks(s.env.data)
	if err != nil {
		root = s.env.data
	}
	entries, _ := os.ReadDir("/sys/block")
	var out []string
	for _, e := range entries {
		if !strings.HasPrefix(e.Name(), "loop") {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/sys/block", e.Name(), "loop", "backing_file"))
		if err != nil {
			continue
		}
		file := strings.TrimSuffix(strings.TrimSpace(string(b)), " (deleted)")
		if strings.HasPrefix(file, root+"/") && (base == "" || filepath.Base(file) == base) {
			out = append(out, "/dev/"+e.Name()+"="+file)
		}
	}
	return out
}
