package driver

import "sync"

// inflight guards against two operations on the same volume at once: the CO retries while an
// earlier call is still running, and the second one must back off with Aborted.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newInflight() *inflight { return &inflight{keys: map[string]struct{}{}} }

func (i *inflight) tryAcquire(key string) bool {
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, busy := i.keys[key]; busy {
		return false
	}
	i.keys[key] = struct{}{}
	return true
}

func (i *inflight) release(key string) {
	i.mu.Lock()
	delete(i.keys, key)
	i.mu.Unlock()
}
