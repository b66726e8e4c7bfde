package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"flag"
	"io"
	"reflect"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// parseArgs does what main does with the command line: register, parse, validate. The flag set
// is a fresh one so that tests do not share state through flag.CommandLine.
func parseArgs(args ...string) (*options, error) {
	fs := flag.NewFlagSet("rds-csi", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o := &options{}
	o.register(fs)
	if err := fs.Parse(args); err != nil {
		return o, err
	}
	return o, o.validate()
}

// Minimal valid command lines per mode; cases append to them (a later flag wins).
var (
	controllerArgs = []string{"--mode", "controller", "--rds-address", "10.0.0.1:22",
		"--rds-key-file", "/etc/rds/id_ed25519", "--rds-known-hosts", "/etc/rds/known_hosts"}
	nodeArgs = []string{"--mode", "node", "--node-id", "worker-1"}
	allArgs  = []string{"--mode", "all", "--node-id", "worker-1", "--rds-address", "10.0.0.1:22",
		"--rds-key-file", "/etc/rds/id_ed25519", "--rds-known-hosts", "/etc/rds/known_hosts"}
)

func with(base []string, extra ...string) []string {
	return append(append([]string{}, base...), extra...)
}

// TestFlagDefaults pins every flag's name and default: both are part of the deployment interface
// (manifests and README.md rely on them), so changing one must be a deliberate test change. A flag
// added without an entry here fails the test.
func TestFlagDefaults(t *testing.T) {
	want := map[string]string{
		"mode":            "all",
		"endpoint":        "unix:///csi/csi.sock",
		"node-id":         "",
		"driver-name":     "rds.csi.srvlab.io",
		"version":         "false",
		"rds-address":     "",
		"rds-user":        "admin",
		"rds-key-file":    "",
		"rds-known-hosts": "",
		"rds-host-key":    "",
		"rds-insecure-skip-host-key-verification": "false",
		"rds-max-sessions":                        "8",
		"rds-command-timeout":                     "30s",
		"rds-copy-timeout":                        "30m0s",
		"rds-keepalive-interval":                  "15s",
		"kubeconfig":                              "",
		"reconcile-interval":                      "5m0s",
		"metrics-address":                         "",
		"health-address":                          "",
		"kubelet-dir":                             "",
		"volume-path":                             "/storage-pool/kubernetes-volumes",
		"nvme-address":                            "",
		"nvme-port":                               "4420",
		"default-fs-type":                         "ext4",
		"nvme-backend":                            "nvme",
		"loop-root":                               "",
		"nvme-host-nqn":                           "",
		"nvme-ctrl-loss-tmo":                      "-1",
		"nvme-reconnect-delay":                    "2",
		"nvme-keep-alive-tmo":                     "5",
		"nvme-command-timeout":                    "30s",
		"mount-timeout":                           "2m0s",
		"node-state-dir":                          "/var/lib/rds-csi",
		"known-node":                              "[]",
	}
	fs := flag.NewFlagSet("rds-csi", flag.ContinueOnError)
	var o options
	o.register(fs)
	seen := map[string]bool{}
	fs.VisitAll(func(f *flag.Flag) {
		seen[f.Name] = true
		def, ok := want[f.Name]
		if !ok {
			t.Errorf("flag --%s (default %q) has no expected default in this test", f.Name, f.DefValue)
			return
		}
		if f.DefValue != def {
			t.Errorf("--%s default = %q, want %q", f.Name, f.DefValue, def)
		}
		if f.Usage == "" {
			t.Errorf("--%s has no usage text", f.Name)
		}
	})
	for name := range want {
		if !seen[name] {
			t.Errorf("flag --%s is no longer registered", name)
		}
	}
}

// TestParsedDefaults: the values the rest of the program reads when no flag is given are the
// documented ones (DefValue above is only the text shown in -help).
func TestParsedDefaults(t *testing.T) {
	o, err := parseArgs(allArgs...)
	if err != nil {
		t.Fatal(err)
	}
	want := options{
		mode: "all", endpoint: "unix:///csi/csi.sock", nodeID: "worker-1", driverName: "rds.csi.srvlab.io",
		rdsAddress: "10.0.0.1:22", rdsUser: "admin", rdsKeyFile: "/etc/rds/id_ed25519", rdsKnownHosts: "/etc/rds/known_hosts",
		rdsMaxSessions: 8, rdsCommandTimeout: 30 * time.Second, rdsCopyTimeout: 30 * time.Minute, rdsKeepalive: 15 * time.Second,
		reconcileInterval: 5 * time.Minute,
		volumePath:        "/storage-pool/kubernetes-volumes", nvmeAddress: "10.0.0.1", nvmePort: 4420, fsType: "ext4",
		nvmeBackend: "nvme", ctrlLossTmo: -1, reconnectDelay: 2, keepAliveTmo: 5, nvmeTimeout: 30 * time.Second, mountTimeout: 2 * time.Minute, nodeStateDir: "/var/lib/rds-csi",
	}
	if !reflect.DeepEqual(*o, want) {
		t.Errorf("parsed defaults:\n got %+v\nwant %+v", *o, want)
	}
}

func TestValidate(t *testing.T) {
	hostKey := newHostKey(t)
	tests := []struct {
		name    string
		args    []string
		wantErr string                // substring of the error; "" means accepted
		check   func(*options) string // for accepted cases: "" or what is wrong
	}{
		// modes and what each requires
		{name: "controller", args: controllerArgs},
		{name: "node", args: nodeArgs},
		{name: "all", args: allArgs},
		{name: "default mode is all and needs the controller flags", args: []string{"--node-id", "worker-1"}, wantErr: "--rds-address and --rds-key-file are required"},
		{name: "default mode is all and needs a node ID", args: allArgs[4:], wantErr: "--node-id is required"},
		{name: "unknown mode", args: with(allArgs, "--mode", "both"), wantErr: "--mode must be controller, node or all"},
		{name: "empty mode", args: with(allArgs, "--mode", ""), wantErr: "--mode"},
		{name: "controller needs no node ID", args: controllerArgs, check: func(o *options) string {
			if o.node() || !o.controller() {
				return "controller mode must serve the controller only"
			}
			return ""
		}},
		{name: "node needs no RDS flags", args: nodeArgs, check: func(o *options) string {
			if o.controller() || !o.node() {
				return "node mode must serve the node only"
			}
			if o.nvmeAddress != "" {
				return "node mode derived an NVMe address: " + o.nvmeAddress
			}
			return ""
		}},
		{name: "node without node ID", args: []string{"--mode", "node"}, wantErr: "--node-id is required"},
		{name: "all without node ID", args: with(allArgs, "--node-id", ""), wantErr: "--node-id is required"},
		{name: "controller without RDS address", args: with(controllerArgs, "--rds-address", ""), wantErr: "--rds-address and --rds-key-file are required"},
		{name: "controller without key file", args: with(controllerArgs, "--rds-key-file", ""), wantErr: "--rds-address and --rds-key-file are required"},
		{name: "all without key file", args: with(allArgs, "--rds-key-file", ""), wantErr: "--rds-key-file"},

		// host key verification: one of three ways, never none
		{name: "no way to verify the host key", args: with(controllerArgs, "--rds-known-hosts", ""), wantErr: "--rds-known-hosts or --rds-host-key"},
		{name: "explicit insecure opt-out", args: with(controllerArgs, "--rds-known-hosts", "", "--rds-insecure-skip-host-key-verification")},
		{name: "pinned host key is parsed", args: with(controllerArgs, "--rds-known-hosts", "", "--rds-host-key", hostKey),
			check: func(o *options) string {
				if o.hostKey == nil || string(ssh.MarshalAuthorizedKey(o.hostKey)) != hostKey+"\n" {
					return "host key not parsed from --rds-host-key"
				}
				return ""
			}},
		{name: "unparsable host key", args: with(controllerArgs, "--rds-host-key", "ssh-ed25519 not-base64"), wantErr: "--rds-host-key"},
		{name: "host key ignored in node mode", args: with(nodeArgs, "--rds-host-key", "garbage")},

		// RDS address and the NVMe address derived from it
		{name: "NVMe address is the RDS host", args: controllerArgs, check: wantNVMeAddress("10.0.0.1")},
		{name: "explicit NVMe address kept", args: with(controllerArgs, "--nvme-address", "10.0.1.1"), check: wantNVMeAddress("10.0.1.1")},
		{name: "IPv6 RDS address", args: with(controllerArgs, "--rds-address", "[fd00::1]:22"), check: wantNVMeAddress("fd00::1")},
		{name: "host name RDS address", args: with(controllerArgs, "--rds-address", "rds.lan:2222"), check: wantNVMeAddress("rds.lan")},
		{name: "RDS address without port", args: with(controllerArgs, "--rds-address", "10.0.0.1"), wantErr: "--rds-address"},
		{name: "RDS address with a named port", args: with(controllerArgs, "--rds-address", "10.0.0.1:ssh"), wantErr: "--rds-address: port"},
		{name: "RDS address port 0", args: with(controllerArgs, "--rds-address", "10.0.0.1:0"), wantErr: "--rds-address: port"},
		{name: "RDS address port too big", args: with(controllerArgs, "--rds-address", "10.0.0.1:65536"), wantErr: "--rds-address: port"},
		{name: "no sessions", args: with(controllerArgs, "--rds-max-sessions", "0"), wantErr: "--rds-max-sessions"},
		{name: "sessions not a number", args: with(controllerArgs, "--rds-max-sessions", "many"), wantErr: "rds-max-sessions"},

		// durations: parse errors, and zero or negative values that libraries would read as
		// "default" or "never"
		{name: "copy timeout", args: with(controllerArgs, "--rds-copy-timeout", "2h"), check: func(o *options) string {
			if o.rdsCopyTimeout != 2*time.Hour {
				return "rds-copy-timeout = " + o.rdsCopyTimeout.String()
			}
			return ""
		}},
		{name: "copy timeout zero", args: with(controllerArgs, "--rds-copy-timeout", "0"), wantErr: "--rds-copy-timeout must be positive"},
		{name: "copy timeout negative", args: with(allArgs, "--rds-copy-timeout", "-1m"), wantErr: "--rds-copy-timeout must be positive"},
		{name: "copy timeout without unit", args: with(controllerArgs, "--rds-copy-timeout", "30"), wantErr: "rds-copy-timeout"},
		{name: "copy timeout not a duration", args: with(controllerArgs, "--rds-copy-timeout", "long"), wantErr: "rds-copy-timeout"},
		{name: "command timeout zero", args: with(controllerArgs, "--rds-command-timeout", "0s"), wantErr: "--rds-command-timeout must be positive"},
		{name: "command timeout not a duration", args: with(controllerArgs, "--rds-command-timeout", "1x"), wantErr: "rds-command-timeout"},
		{name: "keepalive negative", args: with(controllerArgs, "--rds-keepalive-interval", "-15s"), wantErr: "--rds-keepalive-interval must be positive"},
		{name: "reconcile interval zero", args: with(controllerArgs, "--reconcile-interval", "0"), wantErr: "--reconcile-interval must be positive"},
		{name: "reconcile interval", args: with(controllerArgs, "--reconcile-interval", "1h"), check: func(o *options) string {
			if o.reconcileInterval != time.Hour {
				return "reconcile-interval = " + o.reconcileInterval.String()
			}
			return ""
		}},
		{name: "controller durations ignored in node mode", args: with(nodeArgs, "--rds-copy-timeout", "0", "--reconcile-interval", "-1s")},
		{name: "mount timeout zero", args: with(nodeArgs, "--mount-timeout", "0"), wantErr: "--mount-timeout must be positive"},
		{name: "node state dir may be disabled", args: with(nodeArgs, "--node-state-dir", "")},
		{name: "nvme command timeout zero", args: with(nodeArgs, "--nvme-command-timeout", "0"), wantErr: "--nvme-command-timeout must be positive"},
		{name: "nvme command timeout not a duration", args: with(nodeArgs, "--nvme-command-timeout", "soon"), wantErr: "nvme-command-timeout"},

		// volume defaults, checked in every mode
		{name: "nvme port lowest", args: with(allArgs, "--nvme-port", "1")},
		{name: "nvme port highest", args: with(allArgs, "--nvme-port", "65535")},
		{name: "nvme port zero", args: with(allArgs, "--nvme-port", "0"), wantErr: "--nvme-port"},
		{name: "nvme port too big", args: with(controllerArgs, "--nvme-port", "65536"), wantErr: "--nvme-port"},
		{name: "nvme port negative", args: with(nodeArgs, "--nvme-port", "-4420"), wantErr: "--nvme-port"},
		{name: "nvme port not a number", args: with(allArgs, "--nvme-port", "nvme"), wantErr: "nvme-port"},
		{name: "xfs", args: with(allArgs, "--default-fs-type", "xfs")},
		{name: "btrfs", args: with(allArgs, "--default-fs-type", "btrfs"), wantErr: "--default-fs-type must be ext4 or xfs"},
		{name: "fs type is case sensitive", args: with(nodeArgs, "--default-fs-type", "EXT4"), wantErr: "--default-fs-type"},
		{name: "empty fs type", args: with(controllerArgs, "--default-fs-type", ""), wantErr: "--default-fs-type"},
		{name: "volume path", args: with(allArgs, "--volume-path", "/pool/k8s")},
		{name: "relative volume path", args: with(allArgs, "--volume-path", "pool/k8s"), wantErr: "--volume-path"},
		{name: "volume path with ..", args: with(controllerArgs, "--volume-path", "/pool/../etc"), wantErr: "--volume-path"},
		{name: "volume path with a space", args: with(controllerArgs, "--volume-path", "/pool/my volumes"), wantErr: "--volume-path"},

		// node initiator backends
		{name: "loop backend", args: with(nodeArgs, "--nvme-backend", "loop", "--loop-root", "/var/lib/rdssim")},
		{name: "loop backend without root", args: with(nodeArgs, "--nvme-backend", "loop"), wantErr: "--loop-root"},
		{name: "loop backend without root, controller only", args: with(controllerArgs, "--nvme-backend", "loop")},
		{name: "unknown backend", args: with(nodeArgs, "--nvme-backend", "spdk"), wantErr: "--nvme-backend must be nvme or loop"},

		// endpoint, as driver.Listen reads it
		{name: "tcp endpoint", args: with(allArgs, "--endpoint", "tcp://127.0.0.1:10000")},
		{name: "unix endpoint", args: with(allArgs, "--endpoint", "unix:///var/lib/kubelet/plugins/rds/csi.sock")},
		{name: "tcp endpoint without port", args: with(allArgs, "--endpoint", "tcp://127.0.0.1"), wantErr: "--endpoint"},
		{name: "unix endpoint without path", args: with(allArgs, "--endpoint", "unix://"), wantErr: "no socket path"},
		{name: "endpoint without scheme", args: with(nodeArgs, "--endpoint", "/csi/csi.sock"), wantErr: "scheme must be unix or tcp"},
		{name: "http endpoint", args: with(controllerArgs, "--endpoint", "http://localhost:80"), wantErr: "scheme must be unix or tcp"},

		// metrics and the rest
		{name: "metrics address", args: with(allArgs, "--metrics-address", ":9809")},
		{name: "metrics address without port", args: with(allArgs, "--metrics-address", "9809"), wantErr: "--metrics-address"},

		// liveness endpoint, in every mode
		{name: "health address, controller", args: with(controllerArgs, "--health-address", ":9808")},
		{name: "health address, node", args: with(nodeArgs, "--health-address", "127.0.0.1:9808")},
		{name: "health address beside metrics", args: with(allArgs, "--health-address", ":9808", "--metrics-address", ":9809")},
		{name: "health address without port", args: with(nodeArgs, "--health-address", "9808"), wantErr: "--health-address"},
		{name: "health address same as metrics", args: with(controllerArgs, "--health-address", ":9809", "--metrics-address", ":9809"), wantErr: "--health-address and --metrics-address must differ"},

		// kubelet registration, as the chart passes it
		{name: "kubelet dir, node", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock")},
		{name: "kubelet dir, all", args: with(allArgs, "--kubelet-dir", "/var/lib/k0s/kubelet/",
			"--endpoint", "unix:///var/lib/k0s/kubelet/plugins/rds.csi.srvlab.io/csi.sock")},
		{name: "kubelet dir, controller", args: with(controllerArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock"), wantErr: "--kubelet-dir is for node and all modes"},
		{name: "kubelet dir relative", args: with(nodeArgs, "--kubelet-dir", "var/lib/kubelet",
			"--endpoint", "unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock"), wantErr: "not an absolute path"},
		{name: "kubelet dir with the default endpoint", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet"), wantErr: "must lie under --kubelet-dir"},
		{name: "kubelet dir, endpoint in a sibling directory", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "unix:///var/lib/kubelet-other/plugins/d/csi.sock"), wantErr: "must lie under --kubelet-dir"},
		{name: "kubelet dir, endpoint escaping with ..", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "unix:///var/lib/kubelet/../csi.sock"), wantErr: "must lie under --kubelet-dir"},
		{name: "kubelet dir, tcp endpoint", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "tcp://127.0.0.1:10000"), wantErr: "needs a unix:// --endpoint"},
		{name: "kubelet dir, relative unix endpoint", args: with(nodeArgs, "--kubelet-dir", "/var/lib/kubelet",
			"--endpoint", "unix://csi.sock"), wantErr: "needs a unix:// --endpoint"},
		{name: "known nodes repeat", args: with(allArgs, "--known-node", "worker-2", "--known-node", "worker-3"), check: func(o *options) string {
			if !reflect.DeepEqual([]string(o.knownNodes), []string{"worker-2", "worker-3"}) {
				return "known nodes: " + o.knownNodes.String()
			}
			return ""
		}},
		{name: "unknown flag", args: with(allArgs, "--rds-copy-deadline", "1h"), wantErr: "flag provided but not defined"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseArgs(tc.args...)
			switch {
			case tc.wantErr == "" && err != nil:
				t.Fatalf("%q refused: %v", tc.args, err)
			case tc.wantErr != "" && err == nil:
				t.Fatalf("%q accepted, want an error about %q", tc.args, tc.wantErr)
			case tc.wantErr != "" && !strings.Contains(err.Error(), tc.wantErr):
				t.Fatalf("%q: error %q does not mention %q", tc.args, err, tc.wantErr)
			}
			if tc.check != nil && err == nil {
				if msg := tc.check(o); msg != "" {
					t.Error(msg)
				}
			}
		})
	}
}

// TestVersionFlag: --version needs no other flag, because main prints the version before it
// validates anything.
func TestVersionFlag(t *testing.T) {
	fs := flag.NewFlagSet("rds-csi", flag.ContinueOnError)
	var o options
	o.register(fs)
	if err := fs.Parse([]string{"--version"}); err != nil || !o.version {
		t.Fatalf("--version: err %v, version %v", err, o.version)
	}
}

// TestNodeConfig: the NVMe flags reach the initiator, which refuses values validate leaves to it
// (the tunables' ranges belong to pkg/nvme). Nothing is connected or attached here.
func TestNodeConfig(t *testing.T) {
	root := t.TempDir()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{"nvme-cli defaults", nodeArgs, ""},
		{"nvme-cli tunables", with(nodeArgs, "--nvme-ctrl-loss-tmo", "600", "--nvme-reconnect-delay", "10", "--nvme-keep-alive-tmo", "30"), ""},
		{"host NQN", with(nodeArgs, "--nvme-host-nqn", "nqn.2014-08.org.nvmexpress:uuid:7b3f2c1e-0000-4000-8000-000000000001"), ""},
		{"bad host NQN", with(nodeArgs, "--nvme-host-nqn", "worker-1"), "host NQN"},
		{"ctrl loss below -1", with(nodeArgs, "--nvme-ctrl-loss-tmo", "-2"), "ctrl-loss-tmo"},
		{"reconnect delay above an hour", with(nodeArgs, "--nvme-reconnect-delay", "3601"), "reconnect-delay"},
		{"keep-alive negative", with(nodeArgs, "--nvme-keep-alive-tmo", "-5"), "keep-alive-tmo"},
		{"loop backend", with(nodeArgs, "--nvme-backend", "loop", "--loop-root", root), ""},
		{"loop root relative", with(nodeArgs, "--nvme-backend", "loop", "--loop-root", "data"), "loop root"},
		{"loop root missing", with(nodeArgs, "--nvme-backend", "loop", "--loop-root", root+"/missing"), "loop root"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, err := parseArgs(tc.args...)
			if err != nil {
				t.Fatalf("flags refused: %v", err)
			}
			cfg, err := newNodeConfig(o)
			switch {
			case tc.wantErr == "" && (err != nil || cfg == nil || cfg.Initiator == nil):
				t.Fatalf("newNodeConfig: %v", err)
			case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
				t.Fatalf("newNodeConfig: err %v, want one about %q", err, tc.wantErr)
			}
		})
	}
}

func wantNVMeAddress(addr string) func(*options) string {
	return func(o *options) string {
		if o.nvmeAddress != addr {
			return "nvme address = " + o.nvmeAddress + ", want " + addr
		}
		return ""
	}
}

// newHostKey returns a fresh host public key in authorized_keys format, as --rds-host-key takes it.
func newHostKey(t *testing.T) string {
	t.Helper()
	pub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	k, err := ssh.NewPublicKey(pub)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(string(ssh.MarshalAuthorizedKey(k)))
}
