// Package rdssim is an SSH server that speaks the RouterOS CLI subset used by
// rds-csi, with the output quirks of real ROSE Data Server units, disks kept
// as sparse files in a directory, and fault injection. See docs/simulator.md.
package rdssim

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"net"
	"regexp"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/klog/v2"
)

// DefaultPoolSize is the pool size used when Config.PoolSize is 0.
const DefaultPoolSize = int64(100) << 30

// ErrServerClosed is returned by Start and WaitListening after Close.
var ErrServerClosed = errors.New("rdssim: server closed")

// Config configures a Server. Only DataDir is required.
type Config struct {
	Listen             string          // TCP address; default "127.0.0.1:0"
	DataDir            string          // backing files and state
	HostKey            ssh.Signer      // generated (ed25519) when nil
	AuthorizedKeys     []ssh.PublicKey // keys allowed to log in
	User               string          // if set, the only user name accepted
	PoolSize           int64           // bytes; DefaultPoolSize when 0
	WrapWidth          int             // columns of print output; 0 = no wrapping
	CRLF               bool            // end output lines in CRLF
	FailureExitStatus  bool            // failed commands exit 1 (default 0)
	FailureStream      string          // "stdout" (default) or "stderr"
	Latency            time.Duration   // delay before every command
	CopyTimePerGiB     time.Duration   // copy-from takes this long per GiB of source; 0: instant
	CopyFinishDetached bool            // a copy whose session ends goes on (default: it stops half-written)
	// NVMeTCPExport makes the kernel's NVMe/TCP target (nvmet, through configfs; Linux, root)
	// export the disks with nvme-tcp-export=yes on NVMeTCPAddress (default 127.0.0.1) at their
	// nvme-tcp-server-port. NVMetRoot is nvmet's configfs directory (DefaultNVMetRoot).
	NVMeTCPExport  bool
	NVMeTCPAddress string
	NVMetRoot      string
}

// Server is the simulator. All methods are safe for concurrent use.
type Server struct {
	cfg     Config
	store   *store
	sshCfg  *ssh.ServerConfig
	baseCtx context.Context
	cancel  context.CancelFunc
	done    chan struct{}
	wg      sync.WaitGroup

	mu         sync.Mutex
	addr       string
	ln         net.Listener
	up         chan struct{} // closed while listening
	closed     bool
	restartGen int
	started    time.Time
	conns      map[net.Conn]struct{}
	authorized map[string]bool
	sw         switches
	f          faults
	stats      Stats
	cmdLog     []string
}

// switches are the settings for unverified behaviour and output layout.
type switches struct {
	wrapWidth  int
	crlf       bool
	failExit   bool
	failStream string
	copy       copyModel
}

type faults struct {
	latency    time.Duration
	hang       *regexp.Regexp
	refuse     bool
	failCount  int
	failText   string
	outOfSpace bool
	rejectAuth bool
	// silent is non-nil while the RDS is silent (a black hole): closed when the silence ends.
	silent chan struct{}
	// cutIn counts down the commands to the one that loses its connection (0: none); cutMode
	// says how.
	cutIn   int
	cutMode CutMode
}

// Stats counts connections and commands since New.
type Stats struct {
	ActiveConnections int   `json:"activeConnections"`
	TotalConnections  int64 `json:"totalConnections"`
	Commands          int64 `json:"commands"`
}

const maxCmdLog = 10000

// New validates cfg and opens (or creates) the state in cfg.DataDir.
func New(cfg Config) (*Server, error) {
	if cfg.DataDir == "" {
		return nil, errors.New("rdssim: DataDir is required")
	}
	if cfg.Listen == "" {
		cfg.Listen = "127.0.0.1:0"
	}
	if cfg.PoolSize == 0 {
		cfg.PoolSize = DefaultPoolSize
	}
	if cfg.PoolSize < 0 {
		return nil, errors.New("rdssim: PoolSize must not be negative")
	}
	if cfg.FailureStream == "" {
		cfg.FailureStream = "stdout"
	}
	if cfg.FailureStream != "stdout" && cfg.FailureStream != "stderr" {
		return nil, fmt.Errorf("rdssim: FailureStream must be stdout or stderr, not %q", cfg.FailureStream)
	}
	if cfg.HostKey == nil {
		k, err := GenerateSigner()
		if err != nil {
			return nil, err
		}
		cfg.HostKey = k
	}
	st, err := openStore(cfg.DataDir, cfg.PoolSize)
	if err != nil {
		return nil, err
	}
	if cfg.NVMeTCPExport {
		if st.exporter, err = newNVMetExporter(cfg.NVMetRoot, cfg.NVMeTCPAddress, cfg.DataDir, st.hostPath); err != nil {
			return nil, err
		}
		// A restart over the same data finds its exports in place and keeps them.
		if err := st.syncExports(); err != nil {
			return nil, err
		}
	}
	s := &Server{
		cfg:        cfg,
		store:      st,
		done:       make(chan struct{}),
		up:         make(chan struct{}),
		conns:      map[net.Conn]struct{}{},
		authorized: map[string]bool{},
		sw: switches{wrapWidth: max(cfg.WrapWidth, 0), crlf: cfg.CRLF,
			failExit: cfg.FailureExitStatus, failStream: cfg.FailureStream,
			copy: copyModel{perGiB: max(cfg.CopyTimePerGiB, 0), finishDetached: cfg.CopyFinishDetached}},
		f: faults{latency: cfg.Latency},
	}
	for _, k := range cfg.AuthorizedKeys {
		s.authorized[string(k.Marshal())] = true
	}
	s.baseCtx, s.cancel = context.WithCancel(context.Background())
	s.sshCfg = &ssh.ServerConfig{PublicKeyCallback: s.authKey, ServerVersion: "SSH-2.0-ROSSSH"}
	s.sshCfg.AddHostKey(cfg.HostKey)
	return s, nil
}

// GenerateSigner returns a new ed25519 ssh.Signer.
func GenerateSigner() (ssh.Signer, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	return ssh.NewSignerFromKey(priv)
}

func (s *Server) authKey(meta ssh.ConnMetadata, key ssh.PublicKey) (*ssh.Permissions, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.f.rejectAuth:
		return nil, errors.New("authentication rejected (fault)")
	case s.cfg.User != "" && meta.User() != s.cfg.User:
		return nil, fmt.Errorf("unknown user %q", meta.User())
	case !s.authorized[string(key.Marshal())]:
		return nil, errors.New("unknown public key")
	}
	return &ssh.Permissions{}, nil
}

// Start listens on Config.Listen and serves in the background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.addr != "" {
		return errors.New("rdssim: already started")
	}
	if err := s.listenLocked(s.cfg.Listen); err != nil {
		return err
	}
	s.addr = s.ln.Addr().String()
	klog.InfoS("rdssim listening", "addr", s.addr, "dataDir", s.cfg.DataDir)
	return nil
}

func (s *Server) listenLocked(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	s.ln = ln
	s.started = time.Now()
	close(s.up)
	s.wg.Add(1)
	go s.acceptLoop(ln)
	return nil
}

// stopListeningLocked closes the listener; WaitListening blocks again.
func (s *Server) stopListeningLocked() {
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
		s.up = make(chan struct{})
	}
}

// Addr is the address the server listens on (stable across Restart).
func (s *Server) Addr() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// HostPublicKey is the server's host key, for pinning in clients.
func (s *Server) HostPublicKey() ssh.PublicKey { return s.cfg.HostKey.PublicKey() }

// DataDir is the directory holding the backing files and the state.
func (s *Server) DataDir() string { return s.cfg.DataDir }

// HostPath maps a RouterOS file path (e.g. /storage-pool/k8s/x.img) to the
// backing file on the host.
func (s *Server) HostPath(p string) string { return s.store.hostPath(p) }

// Close stops listening, drops every connection and waits for the
// goroutines. The state stays on disk.
func (s *Server) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	close(s.done)
	s.cancel()
	if s.ln != nil {
		_ = s.ln.Close()
		s.ln = nil
	}
	conns := s.connsLocked()
	s.mu.Unlock()
	closeAll(conns)
	s.wg.Wait()
	return nil
}

func (s *Server) connsLocked() []net.Conn {
	out := make([]net.Conn, 0, len(s.conns))
	for c := range s.conns {
		out = append(out, c)
	}
	return out
}

func closeAll(conns []net.Conn) {
	for _, c := range conns {
		_ = c.Close()
	}
}

func (s *Server) acceptLoop(ln net.Listener) {
	defer s.wg.Done()
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			klog.V(2).InfoS("rdssim accept failed", "err", err)
			select {
			case <-s.done:
				return
			case <-time.After(10 * time.Millisecond):
			}
			continue
		}
		s.mu.Lock()
		if s.closed || s.ln != ln || s.f.refuse {
			s.mu.Unlock()
			_ = nc.Close()
			continue
		}
		s.conns[nc] = struct{}{}
		s.stats.TotalConnections++
		s.wg.Add(1)
		s.mu.Unlock()
		go s.handleConn(nc)
	}
}

func (s *Server) handleConn(nc net.Conn) {
	defer s.wg.Done()
	defer func() {
		s.mu.Lock()
		delete(s.conns, nc)
		s.mu.Unlock()
		_ = nc.Close()
	}()
	if !s.waitAudible(s.baseCtx) { // a silent RDS accepts TCP and never answers the handshake
		return
	}
	_ = nc.SetDeadline(time.Now().Add(30 * time.Second))
	sc, chans, reqs, err := ssh.NewServerConn(nc, s.sshCfg)
	if err != nil {
		klog.V(3).InfoS("rdssim handshake failed", "remote", nc.RemoteAddr(), "err", err)
		return
	}
	_ = nc.SetDeadline(time.Time{})
	klog.V(3).InfoS("rdssim connection", "remote", nc.RemoteAddr(), "user", sc.User())
	ctx, cancel := context.WithCancel(s.baseCtx)
	defer cancel()
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		ssh.DiscardRequests(reqs) // rejects keepalive@openssh.com, as RouterOS does
	}()
	for nch := range chans {
		if nch.ChannelType() != "session" {
			_ = nch.Reject(ssh.UnknownChannelType, "unsupported channel type")
			continue
		}
		if !s.waitAudible(ctx) { // nor session opens
			return
		}
		ch, creqs, err := nch.Accept()
		if err != nil {
			continue
		}
		s.wg.Add(1)
		go s.handleSession(ctx, nc, ch, creqs)
	}
}

// handleSession serves one session: exactly one exec request; no PTY, shell
// or subsystem. Its context ends when the session or connection closes.
func (s *Server) handleSession(connCtx context.Context, nc net.Conn, ch ssh.Channel, reqs <-chan *ssh.Request) {
	defer s.wg.Done()
	ctx, cancel := context.WithCancel(connCtx)
	defer cancel()
	started := false
	for req := range reqs {
		switch req.Type {
		case "exec":
			var p struct{ Command string }
			if started || ssh.Unmarshal(req.Payload, &p) != nil {
				_ = req.Reply(false, nil)
				continue
			}
			started = true
			_ = req.Reply(true, nil)
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				s.runExec(ctx, nc, ch, p.Command)
			}()
		case "env":
			_ = req.Reply(true, nil) // accepted and ignored
		default:
			_ = req.Reply(false, nil)
		}
	}
}

// plan is what the faults and switches make of one command, fixed when it arrives.
type plan struct {
	latency  time.Duration
	hang     bool
	failText string
	cut      CutMode
	cutting  bool
	sw       switches
	oos      bool
	started  time.Time
}

// preExec records the command, consumes a fail-next or cut slot and snapshots the faults and
// switches that apply to it.
func (s *Server) preExec(line string) plan {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats.Commands++
	s.cmdLog = append(s.cmdLog, line)
	if len(s.cmdLog) > maxCmdLog {
		s.cmdLog = append([]string(nil), s.cmdLog[len(s.cmdLog)-maxCmdLog/2:]...)
	}
	p := plan{latency: s.f.latency, sw: s.sw, oos: s.f.outOfSpace, started: s.started}
	p.hang = s.f.silent != nil || s.f.hang != nil && s.f.hang.MatchString(line)
	if s.f.cutIn > 0 {
		s.f.cutIn--
		if s.f.cutIn == 0 {
			p.cutting, p.cut = true, s.f.cutMode
		}
	}
	if !p.hang && !p.cutting && s.f.failCount > 0 {
		s.f.failCount--
		p.failText = s.f.failText
	}
	return p
}

func (s *Server) runExec(ctx context.Context, nc net.Conn, ch ssh.Channel, line string) {
	p := s.preExec(line)
	klog.V(4).InfoS("rdssim exec", "cmd", line)
	if p.cutting && p.cut == CutBeforeRun {
		klog.InfoS("rdssim fault: connection cut before the command ran", "cmd", line)
		_ = nc.Close()
		return
	}
	if p.latency > 0 {
		t := time.NewTimer(p.latency)
		select {
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return
		}
	}
	if p.hang {
		<-ctx.Done()
		return
	}
	sw := p.sw
	enc := func(x string) []byte {
		if sw.crlf {
			x = strings.ReplaceAll(x, "\n", "\r\n")
		}
		return []byte(x)
	}
	var out string
	var err error
	if p.failText != "" {
		err = &cliError{p.failText}
	} else {
		var c *command
		if c, err = parse(line); err == nil {
			env := execEnv{width: sw.wrapWidth, outOfSpace: p.oos, started: p.started, copy: sw.copy,
				done: s.done, emit: func(x string) { _, _ = ch.Write(enc(x)) }}
			out, err = s.store.exec(ctx, c, env)
		}
	}
	if ctx.Err() != nil {
		return // session gone; nobody to answer
	}
	if p.cutting {
		s.cutAfterRun(nc, ch, line, p.cut, enc(out))
		return
	}
	status := uint32(0)
	if out != "" {
		_, _ = ch.Write(enc(out))
	}
	if err != nil {
		var ce *cliError
		text := err.Error()
		if !errors.As(err, &ce) {
			text = "failure: " + text
		}
		var w io.Writer = ch
		if sw.failStream == "stderr" {
			w = ch.Stderr()
		}
		_, _ = w.Write(enc(text + "\n"))
		if sw.failExit {
			status = 1
		}
		klog.V(4).InfoS("rdssim command failed", "cmd", line, "err", text)
	}
	_ = ch.CloseWrite()
	_, _ = ch.SendRequest("exit-status", false, ssh.Marshal(&struct{ Status uint32 }{status}))
	_ = ch.Close()
}

// cutAfterRun loses the answer of a command that has run: the connection drops, or the session
// ends after part of the output and without an exit status.
func (s *Server) cutAfterRun(nc net.Conn, ch ssh.Channel, line string, mode CutMode, out []byte) {
	switch mode {
	case CutMidOutput:
		klog.InfoS("rdssim fault: session closed mid-output without exit status", "cmd", line)
		_, _ = ch.Write(out[:len(out)/2])
		_ = ch.Close()
	default:
		klog.InfoS("rdssim fault: connection cut after the command ran", "cmd", line)
		_ = nc.Close()
	}
}

// waitAudible returns once the server is not silent (true), or when ctx ends or the server
// closes (false).
func (s *Server) waitAudible(ctx context.Context) bool {
	s.mu.Lock()
	silent := s.f.silent
	s.mu.Unlock()
	if silent == nil {
		return true
	}
	select {
	case <-silent:
		return true
	case <-ctx.Done():
		return false
	case <-s.done:
		return false
	}
}
