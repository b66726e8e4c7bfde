package cluster

import (
	"context"
	"testing"
	"time"
)

// Scenario d, the seed's: the node holding a pod's RWO volume loses power. It turns NotReady and
// the volume is not attached anywhere else; the operator taints it out-of-service; the pod is
// force-deleted, the volume detached and attached to another node, and the new pod runs with
// the old data. It powers node-c off, so it runs last (file z_).
func TestD_NodeFailure(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := "scenario-d"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	r, err := c.NodeFailover(ctx, ns, "d", "node-c", "node-b", true)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("figure (this machine): %s", r)
	if r.Total <= 0 || r.RDSCSI > r.Total {
		t.Errorf("inconsistent timeline: %s", r)
	}
}
