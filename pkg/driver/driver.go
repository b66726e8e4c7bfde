// Package driver implements the CSI Identity, Controller and Node services of rds-csi on top of an
// RDS backend, an NVMe initiator and the host's mount table.
package driver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/rds"
)

// DefaultDriverName is the CSI driver name, shared with earlier drivers for the same appliance so
// that existing volumes keep working.
const DefaultDriverName = "rds.csi.srvlab.io"

// Options configure a Driver. Flags of cmd/rds-csi map onto them one to one.
type Options struct {
	DriverName    string
	Version       string
	NodeID        string
	Controller    bool // serve the Controller service
	Node          bool // serve the Node service
	Endpoint      string
	DefaultParams Defaults
}

// Defaults are used when a StorageClass leaves a parameter out.
type Defaults struct {
	VolumePath  string // e.g. /storage-pool/kubernetes-volumes
	NVMeAddress string // address the nodes connect to
	NVMePort    int
	FSType      string
	VolumeSize  int64 // when CreateVolume has no capacity range
}

// Driver is one rds-csi process: identity always, controller and node as configured.
type Driver struct {
	csi.UnimplementedIdentityServer
	csi.UnimplementedControllerServer

	opts     Options
	backend  rds.Backend
	attacher Attacher
	node     *nodeService
	inflight *inflight

	mu     sync.Mutex
	server *grpc.Server
}

// New builds a driver. backend may be nil for a node-only driver; node may be nil for a
// controller-only one.
func New(opts Options, backend rds.Backend, attacher Attacher, node *NodeConfig) (*Driver, error) {
	if opts.DriverName == "" {
		opts.DriverName = DefaultDriverName
	}
	if opts.Version == "" {
		opts.Version = buildVersion()
	}
	if err := opts.DefaultParams.validate(); err != nil {
		return nil, err
	}
	d := &Driver{opts: opts, backend: backend, attacher: attacher, inflight: newInflight()}
	if opts.Controller {
		if backend == nil {
			return nil, errors.New("the controller service needs an RDS backend")
		}
		if d.attacher == nil {
			d.attacher = attachment.NewMemory(opts.NodeID)
		}
	}
	if opts.Node {
		if opts.NodeID == "" {
			return nil, errors.New("the node service needs a node ID")
		}
		if node == nil {
			return nil, errors.New("the node service needs a node configuration")
		}
		ns, err := newNodeService(opts.NodeID, *node)
		if err != nil {
			return nil, err
		}
		// The node formats a volume whose capability and context name no fs type with the same
		// default as the controller records for new volumes.
		ns.defaultFSType = opts.DefaultParams.FSType
		d.node = ns
	}
	return d, nil
}

// Version is the driver's version, from the build information.
func Version() string { return buildVersion() }

func buildVersion() string {
	if bi, ok := debug.ReadBuildInfo(); ok && bi.Main.Version != "" && bi.Main.Version != "(devel)" {
		return bi.Main.Version
	}
	return "v0.1.0-dev"
}

// Serve listens on the endpoint (unix:///path or tcp://host:port) and serves until ctx ends.
func (d *Driver) Serve(ctx context.Context) error {
	lis, err := Listen(d.opts.Endpoint)
	if err != nil {
		return err
	}
	return d.ServeListener(ctx, lis)
}

// ServeListener serves on an existing listener until ctx ends.
func (d *Driver) ServeListener(ctx context.Context, lis net.Listener) error {
	srv := grpc.NewServer(grpc.UnaryInterceptor(logInterceptor))
	csi.RegisterIdentityServer(srv, d)
	if d.opts.Controller {
		csi.RegisterControllerServer(srv, d)
	}
	// The node service is its own csi.NodeServer. Without one (a controller-only process) the
	// Node service is not registered, and gRPC answers its calls Unimplemented.
	if d.node != nil {
		csi.RegisterNodeServer(srv, d.node)
	}
	d.mu.Lock()
	d.server = srv
	d.mu.Unlock()
	go func() {
		<-ctx.Done()
		srv.GracefulStop()
	}()
	klog.InfoS("Serving CSI", "endpoint", lis.Addr().String(), "driver", d.opts.DriverName, "controller", d.opts.Controller, "node", d.opts.Node)
	return srv.Serve(lis)
}

// Listen opens a CSI endpoint; a stale unix socket file is removed first.
func Listen(endpoint string) (net.Listener, error) {
	u, err := url.Parse(endpoint)
	if err != nil {
		return nil, fmt.Errorf("endpoint %q: %w", endpoint, err)
	}
	switch u.Scheme {
	case "unix":
		p := u.Path
		if p == "" {
			p = u.Host
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
			return nil, err
		}
		if err := os.Remove(p); err != nil && !os.IsNotExist(err) {
			return nil, fmt.Errorf("removing stale socket %s: %w", p, err)
		}
		return net.Listen("unix", p)
	case "tcp":
		return net.Listen("tcp", u.Host)
	default:
		return nil, fmt.Errorf("endpoint %q: scheme must be unix or tcp", endpoint)
	}
}

func logInterceptor(ctx context.Context, req any, info *grpc.UnaryServerInfo, handler grpc.UnaryHandler) (any, error) {
	start := time.Now()
	resp, err := handler(ctx, req)
	if err != nil {
		klog.ErrorS(err, "CSI call failed", "method", info.FullMethod, "duration", time.Since(start))
	} else {
		klog.V(4).InfoS("CSI call", "method", info.FullMethod, "duration", time.Since(start))
	}
	return resp, err
}
