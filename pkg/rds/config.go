package rds

import (
	"errors"
	"fmt"
	"net"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
	"k8s.io/klog/v2"
)

// Config configures a Client. Zero durations and counts take the defaults below.
type Config struct {
	Address string // host:port
	User    string
	Signer  ssh.Signer

	// Host-key verification: a known_hosts file, or a pinned key. InsecureSkipHostKeyVerification
	// is an explicit opt-out and logs a warning on every connect.
	KnownHostsFile                  string
	HostKey                         ssh.PublicKey
	InsecureSkipHostKeyVerification bool

	MaxSessions       int           // concurrent exec sessions (RouterOS limits them); default 8
	CommandTimeout    time.Duration // deadline for one command; default 30s
	DialTimeout       time.Duration // TCP connect + SSH handshake; default 10s
	KeepaliveInterval time.Duration // liveness check period (open+close a session); default 15s

	// While disconnected, the client checks every ProbeInterval whether the RDS accepts a TCP
	// connection (a connect and close, no SSH) and dials as soon as one is accepted, so an RDS
	// back from a restart is used within a probe interval and a handshake. Each check gives up
	// after ProbeTimeout; checks overlap when it is longer than ProbeInterval, so a lost SYN does
	// not hold the next one back. Defaults 100ms and 1s.
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration

	// Failures past the TCP connect (a handshake or login that fails, a connection dropped less
	// than StableAfter after it was made) are retried with exponential backoff and jitter: a
	// flapping RDS is not hammered. A connection that lived StableAfter resets the backoff.
	BackoffInitial time.Duration // first delay; default 500ms
	BackoffMax     time.Duration // cap on the delay; default 5s
	StableAfter    time.Duration // default 1s

	BreakerThreshold int           // consecutive connection failures that open the breaker; default 3
	BreakerCooldown  time.Duration // how long an open breaker fails fast before a trial; default 5s

	// Registerer receives the client's metrics; nil means no metrics.
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	if c.MaxSessions <= 0 {
		c.MaxSessions = 8
	}
	if c.BreakerThreshold <= 0 {
		c.BreakerThreshold = 3
	}
	def(&c.CommandTimeout, 30*time.Second)
	def(&c.DialTimeout, 10*time.Second)
	def(&c.KeepaliveInterval, 15*time.Second)
	def(&c.ProbeInterval, 100*time.Millisecond)
	def(&c.ProbeTimeout, time.Second)
	def(&c.BackoffInitial, 500*time.Millisecond)
	def(&c.BackoffMax, 5*time.Second)
	def(&c.StableAfter, time.Second)
	def(&c.BreakerCooldown, 5*time.Second)
}

func (c *Config) hostKeyCallback() (ssh.HostKeyCallback, error) {
	switch {
	case c.HostKey != nil:
		return ssh.FixedHostKey(c.HostKey), nil
	case c.KnownHostsFile != "":
		cb, err := knownhosts.New(c.KnownHostsFile)
		if err != nil {
			return nil, fmt.Errorf("reading known_hosts %s: %w", c.KnownHostsFile, err)
		}
		return cb, nil
	case c.InsecureSkipHostKeyVerification:
		return func(host string, _ net.Addr, key ssh.PublicKey) error {
			klog.Warningf("RDS host key of %s (%s %s) NOT verified: host-key verification is disabled by flag", host, key.Type(), ssh.FingerprintSHA256(key))
			return nil
		}, nil
	default:
		return nil, errors.New("no RDS host key to verify against: give a known_hosts file or a pinned key (or explicitly disable verification)")
	}
}

// LoadSigner reads an OpenSSH private key file.
func LoadSigner(path string) (ssh.Signer, error) {
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading SSH key: %w", err)
	}
	s, err := ssh.ParsePrivateKey(pem)
	if err != nil {
		return nil, fmt.Errorf("parsing SSH key %s: %w", path, err)
	}
	return s, nil
}
