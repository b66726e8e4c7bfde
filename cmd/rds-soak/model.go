//go:build linux

package main

import (
	"math/rand/v2"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
)

// The model is what the soak believes the driver and the RDS hold: the CO's view. Each volume or
// snapshot is claimed by one worker at a time (busy), as a CO serialises the operations on one
// object; different objects are worked on concurrently. Every field is written under model.mu.

type lifecycle int

const (
	pending lifecycle = iota // a create was sent and has not succeeded yet: it is repeated until it does
	ready
	deleting // a delete was sent and has not succeeded yet: nothing else is done with it, it is repeated
)

// retry is an object's backoff after failed calls, as a CO's: the object is not picked again
// before notBefore, so that a broken object is not hammered in a tight loop.
type retry struct {
	failures  int
	notBefore time.Time
}

func (r *retry) due(now time.Time) bool { return !now.Before(r.notBefore) }

type nodeState int

const (
	unstaged nodeState = iota
	staged             // staged and published at the target path, both confirmed
	dirty              // a node call failed: the node side is in an unknown state until torn down
)

// content is what a volume's filesystem is expected to hold: the checksum of the data file, ""
// for none (blank or freshly formatted). known is false after a write that may have half happened.
type content struct {
	known bool
	sum   string
}

type vol struct {
	retry
	name    string
	fsType  string
	kind    string // "blank", "clone", "restore"
	id      string // set once a create succeeded
	req     *csi.CreateVolumeRequest
	srcVol  *vol  // content source of a pending create, pinned until the create succeeds
	srcSnap *snap // idem
	state   lifecycle
	busy    bool
	size    int64
	volCtx  map[string]string
	pubCtx  map[string]string // from the publish to the local node

	holders map[string]int64 // node → driver incarnation (epoch) that confirmed the publish
	maybe   map[string]bool  // nodes whose publish or unpublish had an unknown outcome

	node           nodeState
	stagePath      string
	targetPath     string
	content        content
	needNodeExpand bool
	pins           int // pending creates and snapshots copying from this volume: no stage, unstage (a first stage formats; mount and umount write), write, expansion or deletion meanwhile
	// formatted: a stage succeeded once. halfFormatted: a first stage failed, so its mkfs may have
	// been killed half-way; the driver then refuses (FailedPrecondition) a filesystem that does
	// not mount rather than format it on a guess, and the volume is not copied (its copies would
	// carry the half-made filesystem without the node's record of the format).
	formatted, halfFormatted bool
}

type snap struct {
	retry
	name    string
	fsType  string // of the source volume: restores must ask for the same
	id      string
	req     *csi.CreateSnapshotRequest
	src     *vol // pinned while pending
	state   lifecycle
	busy    bool
	size    int64
	content content
	pins    int // pending restores from this snapshot
}

type model struct {
	mu       sync.Mutex
	vols     []*vol
	snaps    []*snap
	released chan struct{} // a token whenever something is released, to wake idle workers
}

func newModel() *model { return &model{released: make(chan struct{}, 1)} }

func (m *model) do(f func()) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f()
}

// pickVol claims a random volume that is not busy and passes ok (called under m.mu).
func (m *model) pickVol(rng *rand.Rand, ok func(*vol) bool) *vol {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cands []*vol
	now := time.Now()
	for _, v := range m.vols {
		if !v.busy && v.due(now) && ok(v) {
			cands = append(cands, v)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	v := cands[rng.IntN(len(cands))]
	v.busy = true
	return v
}

func (m *model) pickSnap(rng *rand.Rand, ok func(*snap) bool) *snap {
	m.mu.Lock()
	defer m.mu.Unlock()
	var cands []*snap
	now := time.Now()
	for _, sn := range m.snaps {
		if !sn.busy && sn.due(now) && ok(sn) {
			cands = append(cands, sn)
		}
	}
	if len(cands) == 0 {
		return nil
	}
	sn := cands[rng.IntN(len(cands))]
	sn.busy = true
	return sn
}

func (m *model) wake() {
	select {
	case m.released <- struct{}{}:
	default:
	}
}

func (m *model) releaseVol(v *vol) {
	m.do(func() { v.busy = false })
	m.wake()
}

func (m *model) releaseSnap(sn *snap) {
	m.do(func() { sn.busy = false })
	m.wake()
}

// stagedCount counts volumes that may hold a loop device and mounts on this machine.
func (m *model) stagedCountLocked() int {
	n := 0
	for _, v := range m.vols {
		if v.node != unstaged {
			n++
		}
	}
	return n
}

func (m *model) removeVol(v *vol) {
	m.do(func() {
		for i, x := range m.vols {
			if x == v {
				m.vols = append(m.vols[:i], m.vols[i+1:]...)
				return
			}
		}
	})
}

func (m *model) removeSnap(sn *snap) {
	m.do(func() {
		for i, x := range m.snaps {
			if x == sn {
				m.snaps = append(m.snaps[:i], m.snaps[i+1:]...)
				return
			}
		}
	})
}
