package rdssim

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestServer is a running simulator for tests and benchmarks of other packages, with a
// client key it accepts. The embedded *Server gives Addr(), DataDir(),
// HostPath() and every fault method.
type TestServer struct {
	*Server
	Signer  ssh.Signer    // client private key accepted by the server
	HostKey ssh.PublicKey // server host key, to pin
	User    string        // user name for ClientConfig ("admin")
}

// TB is the part of testing.TB that StartForTest uses. Taking it instead of testing.TB keeps
// the testing package out of the binaries that link the simulator.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	TempDir() string
	Cleanup(func())
}

// StartForTest starts a simulator as StartLocal does, in a temporary data dir of the test; the
// server is closed by t.Cleanup.
func StartForTest(t TB, opts ...func(*Config)) *TestServer {
	t.Helper()
	ts, err := StartLocal(t.TempDir(), opts...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	t.Cleanup(func() { _ = ts.Close() })
	return ts
}

// StartLocal starts a simulator on 127.0.0.1:0 with its data in dir, fresh ed25519 host and
// client keys and a wrap width of 80 columns; opts can change the Config before it starts. The
// caller closes it (benchmarks, which have no testing.TB).
func StartLocal(dir string, opts ...func(*Config)) (*TestServer, error) {
	host, err := GenerateSigner()
	if err != nil {
		return nil, fmt.Errorf("rdssim: host key: %w", err)
	}
	client, err := GenerateSigner()
	if err != nil {
		return nil, fmt.Errorf("rdssim: client key: %w", err)
	}
	cfg := Config{
		Listen:         "127.0.0.1:0",
		DataDir:        dir,
		HostKey:        host,
		AuthorizedKeys: []ssh.PublicKey{client.PublicKey()},
		WrapWidth:      80,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		return nil, fmt.Errorf("rdssim: New: %w", err)
	}
	if err := s.Start(); err != nil {
		return nil, fmt.Errorf("rdssim: Start: %w", err)
	}
	user := cfg.User
	if user == "" {
		user = "admin"
	}
	return &TestServer{Server: s, Signer: client, HostKey: s.HostPublicKey(), User: user}, nil
}

// ClientConfig is an ssh.ClientConfig that pins the host key and logs in
// with the test client key.
func (ts *TestServer) ClientConfig() *ssh.ClientConfig {
	return &ssh.ClientConfig{
		User:            ts.User,
		Auth:            []ssh.AuthMethod{ssh.PublicKeys(ts.Signer)},
		HostKeyCallback: ssh.FixedHostKey(ts.HostKey),
		Timeout:         10 * time.Second,
	}
}

// Dial opens a new SSH connection to the simulator.
func (ts *TestServer) Dial() (*ssh.Client, error) {
	return ssh.Dial("tcp", ts.Addr(), ts.ClientConfig())
}

// Result is the outcome of one command run through Exec.
type Result struct {
	Stdout, Stderr string
	ExitStatus     int
}

// Exec runs one command on a new connection and returns its output. err is
// only set for transport problems (not for failed commands).
func (ts *TestServer) Exec(ctx context.Context, cmd string) (Result, error) {
	var d net.Dialer
	nc, err := d.DialContext(ctx, "tcp", ts.Addr())
	if err != nil {
		return Result{}, err
	}
	stop := context.AfterFunc(ctx, func() { _ = nc.Close() })
	defer stop()
	sc, chans, reqs, err := ssh.NewClientConn(nc, ts.Addr(), ts.ClientConfig())
	if err != nil {
		_ = nc.Close()
		return Result{}, err
	}
	c := ssh.NewClient(sc, chans, reqs)
	defer c.Close()
	return RunOn(c, cmd)
}

// RunOn runs one command in a new session of c.
func RunOn(c *ssh.Client, cmd string) (Result, error) {
	sess, err := c.NewSession()
	if err != nil {
		return Result{}, err
	}
	defer sess.Close()
	var out, errb bytes.Buffer
	sess.Stdout, sess.Stderr = &out, &errb
	err = sess.Run(cmd)
	r := Result{Stdout: out.String(), Stderr: errb.String()}
	var ee *ssh.ExitError
	if errors.As(err, &ee) {
		r.ExitStatus = ee.ExitStatus()
		err = nil
	}
	return r, err
}
