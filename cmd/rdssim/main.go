// Command rdssim runs the RDS simulator standalone: an SSH server speaking
// the RouterOS CLI subset used by rds-csi. See docs/simulator.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"golang.org/x/crypto/ssh"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// shutdownGrace bounds the shutdown of the control interface.
const shutdownGrace = 5 * time.Second

// options are the command-line flags.
type options struct {
	listen, dataDir, authKeys, hostKey, user, control, poolSize string
	wrapWidth                                                   int
	crlf, failExit                                              bool
	failStream                                                  string
	latency                                                     time.Duration
	copyPerGiB                                                  time.Duration
	copyFinishDetached                                          bool
	nvmet                                                       bool
	nvmetAddress                                                string
	// faults set at start (drop and restart are events: control interface only)
	hang                       string
	refuse, outOfSpace, silent bool
	rejectAuth                 bool
	failNext                   int
	failError                  string
}

func main() {
	klog.InitFlags(nil)
	var o options
	flag.StringVar(&o.listen, "listen", "127.0.0.1:2222", "SSH listen address")
	flag.StringVar(&o.dataDir, "data-dir", "", "directory for backing files and state (required)")
	flag.StringVar(&o.authKeys, "authorized-keys", "", "OpenSSH authorized_keys file of accepted client keys (required)")
	flag.StringVar(&o.hostKey, "host-key", "", "host private key file; generated (ed25519) if missing (required)")
	flag.StringVar(&o.user, "user", "", "only accept this user name (default: any)")
	flag.StringVar(&o.control, "control", "", "HTTP control interface address, loopback only (default: off)")
	flag.StringVar(&o.poolSize, "pool-size", "100G", "pool size: bytes or integer with k/M/G/T suffix")
	flag.IntVar(&o.wrapWidth, "wrap-width", 80, "print output width in columns (0: no wrapping)")
	flag.BoolVar(&o.crlf, "crlf", false, "end output lines in CRLF")
	flag.BoolVar(&o.failExit, "failure-exit-status", false, "failed commands exit with status 1")
	flag.StringVar(&o.failStream, "failure-stream", "stdout", "stream for failure text: stdout or stderr")
	flag.DurationVar(&o.latency, "latency", 0, "fault: delay before every command")
	flag.DurationVar(&o.copyPerGiB, "copy-time-per-gib", 0, "copy-from (snapshots, clones) takes this long per GiB of source (0: instant)")
	flag.BoolVar(&o.copyFinishDetached, "copy-finish-detached", false, "a copy whose SSH session ends goes on and adds its disk (default: it stops, leaving a half-written file)")
	flag.BoolVar(&o.nvmet, "nvmet", false, "export disks with nvme-tcp-export=yes through the kernel's NVMe/TCP target (nvmet via configfs; Linux, root, modules nvmet and nvmet-tcp)")
	flag.StringVar(&o.nvmetAddress, "nvmet-address", "127.0.0.1", "with --nvmet: the IP address the NVMe/TCP ports listen on")
	flag.StringVar(&o.hang, "hang", "", "fault: commands matching this regular expression never answer")
	flag.BoolVar(&o.refuse, "refuse", false, "fault: refuse new connections")
	flag.BoolVar(&o.silent, "silent", false, "fault: black hole: accept TCP, never answer")
	flag.BoolVar(&o.outOfSpace, "out-of-space", false, "fault: creating or growing disks fails with not enough space")
	flag.BoolVar(&o.rejectAuth, "reject-auth", false, "fault: reject every login")
	flag.IntVar(&o.failNext, "fail-next", 0, "fault: fail the next N commands (with --fail-error)")
	flag.StringVar(&o.failError, "fail-error", "", "fault: failure text of --fail-next (default: a generic failure)")
	flag.Parse()
	if err := run(o, shutdownGrace); err != nil {
		klog.ErrorS(err, "rdssim failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(o options, grace time.Duration) error {
	if o.dataDir == "" || o.authKeys == "" || o.hostKey == "" {
		flag.Usage()
		return errors.New("--data-dir, --authorized-keys and --host-key are required")
	}
	if o.failNext < 0 {
		return errors.New("--fail-next must not be negative")
	}
	pool, err := rdssim.ParseSize(o.poolSize)
	if err != nil {
		return fmt.Errorf("--pool-size: %w", err)
	}
	b, err := os.ReadFile(o.authKeys)
	if err != nil {
		return err
	}
	keys, err := rdssim.ParseAuthorizedKeys(b)
	if err != nil {
		return err
	}
	signer, err := rdssim.LoadOrCreateHostKey(o.hostKey)
	if err != nil {
		return fmt.Errorf("host key %s: %w", o.hostKey, err)
	}
	s, err := rdssim.New(rdssim.Config{
		Listen: o.listen, DataDir: o.dataDir, HostKey: signer, AuthorizedKeys: keys, User: o.user,
		PoolSize: pool, WrapWidth: o.wrapWidth, CRLF: o.crlf, FailureExitStatus: o.failExit,
		FailureStream: o.failStream, Latency: o.latency,
		CopyTimePerGiB: o.copyPerGiB, CopyFinishDetached: o.copyFinishDetached,
		NVMeTCPExport: o.nvmet, NVMeTCPAddress: o.nvmetAddress,
	})
	if err != nil {
		return err
	}
	if o.hang != "" {
		if err := s.SetHang(o.hang); err != nil {
			return fmt.Errorf("--hang: %w", err)
		}
	}
	s.SetRefuse(o.refuse)
	s.SetSilent(o.silent)
	s.SetOutOfSpace(o.outOfSpace)
	s.SetRejectAuth(o.rejectAuth)
	if o.failNext > 0 {
		s.FailNext(o.failNext, o.failError)
	}
	if err := s.Start(); err != nil {
		return err
	}
	klog.InfoS("rdssim host key", "type", signer.PublicKey().Type(),
		"fingerprint", sshFingerprint(s))

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()

	var hs *http.Server
	errc := make(chan error, 1)
	if o.control != "" {
		if host, _, err := net.SplitHostPort(o.control); err == nil {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				klog.Warning("rdssim: --control is not a loopback address; it has no authentication")
			}
		}
		ln, err := net.Listen("tcp", o.control)
		if err != nil {
			_ = s.Close()
			return fmt.Errorf("--control: %w", err)
		}
		hs = &http.Server{Handler: s.ControlHandler(), ReadHeaderTimeout: 10 * time.Second}
		klog.InfoS("rdssim control interface", "addr", ln.Addr().String())
		go func() { errc <- hs.Serve(ln) }()
	}

	select {
	case <-ctx.Done():
		klog.InfoS("rdssim shutting down")
	case err = <-errc:
		klog.ErrorS(err, "rdssim control interface failed")
	}
	if hs != nil {
		sctx, cancel := context.WithTimeout(context.Background(), grace)
		_ = hs.Shutdown(sctx)
		cancel()
	}
	if cerr := s.Close(); err == nil {
		err = cerr
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

func sshFingerprint(s *rdssim.Server) string {
	return ssh.FingerprintSHA256(s.HostPublicKey())
}
