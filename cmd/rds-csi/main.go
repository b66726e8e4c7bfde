// Command rds-csi is the CSI driver for MikroTik ROSE Data Server: controller, node, or both;
// `rds-csi doctor` (doctor.go) checks the RDS against Kubernetes.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/kubeletplugin"
	"github.com/srvlab/rds-csi/pkg/rds"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "doctor" {
		os.Exit(doctorMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	klog.InitFlags(nil)
	var o options
	o.register(flag.CommandLine)
	flag.Parse()
	if o.version {
		fmt.Println(driver.Version())
		return
	}
	if err := o.validate(); err != nil {
		klog.ErrorS(err, "Invalid flags")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, &o); err != nil {
		klog.ErrorS(err, "rds-csi stopped")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(ctx context.Context, o *options) error {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	var backend rds.Backend
	var client *rds.Client
	if o.controller() {
		var err error
		if client, err = newRDSClient(o, reg); err != nil {
			return err
		}
		// Connect in the background: an RDS that is down at start must not stop the driver from
		// serving Probe (not ready) and reconnecting by itself.
		client.Start()
		defer client.Close()
		backend = rds.NewStorage(client, rds.WithCopyTimeout(o.rdsCopyTimeout))
	}
	attacher, stopAttacher, err := newAttacher(ctx, o, reg, client, backend)
	if err != nil {
		return err
	}
	defer stopAttacher()
	var nodeCfg *driver.NodeConfig
	if o.node() {
		if nodeCfg, err = newNodeConfig(o); err != nil {
			return err
		}
	}
	d, err := driver.New(driver.Options{
		DriverName: o.driverName, NodeID: o.nodeID, Endpoint: o.endpoint,
		Controller: o.controller(), Node: o.node(),
		DefaultParams: driver.Defaults{VolumePath: o.volumePath, NVMeAddress: o.nvmeAddress, NVMePort: o.nvmePort, FSType: o.fsType},
	}, backend, attacher, nodeCfg)
	if err != nil {
		return err
	}
	if o.metricsAddress != "" {
		srv := &http.Server{Addr: o.metricsAddress, Handler: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), ReadHeaderTimeout: 10 * time.Second}
		go func() {
			if err := srv.ListenAndServe(); err != nil && !errors.Is(err, http.ErrServerClosed) {
				klog.ErrorS(err, "Metrics server failed")
			}
		}()
		defer srv.Close()
	}
	return serve(ctx, o, d)
}

// serve opens the CSI endpoint, starts what goes with it (the /healthz endpoint, the kubelet
// registration), serves until ctx ends, then stops them: /healthz fails from the moment the CSI
// server stops, and the registration socket is removed.
func serve(ctx context.Context, o *options, d *driver.Driver) error {
	lis, err := driver.Listen(o.endpoint)
	if err != nil {
		return err
	}
	defer lis.Close() // when something below fails; the gRPC server closes it otherwise
	var checker *kubeletplugin.CSIChecker
	if o.healthAddress != "" {
		if checker, err = kubeletplugin.NewCSIChecker(lis.Addr()); err != nil {
			return err
		}
		defer checker.Close()
		h, err := kubeletplugin.ServeHealth(o.healthAddress, checker.Check)
		if err != nil {
			return err
		}
		defer h.Close()
	}
	if o.kubeletDir != "" {
		// validate made sure the endpoint is a unix socket under the kubelet directory. The CSI
		// listener exists already: a kubelet that connects at once waits in its backlog.
		sock, _ := unixSocketPath(o.endpoint)
		reg, err := kubeletplugin.StartRegistrar(o.kubeletDir, o.driverName, sock)
		if err != nil {
			return err
		}
		defer reg.Stop()
	}
	if checker != nil {
		checker.SetServing(true)
		defer checker.SetServing(false)
	}
	return d.ServeListener(ctx, lis)
}

func newRDSClient(o *options, reg prometheus.Registerer) (*rds.Client, error) {
	signer, err := rds.LoadSigner(o.rdsKeyFile)
	if err != nil {
		return nil, err
	}
	cfg := rds.Config{
		Address: o.rdsAddress, User: o.rdsUser, Signer: signer,
		KnownHostsFile: o.rdsKnownHosts, InsecureSkipHostKeyVerification: o.rdsInsecure,
		MaxSessions: o.rdsMaxSessions, CommandTimeout: o.rdsCommandTimeout, KeepaliveInterval: o.rdsKeepalive,
		HostKey: o.hostKey, Registerer: reg,
	}
	return rds.NewClient(cfg)
}
