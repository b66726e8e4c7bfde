package attachment

import (
	"context"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"
)

// Attach grants the attachment of a volume to a node, or refuses it with a gRPC status:
// Unavailable before the caches have synced, FailedPrecondition naming the holder(s), AlreadyExists
// for a republish with another readonly flag, NotFound for a node that does not exist. Holders
// whose Node is deleted or tainted out-of-service do not count. Decisions on one volume are
// serialized, so of two concurrent publishes of a single-node volume exactly one wins.
func (m *Manager) Attach(ctx context.Context, req Request) error {
	if !m.Ready() {
		return status.Error(codes.Unavailable, "attachment view is still syncing from the Kubernetes API; retry shortly")
	}
	unlock := m.volLocks.lock(req.VolumeID)
	defer unlock()
	// Its publish is here: from now on this call's outcome decides, not a start-up guess.
	m.mu.Lock()
	m.forgetUncertainLocked(req.VolumeID, req.NodeID)
	m.mu.Unlock()
	now := m.cfg.Now()
	ns := m.newNodeStates()
	switch s, err := ns.get(ctx, req.NodeID); {
	case err != nil:
		return status.Errorf(codes.Unavailable, "%v", err)
	case s == nodeDeleted:
		return errNodeUnknown(req.NodeID)
	case s == nodeOutOfService:
		m.metrics.refused("target_out_of_service")
		return status.Errorf(codes.FailedPrecondition, "node %s is tainted %s: it takes no attachments", req.NodeID, OutOfServiceTaint)
	}

	m.mu.Lock()
	hs := m.holdersLocked(req.VolumeID)
	m.mu.Unlock()
	var (
		others   []Attachment
		notReady []string
		mine     *holder
	)
	for i, h := range hs {
		if h.node == req.NodeID {
			mine = &hs[i]
			continue
		}
		s, err := ns.get(ctx, h.node)
		if err != nil {
			return status.Errorf(codes.Unavailable, "%v", err)
		}
		if s.gone() {
			klog.V(2).InfoS("Ignoring the attachment of a gone node", "volume", req.VolumeID, "node", h.node, "state", s.String())
			continue
		}
		if s == nodeNotReady {
			notReady = append(notReady, h.node)
		}
		a := Attachment{NodeID: h.node, Since: h.since}
		if h.grant != nil {
			a.ReadOnly = h.grant.readOnly
		}
		others = append(others, a)
	}

	if mine != nil {
		if mine.grant != nil && mine.grant.readOnly != req.ReadOnly {
			m.metrics.refused("readonly_mismatch")
			return status.Errorf(codes.AlreadyExists, "volume %s is already published to node %s with readonly=%t",
				req.VolumeID, req.NodeID, mine.grant.readOnly)
		}
		if mine.grant == nil { // attached per its VolumeAttachment: remember the flags
			m.grant(req, mine.since)
		} else {
			m.renewGrant(req.VolumeID, req.NodeID)
		}
		m.metrics.decision("idempotent")
		return nil
	}
	if _, err := decide(others, req, now); err != nil {
		m.refusal(req, others, notReady, now)
		if len(notReady) > 0 {
			return status.Errorf(status.Code(err), "%s (NotReady: %s; the volume stays attached to a NotReady node because it may still be writing: if the node is shut down, taint it %s=nodeshutdown:NoExecute to release the volume)",
				status.Convert(err).Message(), strings.Join(notReady, ", "), OutOfServiceTaint)
		}
		return err
	}
	m.grant(req, now)
	if len(others) == 1 {
		timeout := timeoutOrDefault(req.MigrationTimeout)
		klog.InfoS("Dual attachment for live migration", "volume", req.VolumeID, "nodes", []string{others[0].NodeID, req.NodeID}, "timeout", timeout)
		m.mu.Lock()
		m.scheduleCheckLocked(req.VolumeID, now.Add(timeout))
		m.mu.Unlock()
	}
	m.metrics.decision("granted")
	return nil
}

// grant records that this process granted the attachment.
func (m *Manager) grant(req Request, at time.Time) {
	m.mu.Lock()
	defer m.mu.Unlock()
	g := m.grants[req.VolumeID]
	if g == nil {
		g = map[string]grant{}
		m.grants[req.VolumeID] = g
	}
	m.grantSeq++
	g[req.NodeID] = grant{readOnly: req.ReadOnly, multiNode: req.MultiNode, timeout: req.MigrationTimeout, at: at, seq: m.grantSeq}
	if r := m.released[req.VolumeID]; r != nil {
		delete(r, req.NodeID)
	}
}

// renewGrant gives an existing grant a new seq: a republish relies on it as much as the first
// publish did, so a pass that found the node gone before this publish must not drop it (see
// releaseGrants). Everything else, the time of the grant included, stays.
func (m *Manager) renewGrant(vol, node string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if g, ok := m.grants[vol][node]; ok {
		m.grantSeq++
		g.seq = m.grantSeq
		m.grants[vol][node] = g
	}
}

// dropGrantLocked forgets the grant of vol to node.
func (m *Manager) dropGrantLocked(vol, node string) {
	if g := m.grants[vol]; g != nil {
		delete(g, node)
		if len(g) == 0 {
			delete(m.grants, vol)
		}
	}
}

// refusalEventEvery is how often a repeated refusal for the same reason is said on the PVC again.
const refusalEventEvery = 10 * time.Minute

// refusal counts a refused attach and, when a NotReady holder is the cause, says so on the PVC.
func (m *Manager) refusal(req Request, others []Attachment, notReady []string, now time.Time) {
	switch {
	case !req.MultiNode:
		m.metrics.refused("held")
	case Overdue(others, req.MigrationTimeout, now):
		m.metrics.refused("migration_overdue")
	default:
		m.metrics.refused("two_nodes")
	}
	if len(notReady) == 0 {
		return
	}
	// The external-attacher retries a refused publish for as long as it stays refused: say it
	// once per refusal reason and target, then again only after refusalEventEvery.
	key := req.VolumeID + "/" + req.NodeID + "/" + strings.Join(notReady, ",")
	m.mu.Lock()
	last, seen := m.refusalEvents[key]
	if !seen || now.Sub(last) >= refusalEventEvery {
		m.refusalEvents[key] = now
	}
	m.mu.Unlock()
	if seen && now.Sub(last) < refusalEventEvery {
		return
	}
	m.event(m.eventTarget(m.pvFor(req.VolumeID), nil), corev1.EventTypeWarning, EventAttachRefused,
		"Volume %s cannot be attached to node %s: it is attached to NotReady node %s, which may still be writing. If that node is shut down, taint it %s=nodeshutdown:NoExecute to release the volume.",
		req.VolumeID, req.NodeID, strings.Join(notReady, ", "), OutOfServiceTaint)
}

// Detach forgets this process's grant of the volume to the node (every node for node ""), and
// marks the node's VolumeAttachment as released, so that the volume can be attached elsewhere
// before the external-attacher deletes it. It is idempotent and never fails.
func (m *Manager) Detach(_ context.Context, volume, node string) error {
	unlock := m.volLocks.lock(volume)
	defer unlock()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.forgetUncertainLocked(volume, node)
	if node == "" {
		delete(m.grants, volume)
	} else {
		m.dropGrantLocked(volume, node)
	}
	r := m.released[volume]
	if r == nil {
		r = map[string]time.Time{}
		m.released[volume] = r
	}
	r[node] = m.cfg.Now()
	return nil
}

// PublishedNodes returns the nodes holding a volume, sorted, from the caches: attached
// VolumeAttachments and grants, without nodes that are out of service or confirmed deleted.
func (m *Manager) PublishedNodes(volume string) []string {
	ns := m.newNodeStates()
	m.mu.Lock()
	hs := m.holdersLocked(volume)
	m.mu.Unlock()
	var out []string
	for _, h := range hs {
		if !ns.withoutAPI(h.node).gone() {
			out = append(out, h.node)
		}
	}
	sort.Strings(out)
	return out
}

// NodeExists reports whether the Node object exists: from the cache, or with one GET when the
// cache does not know the node (yet).
func (m *Manager) NodeExists(ctx context.Context, node string) (bool, error) {
	if _, ok, _ := m.nodes.GetIndexer().GetByKey(node); ok {
		return true, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	_, err := m.cfg.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	switch {
	case err == nil:
		return true, nil
	case apierrors.IsNotFound(err):
		return false, nil
	}
	return false, status.Errorf(codes.Unavailable, "looking up node %s: %v", node, err)
}

// scheduleCheckLocked triggers a pass when a dual attachment reaches its migration timeout.
func (m *Manager) scheduleCheckLocked(vol string, at time.Time) {
	if t := m.timers[vol]; t != nil {
		t.Stop()
	}
	d := at.Sub(m.cfg.Now()) + 10*time.Millisecond
	m.timers[vol] = time.AfterFunc(max(d, 0), func() { m.Trigger(ReasonMigrationTimeout) })
}
