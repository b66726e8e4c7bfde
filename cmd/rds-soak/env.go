//go:build linux

package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/credentials/insecure"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

const (
	localNode = "soak-node-0" // the driver's own node: volumes are staged here
	gib       = int64(1) << 30
)

// nodes are the node IDs volumes are published to; only the first is this machine.
var nodes = []string{localNode, "soak-node-1", "soak-node-2"}

// env is the simulator (in process, so that faults are method calls and its state can be read
// directly) and the driver (a child process, so that it can be kill -9ed like a real pod).
type env struct {
	dir, data, sock string
	sim             *rdssim.Server
	drv             *driverProc
	conn            *grpc.ClientConn
	id              csi.IdentityClient
	ctl             csi.ControllerClient
	node            csi.NodeClient
	simLog          *os.File
}

func newEnv(ctx context.Context, c *config, onCrash func(string)) (_ *env, err error) {
	dir := c.workDir
	if dir == "" {
		if dir, err = os.MkdirTemp("", "rds-soak-"); err != nil {
			return nil, err
		}
	} else if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, err
	}
	e := &env{dir: dir, data: filepath.Join(dir, "rds-data"), sock: filepath.Join(dir, "csi.sock")}
	defer func() {
		if err != nil {
			e.close()
		}
	}()
	// The simulator logs through klog; its lines go to a file so that the report stays readable.
	if e.simLog, err = os.Create(filepath.Join(dir, "rdssim.log")); err != nil {
		return nil, err
	}
	klog.LogToStderr(false)
	klog.SetOutput(e.simLog)

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "rds-soak")
	if err != nil {
		return nil, err
	}
	keyFile := filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	clientPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return nil, err
	}
	e.sim, err = rdssim.New(rdssim.Config{Listen: "127.0.0.1:0", DataDir: e.data, AuthorizedKeys: []ssh.PublicKey{clientPub},
		PoolSize: 1 << 40, WrapWidth: 80})
	if err != nil {
		return nil, err
	}
	if err := e.sim.Start(); err != nil {
		return nil, err
	}

	bin := c.driverBin
	if bin == "" {
		bin = filepath.Join(dir, "rds-csi")
		fmt.Printf("rds-soak: building the driver (go build -o %s ./cmd/rds-csi)\n", bin)
		out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, "./cmd/rds-csi").CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("building rds-csi (run from the repository, or give --driver): %v\n%s", err, out)
		}
	}
	hostKey := strings.TrimSpace(string(ssh.MarshalAuthorizedKey(e.sim.HostPublicKey())))
	args := []string{"--mode", "all", "--endpoint", "unix://" + e.sock, "--node-id", localNode,
		"--rds-address", e.sim.Addr(), "--rds-key-file", keyFile, "--rds-host-key", hostKey,
		"--rds-command-timeout", c.rdsTimeout.String(), "--rds-keepalive-interval", "2s",
		"--nvme-backend", "loop", "--loop-root", e.data, "--node-state-dir", filepath.Join(dir, "node-state"), "--v", "2"}
	for _, n := range nodes[1:] {
		args = append(args, "--known-node", n)
	}
	e.drv = &driverProc{bin: bin, args: args, log: filepath.Join(dir, "rds-csi.log"), onCrash: onCrash}
	if err := e.drv.start(); err != nil {
		return nil, err
	}
	// A short reconnect backoff: after a kill -9 the new process is dialled within a fraction of
	// a second, as the sidecars' connection would be; gRPC's default backoff grows to 2 minutes.
	e.conn, err = grpc.NewClient("unix://"+e.sock, grpc.WithTransportCredentials(insecure.NewCredentials()),
		grpc.WithConnectParams(grpc.ConnectParams{Backoff: backoff.Config{BaseDelay: 50 * time.Millisecond, Multiplier: 1.6,
			MaxDelay: 300 * time.Millisecond}, MinConnectTimeout: 2 * time.Second}))
	if err != nil {
		return nil, err
	}
	e.id, e.ctl, e.node = csi.NewIdentityClient(e.conn), csi.NewControllerClient(e.conn), csi.NewNodeClient(e.conn)
	return e, nil
}

// awaitReady polls Probe (the CSI way to wait for a driver) until it answers ready: the driver
// serves and is connected to the RDS.
func (e *env) awaitReady(ctx context.Context, limit time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for {
		pctx, pcancel := context.WithTimeout(ctx, 2*time.Second)
		r, err := e.id.Probe(pctx, &csi.ProbeRequest{})
		pcancel()
		if err == nil && r.GetReady().GetValue() {
			return nil
		}
		if err != nil {
			last = err
		} else {
			last = errors.New("probe: not ready")
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%v (last: %v)", ctx.Err(), last)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func (e *env) close() {
	if e.conn != nil {
		_ = e.conn.Close()
	}
	e.drv.stop()
	if e.sim != nil {
		_ = e.sim.Close()
	}
	klog.Flush()
	if e.simLog != nil {
		_ = e.simLog.Close()
	}
}

// driverProc is the rds-csi child process. It runs in its own process group so that kill -9
// takes its children (mkfs, mount, losetup) too, as killing a container does.
type driverProc struct {
	bin, log string
	args     []string
	onCrash  func(detail string) // an exit nobody asked for

	mu       sync.Mutex
	cmd      *exec.Cmd
	exited   chan struct{}
	expected bool // the current process is being stopped on purpose
	starts   int
}

func (p *driverProc) start() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	f, err := os.OpenFile(p.log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	p.starts++
	fmt.Fprintf(f, "\n===== rds-soak: start %d of rds-csi at %s =====\n", p.starts, time.Now().Format(time.RFC3339Nano))
	cmd := exec.Command(p.bin, p.args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return fmt.Errorf("starting rds-csi: %w", err)
	}
	exited := make(chan struct{})
	p.cmd, p.exited, p.expected = cmd, exited, false
	go func() {
		err := cmd.Wait()
		_ = f.Close()
		p.mu.Lock()
		expected := p.expected || p.cmd != cmd
		p.mu.Unlock()
		close(exited)
		if !expected && p.onCrash != nil {
			p.onCrash(fmt.Sprintf("rds-csi exited by itself (%v); see %s", err, p.log))
		}
	}()
	return nil
}

// kill9 kills the driver's process group with SIGKILL and waits for the process to be gone.
func (p *driverProc) kill9() {
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.expected = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-exited
}

// running reports whether the current process is alive.
func (p *driverProc) running() bool {
	p.mu.Lock()
	exited := p.exited
	p.mu.Unlock()
	if exited == nil {
		return false
	}
	select {
	case <-exited:
		return false
	default:
		return true
	}
}

func (p *driverProc) stop() {
	if p == nil {
		return
	}
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.expected = true
	p.mu.Unlock()
	if cmd == nil {
		return
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(10 * time.Second):
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
}
