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

func main() {
	klog.InitFlags(nil)
	var (
		listen     = flag.String("listen", "127.0.0.1:2222", "SSH listen address")
		dataDir    = flag.String("data-dir", "", "directory for backing files and state (required)")
		authKeys   = flag.String("authorized-keys", "", "OpenSSH authorized_keys file of accepted client keys (required)")
		hostKey    = flag.String("host-key", "", "host private key file; generated (ed25519) if missing (required)")
		user       = flag.String("user", "", "only accept this user name (default: any)")
		control    = flag.String("control", "", "HTTP control interface address, loopback only (default: off)")
		poolSize   = flag.String("pool-size", "100G", "pool size: bytes or integer with k/M/G/T suffix")
		wrapWidth  = flag.Int("wrap-width", 80, "print output width in columns (0: no wrapping)")
		crlf       = flag.Bool("crlf", false, "end output lines in CRLF")
		failExit   = flag.Bool("failure-exit-status", false, "failed commands exit with status 1")
		failStream = flag.String("failure-stream", "stdout", "stream for failure text: stdout or stderr")
		latency    = flag.Duration("latency", 0, "delay before every command")
	)
	flag.Parse()
	if err := run(*listen, *dataDir, *authKeys, *hostKey, *user, *control, *poolSize, *wrapWidth,
		*crlf, *failExit, *failStream, *latency, shutdownGrace); err != nil {
		klog.ErrorS(err, "rdssim failed")
		klog.Flush()
		os.Exit(1)
	}
	klog.Flush()
}

func run(listen, dataDir, authKeys, hostKey, user, control, poolSize string, wrapWidth int,
	crlf, failExit bool, failStream string, latency, grace time.Duration) error {
	if dataDir == "" || authKeys == "" || hostKey == "" {
		flag.Usage()
		return errors.New("--data-dir, --authorized-keys and --host-key are required")
	}
	pool, err := rdssim.ParseSize(poolSize)
	if err != nil {
		return fmt.Errorf("--pool-size: %w", err)
	}
	b, err := os.ReadFile(authKeys)
	if err != nil {
		return err
	}
	keys, err := rdssim.ParseAuthorizedKeys(b)
	if err != nil {
		return err
	}
	signer, err := rdssim.LoadOrCreateHostKey(hostKey)
	if err != nil {
		return fmt.Errorf("host key %s: %w", hostKey, err)
	}
	s, err := rdssim.New(rdssim.Config{
		Listen: listen, DataDir: dataDir, HostKey: signer, AuthorizedKeys: keys, User: user,
		PoolSize: pool, WrapWidth: wrapWidth, CRLF: crlf, FailureExitStatus: failExit,
		FailureStream: failStream, Latency: latency,
	})
	if err != nil {
		return err
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
	if control != "" {
		if host, _, err := net.SplitHostPort(control); err == nil {
			if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
				klog.Warning("rdssim: --control is not a loopback address; it has no authentication")
			}
		}
		ln, err := net.Listen("tcp", control)
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
