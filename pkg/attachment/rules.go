// Package attachment decides which nodes may attach a volume: one node for single-node volumes,
// two at most for multi-node raw block volumes during a KubeVirt live migration.
//
// Two implementations of the same rules exist. Manager derives its view from the VolumeAttachments
// of this driver (through informer caches), the Nodes and the RDS, so that a controller restart
// loses nothing; Memory keeps the view in process memory and is for running without Kubernetes
// (csi-sanity, the demo) only. The Reconciler runs passes of the Manager on a period and on
// triggers (node events from the NodeWatcher, RDS reconnects, controller start).
package attachment

import (
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
)

// DefaultMigrationTimeout bounds how long a multi-node volume may stay attached to two nodes.
const DefaultMigrationTimeout = 5 * time.Minute

// VolumeContextMigrationTimeout is the volume context key (from the StorageClass parameter
// migrationTimeout) holding the migration timeout of a volume, as a Go duration.
const VolumeContextMigrationTimeout = "migrationTimeout"

// OutOfServiceTaint is the taint of Kubernetes' non-graceful node shutdown: a node carrying it
// is known to be down, so its attachments are released.
const OutOfServiceTaint = corev1.TaintNodeOutOfService

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
func decide(holders []Attachment, req Request, now time.Time) (already bool, err error) {
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
			"volume %s is attached to node %s; it can be attached to %s once that node detaches it, is deleted or is tainted %s",
			req.VolumeID, names(holders), req.NodeID, OutOfServiceTaint)
	case len(holders) >= 2 && Overdue(holders, req.MigrationTimeout, now):
		return false, status.Errorf(codes.FailedPrecondition,
			"volume %s has been attached to two nodes (%s) for longer than the migration timeout %v; no new attachment is accepted until one of them detaches",
			req.VolumeID, names(holders), timeoutOrDefault(req.MigrationTimeout))
	case len(holders) >= 2:
		return false, status.Errorf(codes.FailedPrecondition,
			"volume %s is already attached to two nodes (%s), the most a live migration allows", req.VolumeID, names(holders))
	}
	return false, nil
}

// Overdue reports whether a dual attachment has outlived the migration timeout: the dual
// attachment began when the later of the two holders attached.
func Overdue(holders []Attachment, timeout time.Duration, now time.Time) bool {
	if len(holders) < 2 {
		return false
	}
	return now.Sub(dualSince(holders)) > timeoutOrDefault(timeout)
}

// dualSince is when the latest holder attached.
func dualSince(holders []Attachment) time.Time {
	latest := holders[0].Since
	for _, h := range holders[1:] {
		if h.Since.After(latest) {
			latest = h.Since
		}
	}
	return latest
}

func timeoutOrDefault(t time.Duration) time.Duration {
	if t <= 0 {
		return DefaultMigrationTimeout
	}
	return t
}

// ParseMigrationTimeout reads a migration timeout from a volume context value; empty, invalid or
// non-positive values give the default.
func ParseMigrationTimeout(v string) time.Duration {
	if t, err := time.ParseDuration(v); err == nil && t > 0 {
		return t
	}
	return DefaultMigrationTimeout
}

// VolumeContextMigrationTimeoutSeconds is the earlier driver's key (3whiskeywhiskey/rds-csi) for
// the migration timeout, in integer seconds, found on the PVs it made.
const VolumeContextMigrationTimeoutSeconds = "migrationTimeoutSeconds"

// Bounds the earlier driver clamped migrationTimeoutSeconds to.
const (
	earlierMinMigrationTimeout = 30 * time.Second
	earlierMaxMigrationTimeout = time.Hour
)

// MigrationTimeoutOf returns a volume's migration timeout from its volume context (a PV's volume
// attributes): migrationTimeout when present; otherwise the earlier driver's
// migrationTimeoutSeconds, read as that driver read it (empty, invalid or non-positive gives the
// default, 5 minutes as there; others are clamped to 30 s-1 h); otherwise the default.
func MigrationTimeoutOf(vc map[string]string) time.Duration {
	if v := vc[VolumeContextMigrationTimeout]; v != "" {
		return ParseMigrationTimeout(v)
	}
	n, err := strconv.Atoi(vc[VolumeContextMigrationTimeoutSeconds])
	if err != nil || n <= 0 {
		return DefaultMigrationTimeout
	}
	return min(max(time.Duration(n)*time.Second, earlierMinMigrationTimeout), earlierMaxMigrationTimeout)
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
