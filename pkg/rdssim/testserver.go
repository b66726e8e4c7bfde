package rdssim

import (
	"bytes"
	"context"
	"errors"
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// TestServer is a running simulator for tests of other packages, with a
// client key it accepts. The embedded *Server gives Addr(), DataDir(),
// HostPath() and every fault method.
type TestServer struct {
	*Server
	Signer  ssh.Signer    // client private key accepted by the server
	HostKey ssh.PublicKey // server host key, to pin
	User    string        // user name for ClientConfig ("admin")
}

// StartForTest starts a simulator on 127.0.0.1:0 with a temporary data dir,
// fresh ed25519 host and client keys and a wrap width of 80 columns; opts can
// change the Config before it starts. The server is closed by t.Cleanup.
func StartForTest(t testing.TB, opts ...func(*Config)) *TestServer {
	t.Helper()
	host, err := GenerateSigner()
	if err != nil {
		t.Fatalf("rdssim: host key: %v", err)
	}
	client, err := GenerateSigner()
	if err != nil {
		t.Fatalf("rdssim: client key: %v", err)
	}
	cfg := Config{
		Listen:         "127.0.0.1:0",
		DataDir:        t.TempDir(),
		HostKey:        host,
		AuthorizedKeys: []ssh.PublicKey{client.PublicKey()},
		WrapWidth:      80,
	}
	for _, o := range opts {
		o(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatalf("rdssim: New: %v", err)
	}
	if err := s.Start(); err != nil {
		t.Fatalf("rdssim: Start: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	user := cfg.User
	if user == "" {
		user = "admin"
	}
	return &TestServer{Server: s, Signer: client, HostKey: s.HostPublicKey(), User: user}
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
