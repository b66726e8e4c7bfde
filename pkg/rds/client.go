package rds

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"time"

	"github.com/cenkalti/backoff/v4"
	"golang.org/x/crypto/ssh"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/routeros"
)

// State is the connection state of a Client.
type State int

// Connection states.
const (
	Disconnected State = iota
	Connected
)

func (s State) String() string {
	if s == Connected {
		return "connected"
	}
	return "disconnected"
}

// Listener is told about connection changes. It is called from the client's own goroutine, in
// order, and must not block (a reconciler trigger, a log line, a metric).
type Listener func(State)

// Client runs RouterOS commands on one RDS over a kept-alive SSH connection.
type Client struct {
	cfg      Config
	sshCfg   *ssh.ClientConfig
	sessions chan struct{} // bounds concurrent exec sessions
	breaker  *breaker
	metrics  *metrics

	dialMu sync.Mutex // one dial at a time

	mu        sync.Mutex
	conn      *ssh.Client
	connSince time.Time // when conn was made
	state     State
	lastErr   error
	listeners map[int]Listener
	nextID    int
	started   bool
	closed    bool
	wake      chan struct{} // wakes the maintenance loop when the connection is lost

	events chan State // ordered delivery to listeners
	stop   chan struct{}
	wg     sync.WaitGroup
}

// NewClient checks the configuration; it does not connect. Call Start to connect in the
// background, so that an unreachable RDS never stops the process from starting.
func NewClient(cfg Config) (*Client, error) {
	cfg.setDefaults()
	if cfg.Address == "" || cfg.User == "" || cfg.Signer == nil {
		return nil, errors.New("RDS address, user and SSH key are required")
	}
	if _, _, err := net.SplitHostPort(cfg.Address); err != nil {
		return nil, fmt.Errorf("RDS address %q: %w", cfg.Address, err)
	}
	hk, err := cfg.hostKeyCallback()
	if err != nil {
		return nil, err
	}
	c := &Client{
		cfg: cfg,
		sshCfg: &ssh.ClientConfig{
			User:            cfg.User,
			Auth:            []ssh.AuthMethod{ssh.PublicKeys(cfg.Signer)},
			HostKeyCallback: hk,
			Timeout:         cfg.DialTimeout,
		},
		sessions:  make(chan struct{}, cfg.MaxSessions),
		breaker:   newBreaker(cfg.BreakerThreshold, cfg.BreakerCooldown),
		metrics:   newMetrics(cfg.Registerer),
		listeners: map[int]Listener{},
		wake:      make(chan struct{}, 1),
		events:    make(chan State, 64),
		stop:      make(chan struct{}),
		lastErr:   errors.New("not connected yet"),
	}
	c.metrics.setConnected(false)
	return c, nil
}

// Start connects in the background and keeps the connection alive until Close.
func (c *Client) Start() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.started || c.closed {
		return
	}
	c.started = true
	c.wg.Add(2)
	go c.maintain()
	go c.deliver()
}

// Close drops the connection and stops the background work. Commands in flight fail.
func (c *Client) Close() error {
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closed = true
	conn := c.conn
	c.conn = nil
	started := c.started
	c.mu.Unlock()
	close(c.stop)
	if conn != nil {
		_ = conn.Close()
	}
	if started {
		c.wg.Wait()
	}
	return nil
}

// Subscribe registers a listener for connection changes; the returned func removes it.
func (c *Client) Subscribe(l Listener) (unsubscribe func()) {
	c.mu.Lock()
	defer c.mu.Unlock()
	id := c.nextID
	c.nextID++
	c.listeners[id] = l
	return func() {
		c.mu.Lock()
		delete(c.listeners, id)
		c.mu.Unlock()
	}
}

// State returns the current connection state.
func (c *Client) State() State {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.state
}

// Probe returns nil while the RDS is reachable, and an Unavailable error saying why otherwise.
func (c *Client) Probe(context.Context) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.state == Connected {
		return nil
	}
	return &routeros.Error{Kind: routeros.KindUnavailable, Message: "RDS not connected", Err: c.lastErr}
}

// Run runs one command and returns its stdout. Every failure is a *routeros.Error: connection
// problems are KindUnavailable, a command that outlives its deadline is KindDeadlineExceeded (its
// session is discarded), and failures reported by RouterOS are classified by their text.
func (c *Client) Run(ctx context.Context, cmd routeros.Command) (string, error) {
	start := time.Now()
	out, err := c.run(ctx, cmd)
	result := "ok"
	if err != nil {
		result = routeros.KindOf(err).String()
	}
	c.metrics.command(result, time.Since(start))
	return out, err
}

func (c *Client) run(ctx context.Context, cmd routeros.Command) (string, error) {
	line := cmd.String()
	if line == "" {
		return "", routeros.Errorf(routeros.KindInternal, "empty command")
	}
	if !c.breaker.allow() {
		c.metrics.setBreakerOpen(true)
		return "", &routeros.Error{Kind: routeros.KindUnavailable, Command: line, Message: "RDS unreachable, failing fast (circuit breaker open)", Err: c.lastError()}
	}
	defer c.breaker.done()
	timeout := c.cfg.CommandTimeout
	if t := cmd.Timeout(); t > 0 {
		timeout = t // a long copy has its own deadline
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	select {
	case c.sessions <- struct{}{}:
		defer func() { <-c.sessions }()
	case <-ctx.Done():
		return "", ctxError(ctx, line, "waiting for a free RDS session")
	}

	// A failure to open a session means the command never ran, so one retry on a fresh
	// connection is always safe.
	var sess *ssh.Session
	for attempt := 0; ; attempt++ {
		conn, err := c.connection(ctx)
		if err != nil {
			c.connFailed(err)
			return "", &routeros.Error{Kind: routeros.KindUnavailable, Command: line, Message: "cannot connect to RDS", Err: err}
		}
		sess, err = openSession(ctx, conn)
		if err == nil {
			break
		}
		if ctx.Err() != nil { // the RDS did not answer the session open in time
			c.checkSoon()
			return "", ctxError(ctx, line, "opening an SSH session timed out")
		}
		c.dropConn(conn, err)
		if attempt == 1 || ctx.Err() != nil {
			c.connFailed(err)
			return "", &routeros.Error{Kind: routeros.KindUnavailable, Command: line, Message: "cannot open SSH session", Err: err}
		}
	}

	var stdout, stderr bytes.Buffer
	sess.Stdout, sess.Stderr = &stdout, &stderr
	done := make(chan error, 1)
	go func() { done <- sess.Run(line) }()
	select {
	case err := <-done:
		_ = sess.Close()
		c.breaker.success()
		c.metrics.setBreakerOpen(false)
		// Only a command that ended with an exit status was fully received: SSH delivers the
		// channel's data before the exit-status request. A channel closed without one
		// (*ssh.ExitMissingError) or a broken connection means the output may be cut short,
		// and the RDS may or may not have run the command: never read it as an answer.
		status := 0
		var exitErr *ssh.ExitError
		switch {
		case err == nil:
		case errors.As(err, &exitErr):
			status = exitErr.ExitStatus()
		default:
			var missing *ssh.ExitMissingError
			if errors.As(err, &missing) {
				c.checkSoon()
				return "", &routeros.Error{Kind: routeros.KindUnavailable, Command: line, Message: "RDS closed the session without an exit status; the command may or may not have run", Err: err}
			}
			c.connFailed(err)
			return "", &routeros.Error{Kind: routeros.KindUnavailable, Command: line, Message: "connection lost during command; it may or may not have run", Err: err}
		}
		if err := routeros.CheckOutput(line, stdout.String(), stderr.String(), status); err != nil {
			return stdout.String(), err
		}
		return stdout.String(), nil
	case <-ctx.Done():
		// Abandon the hung command: closing the session frees the RDS side; other sessions on
		// the same connection are unaffected.
		_ = sess.Close()
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			// One command hanging is the RDS's business; a silent RDS hangs them all. Check the
			// connection now rather than at the next keepalive, so that a dead one is dropped
			// (and the breaker opens) within a dial timeout.
			c.checkSoon()
		}
		return "", ctxError(ctx, line, "command did not finish")
	}
}

func ctxError(ctx context.Context, line, what string) error {
	kind := routeros.KindUnavailable
	if errors.Is(ctx.Err(), context.DeadlineExceeded) {
		kind = routeros.KindDeadlineExceeded
	}
	return &routeros.Error{Kind: kind, Command: line, Message: what, Err: ctx.Err()}
}

func (c *Client) lastError() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lastErr
}

// connection returns the live connection, dialling one if there is none.
func (c *Client) connection(ctx context.Context) (*ssh.Client, error) {
	c.mu.Lock()
	conn, closed := c.conn, c.closed
	c.mu.Unlock()
	if closed {
		return nil, errors.New("client closed")
	}
	if conn != nil {
		return conn, nil
	}
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	conn = c.conn
	c.mu.Unlock()
	if conn != nil {
		return conn, nil
	}
	return c.dial(ctx)
}

// dial opens a new connection and installs it. Callers hold dialMu.
func (c *Client) dial(ctx context.Context) (*ssh.Client, error) {
	d := net.Dialer{Timeout: c.cfg.DialTimeout}
	raw, err := d.DialContext(ctx, "tcp", c.cfg.Address)
	if err != nil {
		return nil, err
	}
	deadline := time.Now().Add(c.cfg.DialTimeout)
	if dl, ok := ctx.Deadline(); ok && dl.Before(deadline) {
		deadline = dl
	}
	_ = raw.SetDeadline(deadline)
	sc, chans, reqs, err := ssh.NewClientConn(raw, c.cfg.Address, c.sshCfg)
	if err != nil {
		_ = raw.Close()
		return nil, &pastTCPError{err}
	}
	_ = raw.SetDeadline(time.Time{})
	conn := ssh.NewClient(sc, chans, reqs)

	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		_ = conn.Close()
		return nil, errors.New("client closed")
	}
	c.conn, c.connSince = conn, time.Now()
	wasDown := c.state != Connected
	c.state = Connected
	c.lastErr = nil
	c.breaker.success()
	c.metrics.setBreakerOpen(false)
	c.metrics.setConnected(true)
	if wasDown {
		c.metrics.reconnected()
		// Under the lock, so that events keep the order of the state changes; after the
		// metrics, so that a listener sees them up to date.
		c.emitLocked(Connected)
	}
	c.mu.Unlock()
	if wasDown {
		klog.InfoS("Connected to RDS", "address", c.cfg.Address)
	}
	// Notice a dropped connection at once, not at the next command.
	go func() {
		err := conn.Wait()
		c.dropConn(conn, err)
	}()
	return conn, nil
}

// dropConn forgets conn if it is still the current connection and reports the loss.
func (c *Client) dropConn(conn *ssh.Client, cause error) {
	c.mu.Lock()
	if c.conn != conn {
		c.mu.Unlock()
		return
	}
	c.conn = nil
	if cause == nil {
		cause = errors.New("connection closed")
	}
	c.lastErr = cause
	wasUp := c.state == Connected
	c.state = Disconnected
	closed := c.closed
	if !closed {
		c.metrics.setConnected(false)
	}
	if wasUp && !closed {
		c.emitLocked(Disconnected)
	}
	c.mu.Unlock()
	_ = conn.Close()
	if closed {
		return
	}
	if wasUp {
		klog.InfoS("Lost connection to RDS", "address", c.cfg.Address, "err", cause)
	}
	c.checkSoon()
}

// connFailed records a connection-level failure for the breaker and the state.
func (c *Client) connFailed(err error) {
	c.breaker.failure()
	if c.breaker.state() != breakerClosed {
		c.metrics.setBreakerOpen(true)
	}
	c.mu.Lock()
	c.lastErr = err
	c.mu.Unlock()
}

// emitLocked queues a state change for the listeners; c.mu is held, so that events are queued in
// the order of the state changes. If the listeners fall 64 events behind, the oldest event goes:
// the latest state is always delivered.
func (c *Client) emitLocked(s State) {
	if !c.started || c.closed {
		return
	}
	for {
		select {
		case c.events <- s:
			return
		default:
		}
		select {
		case <-c.events:
			klog.Warning("RDS connection listeners are slow; the oldest queued event was dropped")
		default:
		}
	}
}

func (c *Client) deliver() {
	defer c.wg.Done()
	for {
		select {
		case <-c.stop:
			return
		case s := <-c.events:
			c.mu.Lock()
			ls := make([]Listener, 0, len(c.listeners))
			for _, l := range c.listeners {
				ls = append(ls, l)
			}
			c.mu.Unlock()
			for _, l := range ls {
				l(s)
			}
		}
	}
}

// pastTCPError is a dial that failed after the RDS accepted the TCP connection: in the SSH
// handshake or the login. Retrying it at once would hammer an RDS that is answering.
type pastTCPError struct{ err error }

func (e *pastTCPError) Error() string { return e.err.Error() }
func (e *pastTCPError) Unwrap() error { return e.err }

// maintain keeps a connection up. While there is none, it checks every ProbeInterval whether the
// RDS accepts a TCP connection, which costs the RDS no SSH handshake, and dials as soon as one is
// accepted: an RDS back from a restart is used within a probe interval and a handshake, whatever
// the length of the outage. Failures past the TCP connect (a failed handshake or login, a
// connection dropped within StableAfter of being made) hold the next dial back with exponential
// backoff and jitter, so a flapping RDS is not hammered. While connected, it checks liveness
// every KeepaliveInterval by opening and closing a session (RouterOS refuses OpenSSH keepalive
// requests).
func (c *Client) maintain() {
	defer c.wg.Done()
	bo := backoff.NewExponentialBackOff()
	bo.InitialInterval = c.cfg.BackoffInitial
	bo.MaxInterval = c.cfg.BackoffMax
	bo.RandomizationFactor = 0.5
	bo.Multiplier = 2
	bo.MaxElapsedTime = 0
	bo.Reset()

	probeCtx, cancelProbes := context.WithCancel(context.Background())
	defer cancelProbes()
	answered := make(chan struct{}, 1) // a probe got a TCP connection accepted
	// Probes overlap when ProbeTimeout is longer than ProbeInterval; this bounds how many.
	slots := make(chan struct{}, int(c.cfg.ProbeTimeout/c.cfg.ProbeInterval)+1)
	probe := func() {
		select {
		case slots <- struct{}{}:
		default:
			return
		}
		c.wg.Add(1)
		go func() {
			defer c.wg.Done()
			defer func() { <-slots }()
			if err := c.reachable(probeCtx); err != nil {
				c.mu.Lock()
				if c.conn == nil {
					c.lastErr = err
				}
				c.mu.Unlock()
				return
			}
			select {
			case answered <- struct{}{}:
			default:
			}
		}()
	}

	ticker := time.NewTicker(c.cfg.ProbeInterval)
	defer ticker.Stop()
	keepalive := time.NewTimer(c.cfg.KeepaliveInterval)
	defer keepalive.Stop()
	var (
		seen      *ssh.Client // the connection the loop last saw
		seenSince time.Time
		notBefore time.Time // no dial before this: backoff after a failure past the TCP connect
		dialNow   = true    // dial without waiting for a probe (at start)
	)
	for {
		c.mu.Lock()
		conn, since := c.conn, c.connSince
		c.mu.Unlock()
		if conn != seen {
			if seen != nil && conn == nil {
				// Lost. A connection that lived StableAfter says the RDS was fine: the next
				// dial may follow the first probe that is answered. One that died young is a
				// failure like a failed handshake.
				if time.Since(seenSince) < c.cfg.StableAfter {
					notBefore = time.Now().Add(bo.NextBackOff())
				} else {
					bo.Reset()
					notBefore = time.Time{}
					probe()
				}
			}
			seen, seenSince = conn, since
			if conn != nil {
				resetTimer(keepalive, c.cfg.KeepaliveInterval)
			}
		}
		if conn == nil && dialNow && !time.Now().Before(notBefore) {
			dialNow = false
			if err := c.maintainDial(); err != nil {
				c.connFailed(err)
				var past *pastTCPError
				if errors.As(err, &past) {
					next := bo.NextBackOff()
					notBefore = time.Now().Add(next)
					klog.V(2).InfoS("RDS reconnect failed after the TCP connect; backing off", "address", c.cfg.Address, "err", err, "retryIn", next)
				} else {
					klog.V(2).InfoS("RDS reconnect failed", "address", c.cfg.Address, "err", err)
				}
			}
			continue
		}
		select {
		case <-c.stop:
			return
		case <-c.wake:
			if conn != nil {
				c.checkAlive(conn)
				resetTimer(keepalive, c.cfg.KeepaliveInterval)
			}
		case <-ticker.C:
			if conn == nil && !time.Now().Before(notBefore) {
				probe()
			}
		case <-answered:
			dialNow = true
		case <-keepalive.C:
			if conn != nil {
				c.checkAlive(conn)
			}
			keepalive.Reset(c.cfg.KeepaliveInterval)
		}
	}
}

// maintainDial dials unless a command has dialled meanwhile.
func (c *Client) maintainDial() error {
	ctx, cancel := context.WithTimeout(context.Background(), c.cfg.DialTimeout)
	defer cancel()
	c.dialMu.Lock()
	defer c.dialMu.Unlock()
	c.mu.Lock()
	conn := c.conn
	c.mu.Unlock()
	if conn != nil {
		return nil
	}
	_, err := c.dial(ctx)
	return err
}

// reachable reports whether the RDS accepts a TCP connection within ProbeTimeout; the connection
// is closed at once.
func (c *Client) reachable(ctx context.Context) error {
	d := net.Dialer{Timeout: c.cfg.ProbeTimeout}
	raw, err := d.DialContext(ctx, "tcp", c.cfg.Address)
	if err != nil {
		return err
	}
	return raw.Close()
}

func resetTimer(t *time.Timer, d time.Duration) {
	if !t.Stop() {
		select {
		case <-t.C:
		default:
		}
	}
	t.Reset(d)
}

// openSession opens a session within ctx: a silent RDS never answers the channel open, and
// ssh.Client.NewSession has no deadline of its own. A session opened after ctx ended is closed.
func openSession(ctx context.Context, conn *ssh.Client) (*ssh.Session, error) {
	type result struct {
		sess *ssh.Session
		err  error
	}
	done := make(chan result, 1)
	go func() {
		s, err := conn.NewSession()
		done <- result{s, err}
	}()
	select {
	case r := <-done:
		return r.sess, r.err
	case <-ctx.Done():
		go func() {
			if r := <-done; r.sess != nil {
				_ = r.sess.Close()
			}
		}()
		return nil, ctx.Err()
	}
}

// checkSoon asks the maintainer for a liveness check (or a reconnect) now.
func (c *Client) checkSoon() {
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

func (c *Client) checkAlive(conn *ssh.Client) {
	done := make(chan error, 1)
	go func() {
		s, err := conn.NewSession()
		if err == nil {
			_ = s.Close()
		}
		done <- err
	}()
	t := time.NewTimer(c.cfg.DialTimeout)
	defer t.Stop()
	select {
	case err := <-done:
		if err != nil {
			c.dropConn(conn, fmt.Errorf("liveness check: %w", err))
		}
	case <-t.C:
		c.dropConn(conn, errors.New("liveness check timed out"))
	case <-c.stop:
	}
}
