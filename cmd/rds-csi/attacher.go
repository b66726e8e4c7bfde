package main

import (
	"context"
	"fmt"
	"os"

	"github.com/prometheus/client_golang/prometheus"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// newAttacher picks the attachment view. With --kubeconfig, or in a cluster, it is the
// Kubernetes-backed manager: informers on VolumeAttachments, PVs and Nodes (Ready, and so Probe,
// only once synced), a reconciler with its node watcher, triggered by RDS reconnects too.
// Without Kubernetes it is the in-memory attacher, for testing only. stop ends what was started.
func newAttacher(ctx context.Context, o *options, reg prometheus.Registerer, client *rds.Client, backend rds.Backend) (_ driver.Attacher, stop func(), _ error) {
	stop = func() {}
	if !o.controller() {
		return nil, stop, nil
	}
	cfg, err := kubeConfig(o.kubeconfig)
	if err != nil {
		return nil, stop, err
	}
	if cfg == nil {
		return attachment.NewMemory(append([]string{o.nodeID}, o.knownNodes...)...), stop, nil
	}
	cfg.UserAgent = "rds-csi/" + driver.Version()
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, stop, fmt.Errorf("kubernetes client: %w", err)
	}
	mcfg := attachment.Config{
		DriverName: o.driverName, Client: cs, Registerer: reg, Backend: backend,
		ReconcileInterval: o.reconcileInterval,
	}
	if client != nil {
		mcfg.Subscribe = client.Subscribe
	}
	m, err := attachment.NewManager(mcfg)
	if err != nil {
		return nil, stop, err
	}
	m.Start(ctx)
	klog.InfoS("Attachment manager started: publishing waits for the VolumeAttachment, PV and Node caches to sync", "driver", o.driverName, "reconcileInterval", o.reconcileInterval)
	return m, m.Stop, nil
}

// kubeConfig returns the Kubernetes client config: from --kubeconfig, in-cluster when running in
// a pod, or nil without Kubernetes.
func kubeConfig(path string) (*rest.Config, error) {
	switch {
	case path != "":
		cfg, err := clientcmd.BuildConfigFromFlags("", path)
		if err != nil {
			return nil, fmt.Errorf("--kubeconfig %s: %w", path, err)
		}
		return cfg, nil
	case os.Getenv("KUBERNETES_SERVICE_HOST") != "":
		cfg, err := rest.InClusterConfig()
		if err != nil {
			return nil, fmt.Errorf("in-cluster Kubernetes config: %w", err)
		}
		return cfg, nil
	}
	return nil, nil
}
