package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/kubeletplugin"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// options are the command-line flags; every one is documented in README.md.
type options struct {
	mode       string
	endpoint   string
	nodeID     string
	driverName string
	version    bool

	rdsAddress        string
	rdsUser           string
	rdsKeyFile        string
	rdsKnownHosts     string
	rdsHostKey        string
	rdsInsecure       bool
	rdsMaxSessions    int
	rdsCommandTimeout time.Duration
	rdsCopyTimeout    time.Duration
	rdsKeepalive      time.Duration

	kubeconfig        string
	reconcileInterval time.Duration
	metricsAddress    string
	healthAddress     string
	kubeletDir        string

	volumePath  string
	nvmeAddress string
	nvmePort    int
	fsType      string

	nvmeBackend    string
	loopRoot       string
	hostNQN        string
	ctrlLossTmo    int
	reconnectDelay int
	keepAliveTmo   int
	nvmeTimeout    time.Duration
	mountTimeout   time.Duration
	nodeStateDir   string
	knownNodes     stringList

	hostKey ssh.PublicKey // --rds-host-key, parsed by validate
}

type stringList []string

func (s *stringList) String() string     { return fmt.Sprint(*s) }
func (s *stringList) Set(v string) error { *s = append(*s, v); return nil }

func (o *options) register(fs *flag.FlagSet) {
	fs.StringVar(&o.mode, "mode", "all", "which services to run: controller, node or all")
	fs.StringVar(&o.endpoint, "endpoint", "unix:///csi/csi.sock", "CSI endpoint (unix:///path or tcp://host:port)")
	fs.StringVar(&o.nodeID, "node-id", "", "this node's ID (the Kubernetes node name); required for node and all modes")
	fs.StringVar(&o.driverName, "driver-name", driver.DefaultDriverName, "CSI driver name")
	fs.BoolVar(&o.version, "version", false, "print the version and exit")

	o.registerRDS(fs)
	fs.DurationVar(&o.rdsCopyTimeout, "rds-copy-timeout", rds.DefaultCopyTimeout, "deadline for one copy on the RDS (snapshot, clone, restore); a copy goes on after the CSI call that started it times out, and its retry waits for it")
	fs.DurationVar(&o.rdsKeepalive, "rds-keepalive-interval", 15*time.Second, "how often the RDS connection is checked")

	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the attachment manager; empty means in-cluster config when running in a cluster, else in-memory attachments (testing only)")
	fs.DurationVar(&o.reconcileInterval, "reconcile-interval", attachment.DefaultReconcileInterval,
		"period of the attachment reconcile passes that run without a trigger (node events, RDS reconnects and start trigger passes at once)")
	fs.StringVar(&o.metricsAddress, "metrics-address", "", "address for Prometheus metrics (e.g. :9809); empty disables")
	fs.StringVar(&o.healthAddress, "health-address", "", "address for the liveness endpoint GET /healthz (e.g. :9808): 200 while the CSI gRPC server serves, whether or not the RDS is reachable; empty disables")
	fs.StringVar(&o.kubeletDir, "kubelet-dir", "", "node: the kubelet's directory (e.g. /var/lib/kubelet), at the same path as on the host; the driver registers itself with the kubelet through <dir>/plugins_registry/<driver-name>-reg.sock, announcing the --endpoint socket, which must lie under it; empty disables (use node-driver-registrar)")

	fs.StringVar(&o.volumePath, "volume-path", "/storage-pool/kubernetes-volumes", "default directory on the RDS for volume files (StorageClass volumePath overrides)")
	fs.StringVar(&o.nvmeAddress, "nvme-address", "", "default NVMe/TCP address of the RDS (default: the host of --rds-address)")
	fs.IntVar(&o.nvmePort, "nvme-port", 4420, "default NVMe/TCP port")
	fs.StringVar(&o.fsType, "default-fs-type", "ext4", "filesystem for mount volumes when none is asked for (ext4 or xfs)")

	fs.StringVar(&o.nvmeBackend, "nvme-backend", "nvme", "node initiator: nvme (nvme-cli, NVMe/TCP) or loop (loop devices over the simulator's files; testing)")
	fs.StringVar(&o.loopRoot, "loop-root", "", "with --nvme-backend=loop: the simulator's data directory")
	fs.StringVar(&o.hostNQN, "nvme-host-nqn", "", "host NQN for nvme connect (default: /etc/nvme/hostnqn)")
	fs.IntVar(&o.ctrlLossTmo, "nvme-ctrl-loss-tmo", -1, "default ctrl_loss_tmo seconds (-1: reconnect forever)")
	fs.IntVar(&o.reconnectDelay, "nvme-reconnect-delay", 2, "default reconnect delay seconds")
	fs.IntVar(&o.keepAliveTmo, "nvme-keep-alive-tmo", 5, "default keep-alive timeout seconds")
	fs.DurationVar(&o.nvmeTimeout, "nvme-command-timeout", 30*time.Second, "deadline for one nvme-cli or losetup call")
	fs.DurationVar(&o.mountTimeout, "mount-timeout", 2*time.Minute, "longest wait for one mount or umount (or one left running by an earlier call); past it the call returns DeadlineExceeded and the next call for the volume waits for it")
	fs.StringVar(&o.nodeStateDir, "node-state-dir", "/var/lib/rds-csi", "node: directory for records that must survive a restart of the plugin (a format under way); empty disables them")
	fs.Var(&o.knownNodes, "known-node", "without Kubernetes: a node ID that may take attachments (repeatable; the local node is always known)")
}

// registerRDS registers the flags of the RDS connection, which the controller and doctor share.
func (o *options) registerRDS(fs *flag.FlagSet) {
	fs.StringVar(&o.rdsAddress, "rds-address", "", "RDS SSH address host:port (controller)")
	fs.StringVar(&o.rdsUser, "rds-user", "admin", "RDS SSH user")
	fs.StringVar(&o.rdsKeyFile, "rds-key-file", "", "SSH private key for the RDS user")
	fs.StringVar(&o.rdsKnownHosts, "rds-known-hosts", "", "known_hosts file holding the RDS host key")
	fs.StringVar(&o.rdsHostKey, "rds-host-key", "", "pinned RDS host public key, in authorized_keys format (alternative to --rds-known-hosts)")
	fs.BoolVar(&o.rdsInsecure, "rds-insecure-skip-host-key-verification", false, "DANGEROUS: do not verify the RDS host key (logs a warning on every connect)")
	fs.IntVar(&o.rdsMaxSessions, "rds-max-sessions", 8, "most concurrent SSH exec sessions to the RDS")
	fs.DurationVar(&o.rdsCommandTimeout, "rds-command-timeout", 30*time.Second, "deadline for one RDS command")
}

// validate checks the flags and fills in derived values (the NVMe address, the parsed host key).
// Everything that can be refused from the flags alone is refused here, so that a mistake stops the
// process at start with exit status 2 instead of surfacing later as a failed RDS connection, a
// driver that never serves, or a duration of 0 that a library would silently read as its default.
func (o *options) validate() error {
	switch o.mode {
	case "controller", "node", "all":
	default:
		return fmt.Errorf("--mode must be controller, node or all, not %q", o.mode)
	}
	if err := validateEndpoint(o.endpoint); err != nil {
		return err
	}
	if o.controller() {
		if err := o.validateController(); err != nil {
			return err
		}
	}
	if o.node() && o.nodeID == "" {
		return errors.New("--node-id is required for node and all modes")
	}
	// The volume defaults are checked in every mode because driver.New checks them in every mode.
	if err := volid.ValidatePath(o.volumePath); err != nil {
		return fmt.Errorf("--volume-path: %w", err)
	}
	if err := volid.ValidatePort(o.nvmePort); err != nil {
		return fmt.Errorf("--nvme-port: %w", err)
	}
	switch o.fsType {
	case "ext4", "xfs":
	default:
		return fmt.Errorf("--default-fs-type must be ext4 or xfs, not %q", o.fsType)
	}
	if o.mountTimeout <= 0 {
		return fmt.Errorf("--mount-timeout must be positive, not %v", o.mountTimeout)
	}
	if o.nvmeTimeout <= 0 {
		return fmt.Errorf("--nvme-command-timeout must be positive, not %v", o.nvmeTimeout)
	}
	switch o.nvmeBackend {
	case "nvme":
	case "loop":
		if o.node() && o.loopRoot == "" {
			return errors.New("--nvme-backend=loop needs --loop-root")
		}
	default:
		return fmt.Errorf("--nvme-backend must be nvme or loop, not %q", o.nvmeBackend)
	}
	if o.metricsAddress != "" {
		// A bad address would otherwise only be logged by the metrics goroutine while the driver
		// runs on without metrics.
		if _, _, err := net.SplitHostPort(o.metricsAddress); err != nil {
			return fmt.Errorf("--metrics-address: %w", err)
		}
	}
	if o.healthAddress != "" {
		if _, _, err := net.SplitHostPort(o.healthAddress); err != nil {
			return fmt.Errorf("--health-address: %w", err)
		}
		if o.healthAddress == o.metricsAddress {
			return errors.New("--health-address and --metrics-address must differ")
		}
	}
	if o.kubeletDir != "" {
		if err := o.validateKubeletDir(); err != nil {
			return err
		}
	}
	return nil
}

// validateKubeletDir checks the kubelet registration: a node plugin whose CSI socket the kubelet
// reaches at the path announced, that is a unix socket under the kubelet directory (mounted at
// the same path in the container as on the host).
func (o *options) validateKubeletDir() error {
	if !o.node() {
		return errors.New("--kubelet-dir is for node and all modes (the kubelet talks to node plugins only)")
	}
	if !filepath.IsAbs(o.kubeletDir) {
		return fmt.Errorf("--kubelet-dir %q is not an absolute path", o.kubeletDir)
	}
	sock, ok := unixSocketPath(o.endpoint)
	if !ok || !filepath.IsAbs(sock) {
		return fmt.Errorf("--kubelet-dir needs a unix:// --endpoint with an absolute path (the kubelet connects to it), not %q", o.endpoint)
	}
	if rel, err := filepath.Rel(filepath.Clean(o.kubeletDir), sock); err != nil || rel == "." || rel == ".." || strings.HasPrefix(rel, "../") {
		return fmt.Errorf("--endpoint %q must lie under --kubelet-dir %q, where the kubelet reaches it (e.g. unix://%s)",
			o.endpoint, o.kubeletDir, kubeletplugin.CSISocketPath(o.kubeletDir, o.driverName))
	}
	return nil
}

// unixSocketPath is the socket path of a unix:// endpoint, read as driver.Listen reads it.
func unixSocketPath(endpoint string) (string, bool) {
	u, err := url.Parse(endpoint)
	if err != nil || u.Scheme != "unix" {
		return "", false
	}
	if u.Path != "" {
		return filepath.Clean(u.Path), true
	}
	return u.Host, u.Host != ""
}

// validateController checks what only the controller uses: the RDS connection and the
// attachment reconciler.
func (o *options) validateController() error {
	host, err := o.validateRDS()
	if err != nil {
		return err
	}
	// pkg/rds and pkg/attachment read a zero or negative duration as "use the default" (or, for
	// the reconcile interval, "never"): a flag given as 0 must not quietly mean something else.
	for _, d := range []struct {
		flag string
		v    time.Duration
	}{
		{"--rds-copy-timeout", o.rdsCopyTimeout},
		{"--rds-keepalive-interval", o.rdsKeepalive},
		{"--reconcile-interval", o.reconcileInterval},
	} {
		if d.v <= 0 {
			return fmt.Errorf("%s must be positive, not %v", d.flag, d.v)
		}
	}
	if o.nvmeAddress == "" {
		o.nvmeAddress = host
	}
	return nil
}

// validateRDS checks the flags of registerRDS and parses the pinned host key; it returns the
// RDS host.
func (o *options) validateRDS() (string, error) {
	if o.rdsAddress == "" || o.rdsKeyFile == "" {
		return "", errors.New("--rds-address and --rds-key-file are required")
	}
	if o.rdsKnownHosts == "" && o.rdsHostKey == "" && !o.rdsInsecure {
		return "", errors.New("give --rds-known-hosts or --rds-host-key so that the RDS host key can be verified")
	}
	host, port, err := net.SplitHostPort(o.rdsAddress)
	if err != nil {
		return "", fmt.Errorf("--rds-address: %w", err)
	}
	if n, err := strconv.Atoi(port); err != nil || volid.ValidatePort(n) != nil {
		return "", fmt.Errorf("--rds-address: port %q is not a number in 1-65535", port)
	}
	if o.rdsHostKey != "" {
		if o.hostKey, _, _, _, err = ssh.ParseAuthorizedKey([]byte(o.rdsHostKey)); err != nil {
			return "", fmt.Errorf("--rds-host-key: %w", err)
		}
	}
	if o.rdsMaxSessions < 1 {
		return "", fmt.Errorf("--rds-max-sessions must be at least 1, not %d", o.rdsMaxSessions)
	}
	if o.rdsCommandTimeout <= 0 {
		return "", fmt.Errorf("--rds-command-timeout must be positive, not %v", o.rdsCommandTimeout)
	}
	return host, nil
}

// validateEndpoint checks the CSI endpoint the way driver.Listen will read it.
func validateEndpoint(endpoint string) error {
	u, err := url.Parse(endpoint)
	if err != nil {
		return fmt.Errorf("--endpoint: %w", err)
	}
	switch u.Scheme {
	case "unix":
		if u.Path == "" && u.Host == "" {
			return fmt.Errorf("--endpoint %q: no socket path", endpoint)
		}
	case "tcp":
		if _, _, err := net.SplitHostPort(u.Host); err != nil {
			return fmt.Errorf("--endpoint %q: %w", endpoint, err)
		}
	default:
		return fmt.Errorf("--endpoint %q: scheme must be unix or tcp", endpoint)
	}
	return nil
}

func (o *options) controller() bool { return o.mode == "controller" || o.mode == "all" }
func (o *options) node() bool       { return o.mode == "node" || o.mode == "all" }
