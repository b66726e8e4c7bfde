package attachment

import (
	"context"
	"sort"
	"sync"
	"time"

	"k8s.io/klog/v2"
)

// Memory keeps attachments in process memory. It exists for running without Kubernetes
// (csi-sanity, the demo): a restart forgets everything, so it is for testing only.
type Memory struct {
	mu    sync.Mutex
	vols  map[string][]Attachment
	nodes map[string]bool
	now   func() time.Time
}

// NewMemory returns an in-memory attacher that knows the given nodes.
func NewMemory(knownNodes ...string) *Memory {
	klog.Warning("Attachment state is kept in memory only (no Kubernetes API): this mode is for testing; a restart forgets every attachment")
	m := &Memory{vols: map[string][]Attachment{}, nodes: map[string]bool{}, now: time.Now}
	for _, n := range knownNodes {
		if n != "" {
			m.nodes[n] = true
		}
	}
	return m
}

// Attach records the attachment or refuses it.
func (m *Memory) Attach(_ context.Context, req Request) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !m.nodes[req.NodeID] {
		return errNodeUnknown(req.NodeID)
	}
	already, err := decide(m.vols[req.VolumeID], req, m.now())
	if err != nil || already {
		return err
	}
	m.vols[req.VolumeID] = append(m.vols[req.VolumeID], Attachment{NodeID: req.NodeID, ReadOnly: req.ReadOnly, Since: m.now()})
	return nil
}

// Detach forgets the attachment of volume to node, or to every node when node is "".
func (m *Memory) Detach(_ context.Context, volume, node string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if node == "" {
		delete(m.vols, volume)
		return nil
	}
	hs := m.vols[volume][:0:0]
	for _, h := range m.vols[volume] {
		if h.NodeID != node {
			hs = append(hs, h)
		}
	}
	if len(hs) == 0 {
		delete(m.vols, volume)
	} else {
		m.vols[volume] = hs
	}
	return nil
}

// PublishedNodes returns the nodes holding a volume, sorted.
func (m *Memory) PublishedNodes(volume string) []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []string
	for _, h := range m.vols[volume] {
		out = append(out, h.NodeID)
	}
	sort.Strings(out)
	return out
}

// NodeExists reports whether a node is known.
func (m *Memory) NodeExists(_ context.Context, node string) (bool, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.nodes[node], nil
}

// Ready is always true: there is nothing to sync.
func (m *Memory) Ready() bool { return true }
