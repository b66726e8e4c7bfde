package main

import (
	"errors"
	"flag"
	"fmt"
	"net"
	"time"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/rds"
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
	knownNodes     stringList
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

	fs.StringVar(&o.rdsAddress, "rds-address", "", "RDS SSH address host:port (controller)")
	fs.StringVar(&o.rdsUser, "rds-user", "admin", "RDS SSH user")
	fs.StringVar(&o.rdsKeyFile, "rds-key-file", "", "SSH private key for the RDS user")
	fs.StringVar(&o.rdsKnownHosts, "rds-known-hosts", "", "known_hosts file holding the RDS host key")
	fs.StringVar(&o.rdsHostKey, "rds-host-key", "", "pinned RDS host public key, in authorized_keys format (alternative to --rds-known-hosts)")
	fs.BoolVar(&o.rdsInsecure, "rds-insecure-skip-host-key-verification", false, "DANGEROUS: do not verify the RDS host key (logs a warning on every connect)")
	fs.IntVar(&o.rdsMaxSessions, "rds-max-sessions", 8, "most concurrent SSH exec sessions to the RDS")
	fs.DurationVar(&o.rdsCommandTimeout, "rds-command-timeout", 30*time.Second, "deadline for one RDS command")
	fs.DurationVar(&o.rdsCopyTimeout, "rds-copy-timeout", rds.DefaultCopyTimeout, "deadline for one copy on the RDS (snapshot, clone, restore); a copy goes on after the CSI call that started it times out, and its retry waits for it")
	fs.DurationVar(&o.rdsKeepalive, "rds-keepalive-interval", 15*time.Second, "how often the RDS connection is checked")

	fs.StringVar(&o.kubeconfig, "kubeconfig", "", "kubeconfig for the attachment manager; empty means in-cluster config when running in a cluster, else in-memory attachments (testing only)")
	fs.DurationVar(&o.reconcileInterval, "reconcile-interval", attachment.DefaultReconcileInterval,
		"period of the attachment reconcile passes that run without a trigger (node events, RDS reconnects and start trigger passes at once)")
	fs.StringVar(&o.metricsAddress, "metrics-address", "", "address for Prometheus metrics (e.g. :9809); empty disables")

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
	fs.Var(&o.knownNodes, "known-node", "without Kubernetes: a node ID that may take attachments (repeatable; the local node is always known)")
}

func (o *options) validate() error {
	switch o.mode {
	case "controller", "node", "all":
	default:
		return fmt.Errorf("--mode must be controller, node or all, not %q", o.mode)
	}
	if o.controller() {
		if o.rdsAddress == "" || o.rdsKeyFile == "" {
			return errors.New("--rds-address and --rds-key-file are required for the controller")
		}
		if o.rdsKnownHosts == "" && o.rdsHostKey == "" && !o.rdsInsecure {
			return errors.New("give --rds-known-hosts or --rds-host-key so that the RDS host key can be verified")
		}
		if o.nvmeAddress == "" {
			host, _, err := net.SplitHostPort(o.rdsAddress)
			if err != nil {
				return fmt.Errorf("--rds-address: %w", err)
			}
			o.nvmeAddress = host
		}
	}
	if o.node() && o.nodeID == "" {
		return errors.New("--node-id is required for node and all modes")
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
	return nil
}

func (o *options) controller() bool { return o.mode == "controller" || o.mode == "all" }
func (o *options) node() bool       { return o.mode == "node" || o.mode == "all" }
