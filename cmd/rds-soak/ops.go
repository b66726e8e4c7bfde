//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
)

const mib = int64(1) << 20

// --- create, clone, restore, snapshot (and their repetition until they succeed) ---

func (s *soak) opCreate(w *worker) bool {
	var v *vol
	s.m.do(func() {
		if len(s.m.vols) >= s.cfg.maxVolumes {
			return
		}
		// xfs needs 300 MiB at least; ext4 volumes are smaller, so that both sizes are exercised.
		fs, size := "ext4", (64+w.rng.Int64N(97))*mib
		if w.rng.IntN(2) == 0 {
			fs, size = "xfs", (320+w.rng.Int64N(81))*mib
		}
		v = &vol{name: s.newName("vol"), kind: "blank", fsType: fs, busy: true, content: content{known: true}}
		v.req = &csi.CreateVolumeRequest{Name: v.name, VolumeCapabilities: []*csi.VolumeCapability{capFor(fs)},
			CapacityRange: &csi.CapacityRange{RequiredBytes: size}}
		s.m.vols = append(s.m.vols, v)
	})
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	s.createVolume(v, "CreateVolume")
	return true
}

func (s *soak) opClone(w *worker) bool {
	full := false
	s.m.do(func() { full = len(s.m.vols) >= s.cfg.maxVolumes })
	if full {
		return false
	}
	src := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready && !v.halfFormatted })
	if src == nil {
		return false
	}
	var v *vol
	s.m.do(func() {
		v = &vol{name: s.newName("clone"), kind: "clone", fsType: src.fsType, busy: true, srcVol: src, content: src.content}
		v.req = &csi.CreateVolumeRequest{Name: v.name, VolumeCapabilities: []*csi.VolumeCapability{capFor(v.fsType)},
			CapacityRange: &csi.CapacityRange{RequiredBytes: src.size + w.rng.Int64N(3)*16*mib},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: src.id}}}}
		src.pins++
		s.m.vols = append(s.m.vols, v)
	})
	defer s.m.releaseVol(v)
	s.m.releaseVol(src) // pinned: its data, size and node state stay as they are until the clone exists
	s.createVolume(v, "CreateVolume (clone)")
	return true
}

func (s *soak) opRestore(w *worker) bool {
	full := false
	s.m.do(func() { full = len(s.m.vols) >= s.cfg.maxVolumes })
	if full {
		return false
	}
	sn := s.m.pickSnap(w.rng, func(sn *snap) bool { return sn.state == ready })
	if sn == nil {
		return false
	}
	var v *vol
	s.m.do(func() {
		v = &vol{name: s.newName("restore"), kind: "restore", fsType: sn.fsType, busy: true, srcSnap: sn, content: sn.content}
		v.req = &csi.CreateVolumeRequest{Name: v.name, VolumeCapabilities: []*csi.VolumeCapability{capFor(v.fsType)},
			CapacityRange: &csi.CapacityRange{RequiredBytes: sn.size + w.rng.Int64N(3)*16*mib},
			VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: sn.id}}}}
		sn.pins++
		s.m.vols = append(s.m.vols, v)
	})
	defer s.m.releaseVol(v)
	s.m.releaseSnap(sn)
	s.createVolume(v, "CreateVolume (from snapshot)")
	return true
}

// opRetryPending repeats a create that has not succeeded yet, as the external-provisioner does.
func (s *soak) opRetryPending(w *worker) bool {
	if v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == pending }); v != nil {
		defer s.m.releaseVol(v)
		s.createVolume(v, "CreateVolume (repeated)")
		return true
	}
	if sn := s.m.pickSnap(w.rng, func(sn *snap) bool { return sn.state == pending }); sn != nil {
		defer s.m.releaseSnap(sn)
		s.createSnapshot(sn, "CreateSnapshot (repeated)")
		return true
	}
	return false
}

// createVolume sends v's create request; on success the volume must be on the RDS with the size
// answered, and the content source is unpinned.
func (s *soak) createVolume(v *vol, call string) {
	var resp *csi.CreateVolumeResponse
	var src *vol
	s.m.do(func() { src = v.srcVol })
	thaw := s.freezeSource(src)
	o, _ := s.rpc(&v.retry, call, controllerCall, codes.OK, func(ctx context.Context) (err error) {
		resp, err = s.env.ctl.CreateVolume(ctx, v.req)
		return err
	})
	thaw()
	if o != succeeded {
		return
	}
	vv := resp.GetVolume()
	if vv.GetCapacityBytes() < v.req.GetCapacityRange().GetRequiredBytes() {
		s.stats.violation("success not on RDS: CreateVolume", "%s answered %d bytes, %d were required", call, vv.GetCapacityBytes(), v.req.GetCapacityRange().GetRequiredBytes())
	}
	s.checkOnRDS(call, vv.GetVolumeId(), vv.GetCapacityBytes())
	s.m.do(func() {
		v.id, v.size, v.volCtx, v.state = vv.GetVolumeId(), vv.GetCapacityBytes(), vv.GetVolumeContext(), ready
		v.holders, v.maybe = map[string]int64{}, map[string]bool{}
		v.stagePath = filepath.Join(s.env.dir, "staging", v.name)
		v.targetPath = filepath.Join(s.env.dir, "pods", v.name, "mount")
		if v.srcVol != nil {
			v.srcVol.pins--
			v.srcVol = nil
		}
		if v.srcSnap != nil {
			v.srcSnap.pins--
			v.srcSnap = nil
		}
	})
}

func (s *soak) opSnapshot(w *worker) bool {
	full := false
	s.m.do(func() { full = len(s.m.snaps) >= s.cfg.maxSnapshots })
	if full {
		return false
	}
	src := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready && !v.halfFormatted })
	if src == nil {
		return false
	}
	var sn *snap
	s.m.do(func() {
		sn = &snap{name: s.newName("snap"), fsType: src.fsType, busy: true, src: src, content: src.content}
		sn.req = &csi.CreateSnapshotRequest{Name: sn.name, SourceVolumeId: src.id}
		src.pins++
		s.m.snaps = append(s.m.snaps, sn)
	})
	defer s.m.releaseSnap(sn)
	defer s.m.releaseVol(src)
	s.createSnapshot(sn, "CreateSnapshot")
	return true
}

// freezeSource freezes a staged source's filesystem (FIFREEZE through fsfreeze(8): dirty data
// and metadata are written and further writes wait) for a copy of it, and returns the thaw. The
// RDS fixes a copy's content at one instant (a Btrfs reflink); so does the simulator, but its read
// is not atomic against the kernel writing through the loop device, and a filesystem still
// flushing in the background would be copied torn (XFS then refuses to mount the copy: "Structure
// needs cleaning"). A frozen source is what a backup tool copies for a consistent snapshot. The
// source is pinned, so nothing stages, unstages or writes it meanwhile.
func (s *soak) freezeSource(src *vol) (thaw func()) {
	var path string
	s.m.do(func() {
		if src != nil && src.node == staged {
			path = src.stagePath
		}
	})
	if path == "" {
		return func() {}
	}
	fsfreeze := func(flag string) error {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if out, err := exec.CommandContext(ctx, "fsfreeze", flag, path).CombinedOutput(); err != nil {
			return fmt.Errorf("fsfreeze %s %s: %v %s", flag, path, err, out)
		}
		return nil
	}
	s.freezeMu.Lock()
	defer s.freezeMu.Unlock()
	if s.frozen[path] == 0 {
		if err := fsfreeze("-f"); err != nil {
			s.stats.violation("soak error", "freezing the source %s before copying it: %v", src.name, err)
			return func() {}
		}
	}
	s.frozen[path]++
	return func() {
		s.freezeMu.Lock()
		defer s.freezeMu.Unlock()
		if s.frozen[path]--; s.frozen[path] > 0 {
			return
		}
		delete(s.frozen, path)
		if err := fsfreeze("-u"); err != nil {
			s.stats.violation("soak error", "thawing the source %s after copying it: %v", src.name, err)
		}
	}
}

// createSnapshot sends sn's request; on success the snapshot must be on the RDS, once, with the
// source's size.
func (s *soak) createSnapshot(sn *snap, call string) {
	var resp *csi.CreateSnapshotResponse
	var src *vol
	s.m.do(func() { src = sn.src })
	thaw := s.freezeSource(src)
	o, _ := s.rpc(&sn.retry, call, controllerCall, codes.OK, func(ctx context.Context) (err error) {
		resp, err = s.env.ctl.CreateSnapshot(ctx, sn.req)
		return err
	})
	thaw()
	if o != succeeded {
		return
	}
	r := resp.GetSnapshot()
	if s.checkOnRDS(call, r.GetSnapshotId(), r.GetSizeBytes()) {
		if d, ok := s.disk(sn.req.GetSourceVolumeId()); ok && d.FileSize != r.GetSizeBytes() {
			s.stats.violation("success not on RDS: CreateSnapshot", "snapshot %s has %d bytes, its source %s %d", r.GetSnapshotId(), r.GetSizeBytes(), d.Slot, d.FileSize)
		}
	}
	// A snapshot ID is snap-<uuid of the name>-t<time>-<source>: every disk with the same
	// snap-<uuid>-t prefix was made for this one name, and there must be only one.
	if i := strings.Index(r.GetSnapshotId(), "-t"); i > 0 {
		prefix := r.GetSnapshotId()[:i+2]
		var dups []string
		for _, d := range s.env.sim.Disks() {
			if strings.HasPrefix(d.Slot, prefix) {
				dups = append(dups, d.Slot)
			}
		}
		if len(dups) > 1 {
			s.stats.violation("duplicate snapshot on RDS", "%s %q answered %s; the RDS holds %v", call, sn.name, r.GetSnapshotId(), dups)
		}
	}
	s.m.do(func() {
		sn.id, sn.size, sn.state = r.GetSnapshotId(), r.GetSizeBytes(), ready
		if sn.src != nil {
			sn.src.pins--
			sn.src = nil
		}
	})
}

func (s *soak) opDeleteSnapshot(w *worker) bool {
	sn := s.m.pickSnap(w.rng, func(sn *snap) bool { return sn.state != pending && sn.pins == 0 })
	if sn == nil {
		return false
	}
	defer s.m.releaseSnap(sn)
	s.deleteSnapshot(sn)
	return true
}

func (s *soak) deleteSnapshot(sn *snap) bool {
	o, _ := s.rpc(&sn.retry, "DeleteSnapshot", controllerCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: sn.id})
		return err
	})
	if o != succeeded {
		// Whatever it did, the snapshot is being deleted: only the delete is repeated.
		s.m.do(func() { sn.state = deleting })
		return false
	}
	s.checkGone("DeleteSnapshot", sn.id)
	s.m.removeSnap(sn)
	return true
}

// --- delete: what a CO does when the pod and the PVC go ---

func (s *soak) opDeleteVolume(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state != pending && v.pins == 0 })
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	s.teardownAndDelete(v)
	return true
}

// teardownAndDelete unpublishes and unstages on the node, unpublishes from every node, then
// deletes; it stops at the first failure (the next attempt goes on from there). Once DeleteVolume
// has been sent, only DeleteVolume is repeated: the volume may be half deleted.
func (s *soak) teardownAndDelete(v *vol) bool {
	if v.state != deleting {
		if v.node != unstaged && !s.nodeTeardown(v) {
			return false
		}
		if !s.releaseAll(v) {
			return false
		}
	}
	o, _ := s.rpc(&v.retry, "DeleteVolume", controllerCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id})
		return err
	})
	if o != succeeded {
		s.m.do(func() { v.state = deleting })
		return false
	}
	s.checkGone("DeleteVolume", v.id)
	s.m.removeVol(v)
	return true
}

// releaseAll unpublishes the volume from every node it is or may be published to.
func (s *soak) releaseAll(v *vol) bool {
	var ns []string
	s.m.do(func() {
		for n := range v.holders {
			ns = append(ns, n)
		}
		for n := range v.maybe {
			if _, ok := v.holders[n]; !ok {
				ns = append(ns, n)
			}
		}
	})
	sort.Strings(ns)
	for _, n := range ns {
		if !s.unpublish(v, n, "ControllerUnpublishVolume") {
			return false
		}
	}
	return true
}

// --- expand ---

func (s *soak) opExpand(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool {
		return v.state == ready && v.pins == 0 && v.node != dirty && (v.fsType != "ext4" || s.ext4OnlineGrow)
	})
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	want := v.size + (1+w.rng.Int64N(4))*16*mib
	var resp *csi.ControllerExpandVolumeResponse
	o, _ := s.rpc(&v.retry, "ControllerExpandVolume", controllerCall, codes.OK, func(ctx context.Context) (err error) {
		resp, err = s.env.ctl.ControllerExpandVolume(ctx, &csi.ControllerExpandVolumeRequest{VolumeId: v.id,
			CapacityRange: &csi.CapacityRange{RequiredBytes: want}, VolumeCapability: capFor(v.fsType)})
		return err
	})
	if o != succeeded {
		return true
	}
	if resp.GetCapacityBytes() < want {
		s.stats.violation("success not on RDS: ControllerExpandVolume", "answered %d bytes for %s, %d were asked", resp.GetCapacityBytes(), v.id, want)
	}
	s.checkOnRDS("ControllerExpandVolume", v.id, resp.GetCapacityBytes())
	s.m.do(func() {
		v.size = resp.GetCapacityBytes()
		v.needNodeExpand = resp.GetNodeExpansionRequired()
	})
	if v.node == staged && v.needNodeExpand {
		s.nodeExpand(v)
	}
	return true
}

func (s *soak) nodeExpand(v *vol) {
	o, _ := s.rpc(&v.retry, "NodeExpandVolume", nodeCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.node.NodeExpandVolume(ctx, &csi.NodeExpandVolumeRequest{VolumeId: v.id, VolumePath: v.targetPath,
			StagingTargetPath: v.stagePath, CapacityRange: &csi.CapacityRange{RequiredBytes: v.size}, VolumeCapability: capFor(v.fsType)})
		return err
	})
	if o == succeeded {
		s.m.do(func() { v.needNodeExpand = false })
	}
}

// --- controller publish and unpublish ---

// restoreAttachments brings the driver's attachments of v to what the model holds: publishes
// confirmed by an earlier driver process are repeated (the new process forgot them), and nodes
// whose publish or unpublish had an unknown outcome are unpublished. False if that failed.
func (s *soak) restoreAttachments(v *vol) bool {
	type h struct {
		node  string
		epoch int64
	}
	var stale []h
	var maybe []string
	cur := s.epoch.Load()
	s.m.do(func() {
		for n, e := range v.holders {
			if e < cur {
				stale = append(stale, h{n, e})
			}
		}
		for n := range v.maybe {
			maybe = append(maybe, n)
		}
	})
	sort.Slice(stale, func(i, j int) bool { return stale[i].node < stale[j].node })
	sort.Strings(maybe)
	for _, n := range maybe {
		if !s.unpublish(v, n, "ControllerUnpublishVolume (unknown outcome before)") {
			return false
		}
	}
	for _, x := range stale {
		epoch := s.epoch.Load()
		expect := codes.OK
		if len(v.holders) > 1 { // only after a double publish (already a violation) can one be refused
			expect = codes.FailedPrecondition
		}
		o, _ := s.rpc(&v.retry, "ControllerPublishVolume (again, after a driver restart)", controllerCall, expect, func(ctx context.Context) error {
			_, err := s.env.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: x.node,
				VolumeCapability: capFor(v.fsType), VolumeContext: v.volCtx})
			return err
		})
		switch o {
		case succeeded:
			s.m.do(func() { v.holders[x.node] = epoch })
		case refused:
			s.m.do(func() { delete(v.holders, x.node) })
		default:
			return false
		}
	}
	return true
}

// publish publishes v to node. When another node holds the volume (single-node access), the only
// right answer is FailedPrecondition: a success is a double publish.
func (s *soak) publish(v *vol, node, call string) outcome {
	var others []string
	epoch := s.epoch.Load()
	s.m.do(func() {
		for n, e := range v.holders {
			if n != node && e == epoch {
				others = append(others, n)
			}
		}
	})
	expect := codes.OK
	if len(others) > 0 {
		expect = codes.FailedPrecondition
		call += " (held by another node)"
	}
	var resp *csi.ControllerPublishVolumeResponse
	o, _ := s.rpc(&v.retry, call, controllerCall, expect, func(ctx context.Context) (err error) {
		resp, err = s.env.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: node,
			VolumeCapability: capFor(v.fsType), VolumeContext: v.volCtx})
		return err
	})
	switch o {
	case succeeded:
		// Only a double publish if the process that said yes knew of the other holder: one that
		// started after a kill -9 had forgotten it (in-memory attachments).
		if len(others) > 0 && s.epoch.Load() == epoch {
			s.stats.violation("double publish of a single-node volume", "%s published to %s while held by %v", v.id, node, others)
		}
		s.checkOnRDS(call, v.id, 0)
		s.m.do(func() {
			v.holders[node] = epoch
			delete(v.maybe, node)
			if node == localNode {
				v.pubCtx = resp.GetPublishContext()
			}
		})
	case failed:
		s.m.do(func() {
			if _, held := v.holders[node]; !held {
				v.maybe[node] = true
			}
		})
	}
	return o
}

func (s *soak) unpublish(v *vol, node, call string) bool {
	o, _ := s.rpc(&v.retry, call, controllerCall, codes.OK, func(ctx context.Context) error {
		_, err := s.env.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: node})
		return err
	})
	s.m.do(func() {
		if o == succeeded {
			delete(v.holders, node)
			delete(v.maybe, node)
		} else {
			delete(v.holders, node)
			v.maybe[node] = true
		}
	})
	return o == succeeded
}

// opPublish publishes a volume to a random node; when another node holds it, that is the
// single-node check.
func (s *soak) opPublish(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool { return v.state == ready })
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	if !s.restoreAttachments(v) {
		return true
	}
	node := nodes[w.rng.IntN(len(nodes))]
	s.publish(v, node, "ControllerPublishVolume")
	return true
}

func (s *soak) opUnpublish(w *worker) bool {
	v := s.m.pickVol(w.rng, func(v *vol) bool {
		if v.state != ready {
			return false
		}
		for n := range v.holders {
			if n != localNode || v.node == unstaged {
				return true
			}
		}
		return false
	})
	if v == nil {
		return false
	}
	defer s.m.releaseVol(v)
	var cands []string
	s.m.do(func() {
		for n := range v.holders {
			if n != localNode || v.node == unstaged {
				cands = append(cands, n)
			}
		}
	})
	sort.Strings(cands)
	s.unpublish(v, cands[w.rng.IntN(len(cands))], "ControllerUnpublishVolume")
	return true
}
