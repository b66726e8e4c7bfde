package kubeletplugin

import (
	"context"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// kubeletClient connects to a registration socket the way the kubelet's plugin watcher does: a
// gRPC client over the unix socket it found in plugins_registry.
func kubeletClient(t *testing.T, sock string) registerapi.RegistrationClient {
	t.Helper()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return registerapi.NewRegistrationClient(conn)
}

func TestRegistrarAsKubelet(t *testing.T) {
	kubeletDir := t.TempDir() // plugins_registry does not exist yet: the registrar creates it
	const driver = "rds.csi.srvlab.io"
	csiSock := CSISocketPath(kubeletDir, driver)

	// A stale socket file from an earlier process is replaced.
	sock := RegistrationSocketPath(kubeletDir, driver)
	if want := filepath.Join(kubeletDir, "plugins_registry", "rds.csi.srvlab.io-reg.sock"); sock != want {
		t.Fatalf("registration socket %s, want %s", sock, want)
	}
	if err := os.MkdirAll(filepath.Dir(sock), 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(sock, []byte("stale"), 0o600); err != nil {
		t.Fatal(err)
	}

	r, err := StartRegistrar(kubeletDir, driver, csiSock)
	if err != nil {
		t.Fatal(err)
	}
	stopped := false
	t.Cleanup(func() {
		if !stopped {
			r.Stop()
		}
	})
	if fi, err := os.Stat(sock); err != nil || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("registration socket %s: %v, mode %v", sock, err, fi.Mode())
	}

	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	kubelet := kubeletClient(t, sock)

	info, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != driver || info.GetEndpoint() != csiSock ||
		!reflect.DeepEqual(info.GetSupportedVersions(), []string{"1.0.0"}) {
		t.Fatalf("GetInfo = %+v, want type %s, name %s, endpoint %s, versions [1.0.0]", info, registerapi.CSIPlugin, driver, csiSock)
	}
	if st := r.Status(); st.Notified {
		t.Fatalf("status before any notification: %+v", st)
	}

	// A refusal is recorded and the registrar goes on serving: the kubelet retries.
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "endpoint unreachable"}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(false): %v", err)
	}
	if st := r.Status(); !st.Notified || st.Registered || st.Error != "endpoint unreachable" {
		t.Fatalf("status after a refusal: %+v", st)
	}
	if _, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		t.Fatalf("GetInfo after a refusal (the kubelet's retry): %v", err)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(true): %v", err)
	}
	if st := r.Status(); !st.Notified || !st.Registered || st.Error != "" {
		t.Fatalf("status after registration: %+v", st)
	}

	r.Stop()
	stopped = true
	if _, err := os.Lstat(sock); !os.IsNotExist(err) {
		t.Fatalf("registration socket left after Stop: %v", err)
	}
	r.Stop() // idempotent
	short, cancelShort := context.WithTimeout(context.Background(), time.Second)
	defer cancelShort()
	if _, err := kubelet.GetInfo(short, &registerapi.InfoRequest{}); err == nil {
		t.Fatal("GetInfo answered after Stop")
	}
}

// TestRegistrarStopKeepsReplacedSocket: a process that starts while this one is stopping (a
// DaemonSet pod replaced) has created its own socket; stopping the old one must not remove it.
func TestRegistrarStopKeepsReplacedSocket(t *testing.T) {
	kubeletDir := t.TempDir()
	old, err := StartRegistrar(kubeletDir, "d.example.com", CSISocketPath(kubeletDir, "d.example.com"))
	if err != nil {
		t.Fatal(err)
	}
	cur, err := StartRegistrar(kubeletDir, "d.example.com", CSISocketPath(kubeletDir, "d.example.com"))
	if err != nil {
		old.Stop()
		t.Fatal(err)
	}
	defer cur.Stop()
	old.Stop()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := kubeletClient(t, cur.SocketPath()).GetInfo(ctx, &registerapi.InfoRequest{}); err != nil {
		t.Fatalf("the newer registrar's socket is gone after the older one stopped: %v", err)
	}
}

func TestStartRegistrarRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, args := range map[string][3]string{
		"relative CSI socket": {dir, "d.example.com", "plugins/d/csi.sock"},
		"no kubelet dir":      {"", "d.example.com", "/var/lib/kubelet/plugins/d/csi.sock"},
		"no driver name":      {dir, "", "/var/lib/kubelet/plugins/d/csi.sock"},
	} {
		if r, err := StartRegistrar(args[0], args[1], args[2]); err == nil {
			r.Stop()
			t.Errorf("%s: accepted", name)
		}
	}
}
