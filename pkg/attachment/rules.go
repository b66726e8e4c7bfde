// Package attachment decides which nodes may attach a volume: one node for single-node volumes,
// two at most for multi-node raw block volumes during a KubeVirt live migration.
package attachment

import (
	"fmt"
	"sort"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// DefaultMigrationTimeout bounds how long a multi-node volume may stay attached to two nodes.
const DefaultMigrationTimeout = 5 * time.Minute

// Request asks to attach a volume to a node.
type Request struct {
	VolumeID string
	NodeID   string
	ReadOnly bool
	// MultiNode is true for multi-node raw block volumes, which may be attached to two nodes at
	// once (live migration), never three.
	MultiNode        bool
	MigrationTimeout time.Duration
}

// Attachment is one node holding a volume.
type Attachment struct {
	NodeID   string
	ReadOnly bool
	Since    time.Time
}

// decide applies the attachment rules to the current holders of a volume. It returns whether the
// request is already satisfied (idempotent publish) or an error explaining the refusal. Holders
// that are gone must have been removed by the caller before.
func decide(holders []Attachment, req Request) (already bool, err error) {
	for _, h := range holders {
		if h.NodeID == req.NodeID {
			if h.ReadOnly != req.ReadOnly {
				return false, status.Errorf(codes.AlreadyExists,
					"volume %s is already published to node %s with readonly=%t", req.VolumeID, req.NodeID, h.ReadOnly)
			}
			return true, nil
		}
	}
	switch {
	case len(holders) == 0:
		return false, nil
	case !req.MultiNode:
		return false, status.Errorf(codes.FailedPrecondition,
			"volume %s is attached to node %s; it can be attached to %s once that node detaches it, is deleted or is tainted node.kubernetes.io/out-of-service",
			req.VolumeID, names(holders), req.NodeID)
	case len(holders) >= 2:
		return false, status.Errorf(codes.FailedPrecondition,
			"volume %s is already attached to two nodes (%s), the most a live migration allows", req.VolumeID, names(holders))
	}
	return false, nil
}

// Overdue returns the holders of a dual attachment that has outlived the migration timeout.
func Overdue(holders []Attachment, timeout time.Duration, now time.Time) bool {
	if len(holders) < 2 {
		return false
	}
	if timeout <= 0 {
		timeout = DefaultMigrationTimeout
	}
	latest := holders[0].Since
	for _, h := range holders[1:] {
		if h.Since.After(latest) {
			latest = h.Since
		}
	}
	return now.Sub(latest) > timeout
}

func names(hs []Attachment) string {
	n := make([]string, len(hs))
	for i, h := range hs {
		n[i] = h.NodeID
	}
	sort.Strings(n)
	return strings.Join(n, ", ")
}

// errNodeUnknown is returned for a node that does not exist.
func errNodeUnknown(node string) error {
	return status.Error(codes.NotFound, fmt.Sprintf("node %s does not exist", node))
}
