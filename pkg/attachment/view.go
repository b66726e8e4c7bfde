package attachment

import (
	"context"
	"fmt"
	"slices"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

const (
	vaIndex = "rds-csi.volume" // VolumeAttachment → "pv/<PV name>" or "handle/<inline volume handle>"
	pvIndex = "rds-csi.handle" // PersistentVolume of this driver → volume handle
)

func (m *Manager) addIndexers() error {
	for _, inf := range []cache.SharedIndexInformer{m.vas, m.pvs, m.nodes} {
		if err := inf.SetTransform(stripManagedFields); err != nil {
			return err
		}
	}
	if err := m.vas.AddIndexers(cache.Indexers{vaIndex: m.vaKeys}); err != nil {
		return err
	}
	return m.pvs.AddIndexers(cache.Indexers{pvIndex: m.pvKeys})
}

// stripManagedFields keeps the caches small: field ownership is never read.
func stripManagedFields(obj any) (any, error) {
	if a, err := meta.Accessor(obj); err == nil {
		a.SetManagedFields(nil)
	}
	return obj, nil
}

func (m *Manager) vaKeys(obj any) ([]string, error) {
	va, ok := obj.(*storagev1.VolumeAttachment)
	if !ok || va.Spec.Attacher != m.cfg.DriverName {
		return nil, nil
	}
	if pv := va.Spec.Source.PersistentVolumeName; pv != nil {
		return []string{"pv/" + *pv}, nil
	}
	if in := va.Spec.Source.InlineVolumeSpec; in != nil && in.CSI != nil {
		return []string{"handle/" + in.CSI.VolumeHandle}, nil
	}
	return nil, nil
}

func (m *Manager) pvKeys(obj any) ([]string, error) {
	pv, ok := obj.(*corev1.PersistentVolume)
	if !ok || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != m.cfg.DriverName {
		return nil, nil
	}
	return []string{pv.Spec.CSI.VolumeHandle}, nil
}

// pvFor returns the PV of this driver with the volume handle, if the cache has one.
func (m *Manager) pvFor(vol string) *corev1.PersistentVolume {
	objs, _ := m.pvs.GetIndexer().ByIndex(pvIndex, vol)
	var best *corev1.PersistentVolume
	for _, o := range objs {
		if pv, ok := o.(*corev1.PersistentVolume); ok && (best == nil || pv.Name < best.Name) {
			best = pv
		}
	}
	return best
}

// vasFor returns this driver's VolumeAttachments of a volume, from the cache.
func (m *Manager) vasFor(vol string) []*storagev1.VolumeAttachment {
	keys := []string{"handle/" + vol}
	objs, _ := m.pvs.GetIndexer().ByIndex(pvIndex, vol)
	for _, o := range objs {
		if pv, ok := o.(*corev1.PersistentVolume); ok {
			keys = append(keys, "pv/"+pv.Name)
		}
	}
	var out []*storagev1.VolumeAttachment
	for _, k := range keys {
		vs, _ := m.vas.GetIndexer().ByIndex(vaIndex, k)
		for _, o := range vs {
			if va, ok := o.(*storagev1.VolumeAttachment); ok {
				out = append(out, va)
			}
		}
	}
	return out
}

// handleOf returns the volume handle a VolumeAttachment of this driver refers to ("" if unknown).
func (m *Manager) handleOf(va *storagev1.VolumeAttachment) (string, *corev1.PersistentVolume) {
	if name := va.Spec.Source.PersistentVolumeName; name != nil {
		o, ok, _ := m.pvs.GetIndexer().GetByKey(*name)
		if !ok {
			return "", nil
		}
		pv, _ := o.(*corev1.PersistentVolume)
		if pv == nil || pv.Spec.CSI == nil || pv.Spec.CSI.Driver != m.cfg.DriverName {
			return "", nil
		}
		return pv.Spec.CSI.VolumeHandle, pv
	}
	if in := va.Spec.Source.InlineVolumeSpec; in != nil && in.CSI != nil {
		return in.CSI.VolumeHandle, nil
	}
	return "", nil
}

// nodeState is what the attachment rules need to know about a node.
type nodeState int

const (
	nodeUp           nodeState = iota // Ready
	nodeNotReady                      // exists, not Ready: its attachments stay
	nodeOutOfService                  // tainted node.kubernetes.io/out-of-service: released
	nodeDeleted                       // no Node object: released
)

func (s nodeState) gone() bool { return s == nodeOutOfService || s == nodeDeleted }

func (s nodeState) String() string {
	return [...]string{"Ready", "NotReady", "out of service", "deleted"}[s]
}

// releaseReason is the metric label of a released attachment.
func (s nodeState) releaseReason() string {
	if s == nodeDeleted {
		return "node_deleted"
	}
	return "out_of_service"
}

// nodeStates reads node states from the cache. A node missing from the cache is confirmed
// deleted with one GET before its attachments are released (the cache may lag behind a new
// node, and releasing on a guess could let two nodes write a volume). Results are memoized in
// the map, so a pass asks at most once per node, and confirmed deletions are remembered until
// the node shows up in the cache again, so a deleted node costs one GET in all.
type nodeStates struct {
	m     *Manager
	known map[string]nodeState
}

func (m *Manager) newNodeStates() *nodeStates {
	return &nodeStates{m: m, known: map[string]nodeState{}}
}

// cached returns the state from the cache only (a missing node counts as deleted).
func (ns *nodeStates) cached(name string) nodeState {
	if s, ok := ns.known[name]; ok {
		return s
	}
	o, ok, _ := ns.m.nodes.GetIndexer().GetByKey(name)
	n, _ := o.(*corev1.Node)
	if !ok || n == nil {
		return nodeDeleted
	}
	s := stateOf(n)
	ns.known[name] = s
	return s
}

// stateOf reads the attachment-relevant state of an existing node.
func stateOf(n *corev1.Node) nodeState {
	switch {
	case outOfService(n):
		return nodeOutOfService
	case !nodeReady(n):
		return nodeNotReady
	}
	return nodeUp
}

// withoutAPI returns the state without asking the API server: a node missing from the cache
// counts as deleted only once a GET has confirmed it.
func (ns *nodeStates) withoutAPI(name string) nodeState {
	s := ns.cached(name)
	if s == nodeDeleted {
		ns.m.mu.Lock()
		defer ns.m.mu.Unlock()
		if !ns.m.confirmedGone[name] {
			return nodeUp
		}
	}
	return s
}

// get returns the state, confirming a deletion with the API server.
func (ns *nodeStates) get(ctx context.Context, name string) (nodeState, error) {
	if s, ok := ns.known[name]; ok {
		return s, nil
	}
	if s := ns.cached(name); s != nodeDeleted {
		ns.m.mu.Lock()
		delete(ns.m.confirmedGone, name)
		ns.m.mu.Unlock()
		return s, nil
	}
	ns.m.mu.Lock()
	confirmed := ns.m.confirmedGone[name]
	ns.m.mu.Unlock()
	if confirmed { // confirmed before, and the cache has not seen it come back since
		return nodeDeleted, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	n, err := ns.m.cfg.Client.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	switch {
	case apierrors.IsNotFound(err):
		ns.known[name] = nodeDeleted
		ns.m.mu.Lock()
		ns.m.confirmedGone[name] = true
		ns.m.mu.Unlock()
		return nodeDeleted, nil
	case err != nil:
		return nodeUp, fmt.Errorf("confirming that node %s is gone: %w", name, err)
	}
	s := stateOf(n)
	ns.known[name] = s
	return s, nil
}

// holder is one node that holds, or may hold, a volume.
type holder struct {
	node    string
	va      *storagev1.VolumeAttachment // nil for a grant without VolumeAttachment in the cache
	grant   *grant
	since   time.Time
	counted bool // it holds the volume: attached, or granted, and not released by a detach
}

// holdersLocked lists the nodes holding vol, whatever their node's state: VolumeAttachments
// with status.attached (unless released by a detach since), and grants. m.mu is held.
func (m *Manager) holdersLocked(vol string) []holder {
	return m.holdersOfLocked(vol, m.vasFor(vol))
}

// holdersOfLocked is holdersLocked with the volume's VolumeAttachments already looked up.
func (m *Manager) holdersOfLocked(vol string, vas []*storagev1.VolumeAttachment) []holder {
	var hs []holder
	seen := map[string]bool{}
	for _, va := range vas {
		node := va.Spec.NodeName
		if seen[node] {
			continue
		}
		h := holder{node: node, va: va, since: va.CreationTimestamp.Time}
		if g, ok := m.grants[vol][node]; ok {
			if !g.sawVA {
				g.sawVA = true
				m.grants[vol][node] = g
			}
			h.grant, h.counted = &g, true
			if g.at.After(h.since) { // creationTimestamp has whole seconds; the grant is exact
				h.since = g.at
			}
		} else if va.Status.Attached && !m.releasedLocked(vol, node) {
			h.counted = true
		} else if m.uncertainLocked(vol, va) {
			h.counted = true
		}
		if h.counted {
			seen[node] = true
			hs = append(hs, h)
		}
	}
	for node, g := range m.grants[vol] {
		// A grant whose VolumeAttachment was seen and is gone now no longer holds the volume.
		if !seen[node] && !g.sawVA {
			hs = append(hs, holder{node: node, grant: &g, since: g.at, counted: true})
		}
	}
	slices.SortFunc(hs, func(a, b holder) int { return cmpString(a.node, b.node) })
	return hs
}

// uncertainLocked reports whether a pending VolumeAttachment noted at start still counts.
func (m *Manager) uncertainLocked(vol string, va *storagev1.VolumeAttachment) bool {
	since, ok := m.uncertain[vol][va.Spec.NodeName]
	return ok && va.Status.AttachError == nil && va.DeletionTimestamp == nil && m.cfg.Now().Sub(since) <= m.cfg.GrantTTL
}

func (m *Manager) releasedLocked(vol, node string) bool {
	r := m.released[vol]
	if r == nil {
		return false
	}
	_, one := r[node]
	_, all := r[""]
	return one || all
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func typeName(v any) string { return fmt.Sprintf("%T", v) }
