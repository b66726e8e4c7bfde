package kubeletplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"
)

// DefaultCheckTimeout bounds one liveness check when the request carries no shorter deadline.
const DefaultCheckTimeout = 5 * time.Second

// ErrNotServing is the liveness failure before the CSI server starts and after it stops.
var ErrNotServing = errors.New("the CSI gRPC server is not serving")

// CSIChecker tells whether the driver's own CSI gRPC server answers. It calls
// Identity.GetPluginInfo, which needs neither the RDS nor Kubernetes: an RDS outage must not make
// a liveness probe restart the driver (readiness is Probe's business).
type CSIChecker struct {
	conn    *grpc.ClientConn
	ident   csi.IdentityClient
	serving atomic.Bool
}

// NewCSIChecker connects (lazily) to the CSI server listening on addr, the address of the
// driver's listener (unix or tcp). It reports not serving until SetServing(true).
func NewCSIChecker(addr net.Addr) (*CSIChecker, error) {
	network, address := addr.Network(), addr.String()
	dial := func(ctx context.Context, _ string) (net.Conn, error) {
		return (&net.Dialer{}).DialContext(ctx, network, address)
	}
	conn, err := grpc.NewClient("passthrough:///csi",
		grpc.WithTransportCredentials(insecure.NewCredentials()), grpc.WithContextDialer(dial))
	if err != nil {
		return nil, fmt.Errorf("health check client: %w", err)
	}
	return &CSIChecker{conn: conn, ident: csi.NewIdentityClient(conn)}, nil
}

// SetServing records whether the CSI server has been started (true) or has stopped (false).
func (c *CSIChecker) SetServing(v bool) { c.serving.Store(v) }

// Check returns nil when the CSI server is started and answers GetPluginInfo.
func (c *CSIChecker) Check(ctx context.Context) error {
	if !c.serving.Load() {
		return ErrNotServing
	}
	if _, err := c.ident.GetPluginInfo(ctx, &csi.GetPluginInfoRequest{}); err != nil {
		return fmt.Errorf("CSI GetPluginInfo: %w", err)
	}
	return nil
}

// Close releases the client connection.
func (c *CSIChecker) Close() error { return c.conn.Close() }

// HealthServer serves GET /healthz: 200 "ok" while check passes, 503 with the reason otherwise.
type HealthServer struct {
	srv  *http.Server
	lis  net.Listener
	done chan struct{}
}

// ServeHealth listens on addr (host:port) at once, so that a bad or busy address fails the start,
// and serves /healthz in the background until Close.
func ServeHealth(addr string, check func(context.Context) error) (*HealthServer, error) {
	lis, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("health server: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, req *http.Request) {
		ctx, cancel := context.WithTimeout(req.Context(), DefaultCheckTimeout)
		defer cancel()
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		if err := check(ctx); err != nil {
			klog.V(2).InfoS("Liveness check failed", "err", err)
			w.WriteHeader(http.StatusServiceUnavailable)
			fmt.Fprintf(w, "not serving: %v\n", err)
			return
		}
		fmt.Fprint(w, "ok")
	})
	h := &HealthServer{
		srv:  &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second},
		lis:  lis,
		done: make(chan struct{}),
	}
	go func() {
		defer close(h.done)
		if err := h.srv.Serve(lis); err != nil && !errors.Is(err, http.ErrServerClosed) {
			klog.ErrorS(err, "Health server failed", "address", lis.Addr().String())
		}
	}()
	klog.InfoS("Serving liveness endpoint", "address", lis.Addr().String(), "path", "/healthz")
	return h, nil
}

// Addr is the address the server listens on (with the port chosen when addr had port 0).
func (h *HealthServer) Addr() net.Addr { return h.lis.Addr() }

// Close stops the server at once.
func (h *HealthServer) Close() error {
	err := h.srv.Close()
	<-h.done
	return err
}
