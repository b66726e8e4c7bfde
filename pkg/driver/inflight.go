package driver

import (
	"sync"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// inflight guards against two operations on the same volume at once: the CO retries while an
// earlier call is still running, and the second one must back off with Aborted. The controller
// and the node service each have one.
type inflight struct {
	mu   sync.Mutex
	keys map[string]struct{}
}

func newInflight() *inflight { return &inflight{keys: map[string]struct{}{}} }

// lock takes key, or returns Aborted (the CO retries later) while another operation holds it.
func (i *inflight) lock(key string) error {
	i.mu.Lock()
	defer i.mu.Unlock()
	if _, busy := i.keys[key]; busy {
		return status.Errorf(codes.Aborted, "an operation on %s is already in progress", key)
	}
	i.keys[key] = struct{}{}
	return nil
}

func (i *inflight) unlock(key string) {
	i.mu.Lock()
	delete(i.keys, key)
	i.mu.Unlock()
}
