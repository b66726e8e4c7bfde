// Package kubeletplugin lets the driver stand in for the node-driver-registrar and livenessprobe
// sidecars: it registers the CSI plugin with the kubelet and serves the /healthz liveness endpoint.
package kubeletplugin

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"

	"google.golang.org/grpc"
	"k8s.io/klog/v2"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// SupportedVersions are the CSI versions announced to the kubelet.
var SupportedVersions = []string{"1.0.0"}

// RegistrationSocketPath is where the kubelet's plugin watcher looks for the driver's
// registration socket: <kubeletDir>/plugins_registry/<driverName>-reg.sock.
func RegistrationSocketPath(kubeletDir, driverName string) string {
	return filepath.Join(kubeletDir, "plugins_registry", driverName+"-reg.sock")
}

// CSISocketPath is the conventional CSI socket of a driver under the kubelet directory:
// <kubeletDir>/plugins/<driverName>/csi.sock.
func CSISocketPath(kubeletDir, driverName string) string {
	return filepath.Join(kubeletDir, "plugins", driverName, "csi.sock")
}

// Status is the last registration status the kubelet reported.
type Status struct {
	Notified   bool   // the kubelet has called NotifyRegistrationStatus at least once
	Registered bool   // its last call said the plugin is registered
	Error      string // and the error it gave when not
}

// Registrar serves the kubelet plugin registration API (pluginregistration.v1 Registration) on a
// unix socket in the kubelet's plugins_registry directory. The kubelet's plugin watcher finds the
// socket, calls GetInfo, connects to the announced CSI endpoint, and reports the outcome through
// NotifyRegistrationStatus. A failed registration is logged and the socket stays: the kubelet
// retries on its own (it re-registers when the socket is re-created, and on its restart).
type Registrar struct {
	registerapi.UnsafeRegistrationServer

	info     *registerapi.PluginInfo
	sockPath string
	sockInfo os.FileInfo // the socket file as created, so that Stop removes only this one
	srv      *grpc.Server
	done     chan struct{}
	serveErr error

	mu     sync.Mutex
	status Status
}

var _ registerapi.RegistrationServer = (*Registrar)(nil)

// StartRegistrar listens on RegistrationSocketPath(kubeletDir, driverName), creating the
// directory and removing a stale socket left by an earlier process, and serves the Registration
// service in the background until Stop. csiSocket is the absolute path of the CSI socket, as the
// kubelet (on the host) reaches it.
func StartRegistrar(kubeletDir, driverName, csiSocket string) (*Registrar, error) {
	if kubeletDir == "" || driverName == "" {
		return nil, errors.New("kubelet registration: kubelet directory and driver name are required")
	}
	if !filepath.IsAbs(csiSocket) {
		return nil, fmt.Errorf("kubelet registration: CSI socket %q is not an absolute path", csiSocket)
	}
	path := RegistrationSocketPath(kubeletDir, driverName)
	if err := os.MkdirAll(filepath.Dir(path), 0o750); err != nil {
		return nil, fmt.Errorf("kubelet registration: %w", err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("kubelet registration: removing stale socket %s: %w", path, err)
	}
	lis, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("kubelet registration: %w", err)
	}
	// Stop removes the file itself, and only if it is still the one created here.
	lis.(*net.UnixListener).SetUnlinkOnClose(false)
	fi, err := os.Stat(path)
	if err != nil {
		_ = lis.Close()
		return nil, fmt.Errorf("kubelet registration: %w", err)
	}
	r := &Registrar{
		info: &registerapi.PluginInfo{
			Type:              registerapi.CSIPlugin,
			Name:              driverName,
			Endpoint:          csiSocket,
			SupportedVersions: SupportedVersions,
		},
		sockPath: path,
		sockInfo: fi,
		srv:      grpc.NewServer(),
		done:     make(chan struct{}),
	}
	registerapi.RegisterRegistrationServer(r.srv, r)
	go func() {
		defer close(r.done)
		r.serveErr = r.srv.Serve(lis)
	}()
	klog.InfoS("Serving kubelet plugin registration", "socket", path, "driver", driverName, "csiEndpoint", csiSocket)
	return r, nil
}

// SocketPath is the registration socket's path.
func (r *Registrar) SocketPath() string { return r.sockPath }

// Status is the last registration status the kubelet reported.
func (r *Registrar) Status() Status {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.status
}

// GetInfo implements the Registration service: what the kubelet registers.
func (r *Registrar) GetInfo(context.Context, *registerapi.InfoRequest) (*registerapi.PluginInfo, error) {
	klog.V(2).InfoS("Kubelet asked for the plugin info", "driver", r.info.Name, "endpoint", r.info.Endpoint)
	return &registerapi.PluginInfo{
		Type:              r.info.Type,
		Name:              r.info.Name,
		Endpoint:          r.info.Endpoint,
		SupportedVersions: append([]string(nil), r.info.SupportedVersions...),
	}, nil
}

// NotifyRegistrationStatus implements the Registration service: the kubelet's verdict. A refusal
// is logged and the Registrar keeps serving, so that the kubelet can try again.
func (r *Registrar) NotifyRegistrationStatus(_ context.Context, st *registerapi.RegistrationStatus) (*registerapi.RegistrationStatusResponse, error) {
	r.mu.Lock()
	r.status = Status{Notified: true, Registered: st.GetPluginRegistered(), Error: st.GetError()}
	r.mu.Unlock()
	if st.GetPluginRegistered() {
		klog.InfoS("Registered with the kubelet", "driver", r.info.Name, "endpoint", r.info.Endpoint)
	} else {
		klog.ErrorS(errors.New(st.GetError()), "Kubelet refused the plugin registration; still serving so that it can retry",
			"driver", r.info.Name, "endpoint", r.info.Endpoint)
	}
	return &registerapi.RegistrationStatusResponse{}, nil
}

// Stop stops serving (waiting for calls under way) and removes the socket file, unless another
// process has replaced it meanwhile. It may be called more than once.
func (r *Registrar) Stop() {
	r.srv.GracefulStop()
	<-r.done
	if fi, err := os.Stat(r.sockPath); err == nil && os.SameFile(fi, r.sockInfo) {
		if err := os.Remove(r.sockPath); err != nil && !errors.Is(err, os.ErrNotExist) {
			klog.ErrorS(err, "Removing the registration socket", "socket", r.sockPath)
		}
	}
	if r.serveErr != nil && !errors.Is(r.serveErr, grpc.ErrServerStopped) {
		klog.ErrorS(r.serveErr, "Kubelet registration server failed", "socket", r.sockPath)
	}
}
