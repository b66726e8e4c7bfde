package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"
	registerapi "k8s.io/kubelet/pkg/apis/pluginregistration/v1"
)

// freeAddress is a loopback address with a port free a moment ago.
func freeAddress(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func healthz(addr string) int {
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get("http://" + addr + "/healthz")
	if err != nil {
		return 0
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

// startRun runs the process as main does, until the returned stop is called.
func startRun(t *testing.T, args ...string) (stop func() error) {
	t.Helper()
	o, err := parseArgs(args...)
	if err != nil {
		t.Fatalf("flags %q refused: %v", args, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, o) }()
	stopped := false
	stop = func() error {
		if stopped {
			return nil
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			return err
		case <-time.After(30 * time.Second):
			t.Fatal("run did not return after cancel")
			return nil
		}
	}
	t.Cleanup(func() { _ = stop() })
	return stop
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func dial(t *testing.T, target string) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(target, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return conn
}

// TestNodeRegistersWithKubelet runs the node plugin with the flags the chart passes and does what
// the kubelet does: finds the registration socket, asks for the plugin info, connects to the CSI
// endpoint announced there and calls NodeGetInfo, then reports the registration. /healthz answers
// 200 while the driver serves; at shutdown it stops and the registration socket is removed.
func TestNodeRegistersWithKubelet(t *testing.T) {
	kubeletDir := t.TempDir()
	const driverName = "rds.csi.srvlab.io"
	csiSock := filepath.Join(kubeletDir, "plugins", driverName, "csi.sock")
	regSock := filepath.Join(kubeletDir, "plugins_registry", driverName+"-reg.sock")
	health := freeAddress(t)
	stop := startRun(t, with(nodeArgs, "--driver-name", driverName, "--endpoint", "unix://"+csiSock,
		"--kubelet-dir", kubeletDir, "--health-address", health, "--node-state-dir", filepath.Join(kubeletDir, "state"))...)

	waitFor(t, "the registration socket", func() bool { _, err := os.Stat(regSock); return err == nil })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	kubelet := registerapi.NewRegistrationClient(dial(t, "unix://"+regSock))
	info, err := kubelet.GetInfo(ctx, &registerapi.InfoRequest{})
	if err != nil {
		t.Fatalf("GetInfo: %v", err)
	}
	if info.GetType() != registerapi.CSIPlugin || info.GetName() != driverName || info.GetEndpoint() != csiSock {
		t.Fatalf("GetInfo = %+v, want a CSIPlugin %s at %s", info, driverName, csiSock)
	}
	node := csi.NewNodeClient(dial(t, "unix://"+info.GetEndpoint()))
	ni, err := node.NodeGetInfo(ctx, &csi.NodeGetInfoRequest{})
	if err != nil || ni.GetNodeId() != "worker-1" {
		t.Fatalf("NodeGetInfo on the announced endpoint: %v, %v", ni, err)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: false, Error: "test refusal"}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(false): %v", err)
	}
	if _, err := kubelet.NotifyRegistrationStatus(ctx, &registerapi.RegistrationStatus{PluginRegistered: true}); err != nil {
		t.Fatalf("NotifyRegistrationStatus(true) after a refusal: %v", err)
	}
	waitFor(t, "/healthz 200", func() bool { return healthz(health) == http.StatusOK })

	if err := stop(); err != nil {
		t.Fatalf("run: %v", err)
	}
	if _, err := os.Lstat(regSock); !os.IsNotExist(err) {
		t.Errorf("registration socket left after shutdown: %v", err)
	}
	if code := healthz(health); code == http.StatusOK {
		t.Error("/healthz still 200 after shutdown")
	}
}

// TestControllerAliveWhileRDSDown: a controller whose RDS does not answer is not ready (Probe)
// but alive (/healthz 200), so that a liveness probe does not restart it during an RDS outage.
func TestControllerAliveWhileRDSDown(t *testing.T) {
	dir := t.TempDir()
	_, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(key, "")
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("KUBERNETES_SERVICE_HOST", "") // never the in-cluster config
	csiSock := filepath.Join(dir, "csi.sock")
	health, rdsDown := freeAddress(t), freeAddress(t) // nothing listens on rdsDown
	startRun(t, "--mode", "controller", "--endpoint", "unix://"+csiSock, "--rds-address", rdsDown,
		"--rds-key-file", keyFile, "--rds-insecure-skip-host-key-verification", "--health-address", health)

	waitFor(t, "/healthz 200", func() bool { return healthz(health) == http.StatusOK })
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	resp, err := csi.NewIdentityClient(dial(t, "unix://"+csiSock)).Probe(ctx, &csi.ProbeRequest{})
	if err != nil {
		t.Fatalf("Probe: %v", err)
	}
	if resp.GetReady().GetValue() {
		t.Fatal("Probe ready with the RDS down")
	}
	if code := healthz(health); code != http.StatusOK {
		t.Fatalf("/healthz %d with the RDS down, want 200", code)
	}
}
