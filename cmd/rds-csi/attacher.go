package main

import (
	"context"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
)

// newAttacher picks the attachment view: in-memory without Kubernetes (testing only).
func newAttacher(_ context.Context, o *options, _ prometheus.Registerer) (driver.Attacher, error) {
	if !o.controller() {
		return nil, nil
	}
	m := attachment.NewMemory(append([]string{o.nodeID}, o.knownNodes...)...)
	return m, nil
}
