package main

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

type demoConfig struct {
	driverBin, simBin string
	keep              bool
}

// proc is a child process whose output goes to a log file in the work directory.
type proc struct {
	name   string
	cmd    *exec.Cmd
	log    string
	exited chan struct{} // closed once the process has been waited for
}

func startProc(dir, name, bin string, args ...string) (*proc, error) {
	logPath := filepath.Join(dir, name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = f, f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("starting %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, exited: make(chan struct{})}
	go func() { _ = cmd.Wait(); _ = f.Close(); close(p.exited) }()
	return p, nil
}

func (p *proc) stop() {
	if p == nil || p.cmd.Process == nil {
		return
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-p.exited:
	case <-time.After(5 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.exited
	}
}

func freePort() (int, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port, nil
}

// writeKeys writes a client key pair, the authorized_keys file for the simulator and, once the
// simulator has written its host key, a known_hosts file for the driver.
func writeClientKey(dir string) (keyFile, authFile string, err error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return "", "", err
	}
	block, err := ssh.MarshalPrivateKey(priv, "rds-demo")
	if err != nil {
		return "", "", err
	}
	keyFile = filepath.Join(dir, "id_ed25519")
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(block), 0o600); err != nil {
		return "", "", err
	}
	sshPub, err := ssh.NewPublicKey(pub)
	if err != nil {
		return "", "", err
	}
	authFile = filepath.Join(dir, "authorized_keys")
	return keyFile, authFile, os.WriteFile(authFile, ssh.MarshalAuthorizedKey(sshPub), 0o600)
}

func writeKnownHosts(ctx context.Context, dir, hostKeyFile, addr string) (string, error) {
	var signer ssh.Signer
	for {
		b, err := os.ReadFile(hostKeyFile)
		if err == nil {
			if signer, err = ssh.ParsePrivateKey(b); err == nil {
				break
			}
		}
		select {
		case <-ctx.Done():
			return "", fmt.Errorf("simulator host key never appeared: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	kh := filepath.Join(dir, "known_hosts")
	line := knownhosts.Line([]string{knownhosts.Normalize(addr)}, signer.PublicKey()) + "\n"
	return kh, os.WriteFile(kh, []byte(line), 0o600)
}

func waitTCP(ctx context.Context, addr string) error {
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			_ = c.Close()
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s never accepted connections: %w", addr, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}
