package driver

import (
	"context"

	"github.com/srvlab/rds-csi/pkg/attachment"
)

// Attacher decides and records which nodes hold a volume. ControllerPublish and Unpublish go
// through it; the Kubernetes-backed implementation derives its view from VolumeAttachments, the
// in-memory one serves csi-sanity and the demo.
type Attacher interface {
	// Attach records the attachment, or refuses it with a gRPC status (FailedPrecondition naming
	// the holder, AlreadyExists for an incompatible republish, NotFound for an unknown node).
	Attach(ctx context.Context, req attachment.Request) error
	// Detach forgets an attachment; node "" detaches the volume from every node.
	Detach(ctx context.Context, volumeID, nodeID string) error
	// PublishedNodes lists the nodes that hold a volume.
	PublishedNodes(volumeID string) []string
	// NodeExists reports whether a node can take attachments.
	NodeExists(ctx context.Context, nodeID string) (bool, error)
	// Ready is false until the view is complete (e.g. informer caches synced).
	Ready() bool
}

var (
	_ Attacher = (*attachment.Memory)(nil)
	_ Attacher = (*attachment.Manager)(nil)
)
