package main

import (
	"fmt"
	"os"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// sim is an in-process simulator with a client key it accepts.
type sim struct {
	*rdssim.Server
	signer ssh.Signer
	dir    string
}

func startSim() (*sim, error) {
	dir, err := os.MkdirTemp("", "rds-bench-")
	if err != nil {
		return nil, err
	}
	client, err := rdssim.GenerateSigner()
	if err != nil {
		return nil, err
	}
	s, err := rdssim.New(rdssim.Config{Listen: "127.0.0.1:0", DataDir: dir, AuthorizedKeys: []ssh.PublicKey{client.PublicKey()},
		WrapWidth: 80, PoolSize: 1 << 50})
	if err != nil {
		return nil, err
	}
	if err := s.Start(); err != nil {
		return nil, err
	}
	return &sim{Server: s, signer: client, dir: dir}, nil
}

func (s *sim) close() {
	_ = s.Close()
	_ = os.RemoveAll(s.dir)
}

func (s *sim) clientConfig(maxSessions int) rds.Config {
	return rds.Config{Address: s.Addr(), User: "admin", Signer: s.signer, HostKey: s.HostPublicKey(),
		MaxSessions: maxSessions, BackoffInitial: 20 * time.Millisecond, BackoffMax: 500 * time.Millisecond,
		BreakerCooldown: 200 * time.Millisecond, KeepaliveInterval: time.Minute}
}

func (s *sim) newClient(maxSessions int) (*rds.Client, error) {
	c, err := rds.NewClient(s.clientConfig(maxSessions))
	if err != nil {
		return nil, fmt.Errorf("client: %w", err)
	}
	c.Start()
	return c, nil
}
