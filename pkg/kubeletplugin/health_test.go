package kubeletplugin

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
)

// identity is a CSI Identity server whose RDS is down: Probe fails, GetPluginInfo answers.
type identity struct {
	csi.UnimplementedIdentityServer
}

func (identity) GetPluginInfo(context.Context, *csi.GetPluginInfoRequest) (*csi.GetPluginInfoResponse, error) {
	return &csi.GetPluginInfoResponse{Name: "d.example.com", VendorVersion: "test"}, nil
}

func (identity) Probe(context.Context, *csi.ProbeRequest) (*csi.ProbeResponse, error) {
	return nil, errors.New("RDS unreachable")
}

func getHealthz(t *testing.T, addr net.Addr) (int, string) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr.String() + "/healthz")
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestHealthz(t *testing.T) {
	for _, network := range []string{"unix", "tcp"} {
		t.Run(network, func(t *testing.T) {
			addr := "127.0.0.1:0"
			if network == "unix" {
				addr = filepath.Join(t.TempDir(), "csi.sock")
			}
			lis, err := net.Listen(network, addr)
			if err != nil {
				t.Fatal(err)
			}
			checker, err := NewCSIChecker(lis.Addr())
			if err != nil {
				t.Fatal(err)
			}
			defer checker.Close()
			h, err := ServeHealth("127.0.0.1:0", checker.Check)
			if err != nil {
				t.Fatal(err)
			}
			defer h.Close()

			if code, body := getHealthz(t, h.Addr()); code != http.StatusServiceUnavailable {
				t.Fatalf("before the CSI server starts: %d %q, want 503", code, body)
			}

			srv := grpc.NewServer()
			csi.RegisterIdentityServer(srv, identity{})
			done := make(chan error, 1)
			checker.SetServing(true)
			go func() { done <- srv.Serve(lis) }()
			// Serving, with the RDS down (Probe fails): alive all the same.
			if code, body := getHealthz(t, h.Addr()); code != http.StatusOK || body != "ok" {
				t.Fatalf("while serving: %d %q, want 200 \"ok\"", code, body)
			}
			resp, err := http.Post("http://"+h.Addr().String()+"/healthz", "text/plain", nil)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusMethodNotAllowed {
				t.Errorf("POST /healthz: %d, want 405", resp.StatusCode)
			}

			// The CSI server stops without the flag being cleared (a crash of the gRPC server):
			// the check itself finds out.
			srv.Stop()
			<-done
			if code, body := getHealthz(t, h.Addr()); code == http.StatusOK {
				t.Fatalf("after the CSI server stopped: %d %q, want not 200", code, body)
			}
			checker.SetServing(false)
			if code, body := getHealthz(t, h.Addr()); code != http.StatusServiceUnavailable || !strings.Contains(body, "not serving") {
				t.Fatalf("after stop: %d %q, want 503 not serving", code, body)
			}
		})
	}
}

func TestServeHealthBadAddress(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if h, err := ServeHealth(busy.Addr().String(), func(context.Context) error { return nil }); err == nil {
		h.Close()
		t.Fatal("a busy address was accepted")
	}
}
