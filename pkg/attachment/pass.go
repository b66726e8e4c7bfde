package attachment

import (
	"context"
	"maps"
	"sort"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/klog/v2"
)

// VolumePrefix is the prefix of this driver's volume IDs (= RDS slots).
const VolumePrefix = "pvc-"

// Finding is one thing a pass noticed about a volume.
type Finding struct {
	Volume string
	Node   string
	Detail string
}

// PassResult is what one reconcile pass found. The lists hold what is new since the previous
// pass (what was reported through events); the counts are totals as of this pass.
type PassResult struct {
	VolumeAttachments int // of this driver, in the cache
	Attachments       int // holders that count, after releases

	Released      []Finding // holders released: node deleted or out of service
	NotReady      []Finding // holders on NotReady nodes (kept)
	Overdue       []Finding // dual attachments past their migration timeout
	Conflicts     []Finding // single-node volumes held by several nodes
	MissingDisks  []Finding // attached volumes without a disk on the RDS
	OrphanExports []string  // exported disks without PersistentVolume (past the grace period)

	NotReadyHolders    int
	OverdueVolumes     int
	ConflictVolumes    int
	MissingDiskVolumes int
	OrphanExportDisks  int

	DriftErr error // the RDS could not be asked: drift unknown this pass
	Err      error // node states could not be confirmed
	Duration time.Duration
}

func (m *Manager) pass(ctx context.Context, _ []string) error {
	return m.Reconcile(ctx).Err
}

// Reconcile runs one pass now: it releases the attachments of deleted and out-of-service nodes,
// reports holders on NotReady nodes, overdue migrations and conflicts, and the drift between
// attachments and the RDS. It reads only caches; API calls are one GET per node missing from the
// cache (to confirm its deletion) and the events it posts. Passes are normally run by the
// Reconciler; a direct call is safe too.
func (m *Manager) Reconcile(ctx context.Context) *PassResult {
	m.passMu.Lock()
	defer m.passMu.Unlock()
	start := time.Now()
	p := m.snapshot()
	for vol, hs := range p.holders {
		m.judge(ctx, p, vol, hs)
	}
	m.releaseGrants(p.drop)
	m.mu.Lock()
	m.pruneLocked(p.now, p.dual)
	m.mu.Unlock()
	m.drift(ctx, p.now, p.attached, p.pvs, p.res, p.report)
	m.finish(p, start)
	return p.res
}

// passState is what the steps of one pass hand on to each other.
type passState struct {
	m        *Manager
	now      time.Time
	res      *PassResult
	ns       *nodeStates
	holders  map[string][]holder                 // volume → holders, as of the snapshot
	pvs      map[string]*corev1.PersistentVolume // volume → its PV, if any
	seen     map[string]bool                     // findings of this pass (see report)
	drop     []goneGrant                         // grants of gone nodes, to forget
	dual     []string                            // volumes held by two nodes or more
	attached map[string]*corev1.PersistentVolume // volumes with a holder that counts
}

// goneGrant is a grant the pass found on a gone node. seq identifies the grant as the pass saw
// it, so that a newer grant of the node is not taken for it (see releaseGrants).
type goneGrant struct {
	vol, node string
	seq       uint64
}

// report marks a finding as seen in this pass and tells whether it is new (to be reported):
// a finding is reported once for as long as consecutive passes find it.
func (p *passState) report(key string) bool {
	p.seen[key] = true
	p.m.mu.Lock()
	defer p.m.mu.Unlock()
	return !p.m.reported[key]
}

// snapshot lists the holders of every volume with a VolumeAttachment or a grant. One walk over
// the cache groups the VolumeAttachments by volume (cheaper than an index lookup per volume).
func (m *Manager) snapshot() *passState {
	p := &passState{m: m, now: m.cfg.Now(), res: &PassResult{}, ns: m.newNodeStates(),
		pvs: map[string]*corev1.PersistentVolume{}, seen: map[string]bool{}, attached: map[string]*corev1.PersistentVolume{}}
	vas := map[string][]*storagev1.VolumeAttachment{}
	for _, o := range m.vas.GetStore().List() {
		va, ok := o.(*storagev1.VolumeAttachment)
		if !ok || va.Spec.Attacher != m.cfg.DriverName {
			continue
		}
		p.res.VolumeAttachments++
		if vol, pv := m.handleOf(va); vol != "" {
			vas[vol] = append(vas[vol], va)
			if pv != nil && (p.pvs[vol] == nil || pv.Name < p.pvs[vol].Name) {
				p.pvs[vol] = pv
			}
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for vol := range m.grants {
		if _, ok := vas[vol]; !ok {
			vas[vol] = nil
			p.pvs[vol] = m.pvFor(vol)
		}
	}
	p.holders = make(map[string][]holder, len(vas))
	for vol, list := range vas {
		p.holders[vol] = m.holdersOfLocked(vol, list)
	}
	return p
}

// judge looks at the holders of one volume: it notes the grants of gone nodes for release,
// reports releases and NotReady holders, and checks a volume held by several nodes. Confirming
// a node's deletion may wait on the API server.
func (m *Manager) judge(ctx context.Context, p *passState, vol string, hs []holder) {
	pv := p.pvs[vol]
	if pv == nil { // inline volumes only so far
		pv = m.pvFor(vol)
	}
	var active []holder
	for _, h := range hs {
		s, err := p.ns.get(ctx, h.node)
		if err != nil {
			p.res.Err = err // cannot confirm: keep the holder
		}
		switch {
		case s.gone():
			if h.grant != nil {
				p.drop = append(p.drop, goneGrant{vol, h.node, h.grant.seq})
			}
			if p.report("released/" + vol + "/" + h.node + "/" + vaUID(h.va)) {
				p.res.Released = append(p.res.Released, Finding{vol, h.node, s.String()})
				m.metrics.released(s.releaseReason())
				klog.InfoS("Attachment released: its node is gone", "volume", vol, "node", h.node, "state", s.String())
				m.event(m.eventTarget(pv, h.va), corev1.EventTypeNormal, EventReleased,
					"Attachment of volume %s to node %s released: the node is %s; the volume can be attached to another node", vol, h.node, s)
			}
			continue
		case s == nodeNotReady:
			p.res.NotReadyHolders++
			if p.report("notready/" + vol + "/" + h.node + "/" + vaUID(h.va)) {
				p.res.NotReady = append(p.res.NotReady, Finding{vol, h.node, s.String()})
				klog.InfoS("Volume stays attached to a NotReady node", "volume", vol, "node", h.node)
				m.event(m.eventTarget(pv, h.va), corev1.EventTypeWarning, EventHolderNotReady,
					"Volume %s stays attached to node %s, which is NotReady and may still be writing. If the node is shut down, taint it %s=nodeshutdown:NoExecute to release the volume.",
					vol, h.node, OutOfServiceTaint)
			}
		}
		active = append(active, h)
	}
	p.res.Attachments += len(active)
	if len(active) > 0 {
		p.attached[vol] = pv
	}
	if len(active) >= 2 {
		p.dual = append(p.dual, vol)
		m.checkDual(vol, pv, active, p.now, p.res, p.report)
	}
}

// releaseGrants forgets the grants of gone nodes. The pass decided on a snapshot and may have
// waited on the API server since, without the volume's lock: if the node came back and a
// publish granted it the volume again, or confirmed its grant, in between, the grant now has
// another seq, and it stays, as that publish decided later than the pass and on newer facts.
// The check and the deletion are made under the volume's lock, so no publish of the volume is
// halfway through its decision meanwhile.
func (m *Manager) releaseGrants(drop []goneGrant) {
	for _, d := range drop {
		unlock := m.volLocks.lock(d.vol)
		m.mu.Lock()
		if g, ok := m.grants[d.vol][d.node]; ok && g.seq == d.seq {
			m.dropGrantLocked(d.vol, d.node)
		} else if ok {
			klog.V(2).InfoS("Keeping a grant made after the pass found its node gone", "volume", d.vol, "node", d.node)
		}
		m.mu.Unlock()
		unlock()
	}
}

// finish records the pass's result and findings, and logs a pass that found anything.
func (m *Manager) finish(p *passState, start time.Time) {
	res := p.res
	m.mu.Lock()
	m.reported = p.seen
	res.Duration = time.Since(start)
	m.mu.Unlock()
	m.metrics.pass(res, res.Duration, time.Now())
	if len(res.Released)+len(res.NotReady)+len(res.Overdue)+len(res.Conflicts)+len(res.MissingDisks)+len(res.OrphanExports) > 0 {
		klog.InfoS("Reconcile pass", "volumeAttachments", res.VolumeAttachments, "attachments", res.Attachments,
			"released", len(res.Released), "notReady", res.NotReadyHolders, "overdue", res.OverdueVolumes,
			"conflicts", res.ConflictVolumes, "missingDisks", res.MissingDiskVolumes, "orphanExports", res.OrphanExportDisks,
			"driftErr", res.DriftErr, "duration", res.Duration)
	}
}

// checkDual reports a volume held by two or more nodes: an overdue migration for a multi-node
// block volume, a conflict for any other volume.
func (m *Manager) checkDual(vol string, pv *corev1.PersistentVolume, active []holder, now time.Time, res *PassResult, report func(string) bool) {
	atts := make([]Attachment, len(active))
	nodes := make([]string, len(active))
	for i, h := range active {
		atts[i] = Attachment{NodeID: h.node, Since: h.since}
		nodes[i] = h.node
	}
	list := strings.Join(nodes, ",")
	multi, timeout := volumeMode(pv, active)
	if !multi {
		res.ConflictVolumes++
		if report("conflict/" + vol + "/" + list) {
			res.Conflicts = append(res.Conflicts, Finding{Volume: vol, Node: list})
			klog.ErrorS(nil, "Single-node volume attached to several nodes", "volume", vol, "nodes", nodes)
			m.event(m.eventTarget(pv, active[0].va), corev1.EventTypeWarning, EventConflict,
				"Single-node volume %s is attached to several nodes (%s) according to its VolumeAttachments", vol, list)
		}
		return
	}
	since := dualSince(atts)
	if !Overdue(atts, timeout, now) {
		m.mu.Lock()
		m.scheduleCheckLocked(vol, since.Add(timeout))
		m.mu.Unlock()
		return
	}
	res.OverdueVolumes++
	if report("overdue/" + vol + "/" + list + "/" + since.UTC().Format(time.RFC3339Nano)) {
		res.Overdue = append(res.Overdue, Finding{vol, list, now.Sub(since).Round(time.Second).String()})
		m.metrics.migrationTimedOut()
		klog.InfoS("Live migration outlived its timeout: volume still attached to two nodes", "volume", vol, "nodes", nodes, "since", since, "timeout", timeout)
		m.event(m.eventTarget(pv, active[0].va), corev1.EventTypeWarning, EventMigrationTimeout,
			"Volume %s has been attached to two nodes (%s) for %v, longer than the migration timeout %v; no other node can attach it until one of them detaches",
			vol, list, now.Sub(since).Round(time.Second), timeout)
	}
}

// volumeMode tells whether a volume may be dual-attached, and its migration timeout: from this
// process's grants, else from the PV (raw block with a multi-node access mode).
func volumeMode(pv *corev1.PersistentVolume, hs []holder) (bool, time.Duration) {
	for _, h := range hs {
		if h.grant != nil && h.grant.multiNode {
			return true, timeoutOrDefault(h.grant.timeout)
		}
	}
	if pv == nil || pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != corev1.PersistentVolumeBlock {
		return false, 0
	}
	for _, mode := range pv.Spec.AccessModes {
		if mode == corev1.ReadWriteMany || mode == corev1.ReadOnlyMany {
			t := DefaultMigrationTimeout
			if pv.Spec.CSI != nil {
				t = MigrationTimeoutOf(pv.Spec.CSI.VolumeAttributes)
			}
			return true, t
		}
	}
	return false, 0
}

// pruneLocked drops grants whose VolumeAttachment is gone, or never came within the grant TTL, detach markers
// whose VolumeAttachments are gone, and migration timers of volumes no longer dual-attached.
func (m *Manager) pruneLocked(now time.Time, dual []string) {
	maps.DeleteFunc(m.grants, func(vol string, gs map[string]grant) bool {
		var withVA map[string]bool // read only once a grant is old enough to need its VolumeAttachment
		maps.DeleteFunc(gs, func(node string, g grant) bool {
			if !g.sawVA && now.Sub(g.at) <= m.cfg.GrantTTL {
				return false
			}
			if withVA == nil {
				withVA = m.nodesWithVA(vol, func(*storagev1.VolumeAttachment) bool { return true })
			}
			if withVA[node] {
				return false
			}
			klog.V(2).InfoS("Dropping a grant that no VolumeAttachment backs", "volume", vol, "node", node, "age", now.Sub(g.at))
			return true
		})
		return len(gs) == 0
	})
	maps.DeleteFunc(m.released, func(vol string, rs map[string]time.Time) bool {
		attached := m.nodesWithVA(vol, func(va *storagev1.VolumeAttachment) bool { return va.Status.Attached })
		maps.DeleteFunc(rs, func(node string, _ time.Time) bool {
			return (node == "" && len(attached) == 0) || (node != "" && !attached[node])
		})
		return len(rs) == 0
	})
	maps.DeleteFunc(m.uncertain, func(vol string, u map[string]time.Time) bool {
		pending := m.nodesWithVA(vol, func(va *storagev1.VolumeAttachment) bool {
			return m.uncertainLocked(vol, va) && !va.Status.Attached
		})
		maps.DeleteFunc(u, func(node string, _ time.Time) bool { return !pending[node] })
		return len(u) == 0
	})
	maps.DeleteFunc(m.refusalEvents, func(_ string, at time.Time) bool { return now.Sub(at) >= refusalEventEvery })
	keep := map[string]bool{}
	for _, v := range dual {
		keep[v] = true
	}
	for vol, t := range m.timers {
		if !keep[vol] {
			t.Stop()
			delete(m.timers, vol)
		}
	}
}

// nodesWithVA is the set of nodes named by the VolumeAttachments of vol that match; never nil.
func (m *Manager) nodesWithVA(vol string, match func(*storagev1.VolumeAttachment) bool) map[string]bool {
	nodes := map[string]bool{}
	for _, va := range m.vasFor(vol) {
		if match(va) {
			nodes[va.Spec.NodeName] = true
		}
	}
	return nodes
}

// drift compares the attached volumes and the RDS: attached volumes whose disk is missing, and
// exported disks that no PersistentVolume refers to (reported only, never deleted).
func (m *Manager) drift(ctx context.Context, now time.Time, attached, pvs map[string]*corev1.PersistentVolume, res *PassResult, report func(string) bool) {
	if m.cfg.Backend == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	disks, err := m.cfg.Backend.ListDisks(ctx, VolumePrefix)
	if err != nil {
		res.DriftErr = err
		klog.V(1).InfoS("Drift check skipped: cannot list the disks on the RDS", "err", err)
		return
	}
	have := make(map[string]bool, len(disks))
	candidates := map[string]bool{}
	for _, d := range disks {
		have[d.Slot] = true
		if d.Exported && pvs[d.Slot] == nil && m.pvFor(d.Slot) == nil && len(m.vasFor(d.Slot)) == 0 {
			candidates[d.Slot] = true
		}
	}
	for vol, pv := range attached {
		if !strings.HasPrefix(vol, VolumePrefix) || have[vol] {
			continue
		}
		res.MissingDiskVolumes++
		if report("missing/" + vol) {
			res.MissingDisks = append(res.MissingDisks, Finding{Volume: vol, Detail: "no disk on the RDS"})
			klog.ErrorS(nil, "Attached volume has no disk on the RDS", "volume", vol)
			m.event(m.eventTarget(pv, nil), corev1.EventTypeWarning, EventMissingDisk,
				"Volume %s is attached according to Kubernetes, but the RDS has no disk %s", vol, vol)
		}
	}
	var due []string
	m.mu.Lock()
	for slot := range m.orphans {
		if !candidates[slot] {
			delete(m.orphans, slot)
		}
	}
	for slot := range candidates {
		first, ok := m.orphans[slot]
		if !ok {
			m.orphans[slot] = now
		} else if now.Sub(first) >= m.cfg.OrphanGrace {
			due = append(due, slot)
		}
	}
	m.mu.Unlock()
	sort.Strings(due)
	for _, slot := range due {
		res.OrphanExportDisks++
		if report("orphan/" + slot) {
			res.OrphanExports = append(res.OrphanExports, slot)
			klog.InfoS("Exported disk without PersistentVolume (left untouched)", "disk", slot)
		}
	}
}

func vaUID(va *storagev1.VolumeAttachment) string {
	if va == nil {
		return "grant"
	}
	return string(va.UID)
}
