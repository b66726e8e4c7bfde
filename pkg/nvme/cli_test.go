package nvme

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

func newTestCLI(t *testing.T, tree string, r *fakeRunner, cfg CLIConfig) (*CLI, string) {
	t.Helper()
	sys := t.TempDir()
	if tree != "" {
		copyTree(t, tree, sys, "")
	}
	cfg.SysfsRoot = sys
	if cfg.DevRoot == "" {
		cfg.DevRoot = fakeDev(t, "nvme0n1", "nvme1n1", "nvme3n1", "nvme4n1")
	}
	cfg.Runner = r
	if cfg.PollInterval == 0 {
		cfg.PollInterval = time.Millisecond
	}
	c, err := NewCLI(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return c, sys
}

func TestCLIDevice(t *testing.T) {
	tests := []struct {
		tree, nqn, want string
		wantErr         error
	}{
		{tree: "single", nqn: nqnA, want: "nvme0n1"},
		{tree: "single", nqn: nqnB, want: "nvme1n1"},
		{tree: "renumbered", nqn: nqnA, want: "nvme3n1"},
		{tree: "renumbered", nqn: nqnB, want: "nvme1n1"},
		{tree: "multipath", nqn: nqnA, want: "nvme0n1"},
		{tree: "nonmultipath", nqn: nqnA, want: "nvme4n1"},
		{tree: "reconnecting", nqn: nqnA, want: "nvme0n1"},
		{tree: "reconnecting", nqn: nqnB, wantErr: ErrNotConnected},
		{tree: "none", nqn: nqnA, wantErr: ErrNotConnected},
		{tree: "", nqn: nqnA, wantErr: ErrNotConnected},
		{tree: "single", nqn: nqnC, wantErr: ErrNotConnected},
		{tree: "single", nqn: "NQN.bad", wantErr: ErrInvalid},
	}
	for _, tc := range tests {
		t.Run(tc.tree+"/"+tc.nqn, func(t *testing.T) {
			r := &fakeRunner{}
			c, _ := newTestCLI(t, tc.tree, r, CLIConfig{DevRoot: "/dev"})
			got, err := c.Device(context.Background(), tc.nqn)
			if tc.wantErr != nil {
				if !errors.Is(err, tc.wantErr) {
					t.Fatalf("Device = %q, %v; want %v", got, err, tc.wantErr)
				}
				return
			}
			if err != nil || got != "/dev/"+tc.want {
				t.Fatalf("Device = %q, %v; want /dev/%s", got, err, tc.want)
			}
			sameCalls(t, r.Calls(), nil)
		})
	}
}

func TestCLIConnectCommandLine(t *testing.T) {
	base := "nvme connect -t tcp -a 10.0.0.5 -s 4420 -n " + nqnA
	tests := []struct {
		name   string
		cfg    CLIConfig
		target Target
		want   string
	}{
		{name: "defaults", target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420}, want: base},
		{name: "config defaults", cfg: CLIConfig{HostNQN: "nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-aaaa-bbbb-cccc-000000000001", CtrlLossTmo: 600, ReconnectDelay: 5, KeepAliveTmo: 10},
			target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420},
			want:   base + " --hostnqn nqn.2014-08.org.nvmexpress:uuid:0f1e2d3c-aaaa-bbbb-cccc-000000000001 --ctrl-loss-tmo 600 --reconnect-delay 5 --keep-alive-tmo 10"},
		{name: "target overrides", cfg: CLIConfig{CtrlLossTmo: 600, ReconnectDelay: 5},
			target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420, CtrlLossTmo: -1, ReconnectDelay: 2, KeepAliveTmo: 7},
			want:   base + " --ctrl-loss-tmo -1 --reconnect-delay 2 --keep-alive-tmo 7"},
		{name: "host name and port", target: Target{NQN: nqnA, Address: "rds.example.org", Port: 4421},
			want: "nvme connect -t tcp -a rds.example.org -s 4421 -n " + nqnA},
		{name: "ipv6", target: Target{NQN: nqnA, Address: "fd00::5", Port: 4420},
			want: "nvme connect -t tcp -a fd00::5 -s 4420 -n " + nqnA},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{}
			c, sys := newTestCLI(t, "none", r, tc.cfg)
			r.respond = func(line string) ([]byte, error) {
				copyTree(t, "single", sys, "") // the kernel creates the subsystem
				return nil, nil
			}
			dev, err := c.Connect(context.Background(), tc.target)
			if err != nil {
				t.Fatal(err)
			}
			if filepath.Base(dev) != "nvme0n1" {
				t.Fatalf("device %q, want nvme0n1", dev)
			}
			sameCalls(t, r.Calls(), []string{tc.want})
		})
	}
}

func TestCLIConnectIdempotent(t *testing.T) {
	t.Run("already connected in sysfs", func(t *testing.T) {
		r := &fakeRunner{}
		c, _ := newTestCLI(t, "renumbered", r, CLIConfig{})
		dev, err := c.Connect(context.Background(), Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420})
		if err != nil || filepath.Base(dev) != "nvme3n1" {
			t.Fatalf("Connect = %q, %v", dev, err)
		}
		sameCalls(t, r.Calls(), nil)
	})
	t.Run("nvme-cli says already connected", func(t *testing.T) {
		r := &fakeRunner{}
		c, sys := newTestCLI(t, "none", r, CLIConfig{})
		r.respond = func(string) ([]byte, error) {
			copyTree(t, "single", sys, "")
			return nil, &CommandError{Command: "nvme connect", ExitCode: 114, Output: "already connected", Err: errors.New("exit status 114")}
		}
		dev, err := c.Connect(context.Background(), Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420})
		if err != nil || filepath.Base(dev) != "nvme0n1" {
			t.Fatalf("Connect = %q, %v", dev, err)
		}
	})
	t.Run("controller without namespace is awaited, not reconnected", func(t *testing.T) {
		r := &fakeRunner{}
		c, _ := newTestCLI(t, "reconnecting", r, CLIConfig{DeviceWait: 20 * time.Millisecond})
		_, err := c.Connect(context.Background(), Target{NQN: nqnB, Address: "10.0.0.5", Port: 4420})
		if !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Connect error %v, want ErrUnavailable", err)
		}
		sameCalls(t, r.Calls(), nil)
	})
	t.Run("missing device node is not a device", func(t *testing.T) {
		r := &fakeRunner{}
		c, sys := newTestCLI(t, "none", r, CLIConfig{DevRoot: t.TempDir(), DeviceWait: 20 * time.Millisecond})
		r.respond = func(string) ([]byte, error) { copyTree(t, "single", sys, ""); return nil, nil }
		if got, err := c.Connect(context.Background(), Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420}); !errors.Is(err, ErrUnavailable) {
			t.Fatalf("Connect = %q, %v; want ErrUnavailable while /dev has no node", got, err)
		}
	})
}

func TestCLIConnectErrors(t *testing.T) {
	tests := []struct {
		name    string
		target  Target
		fail    bool
		wantErr error
	}{
		{name: "option injection", target: Target{NQN: nqnA, Address: "-oops", Port: 4420}, wantErr: ErrInvalid},
		{name: "shell metacharacters", target: Target{NQN: nqnA, Address: "10.0.0.5;reboot", Port: 4420}, wantErr: ErrInvalid},
		{name: "empty address", target: Target{NQN: nqnA, Port: 4420}, wantErr: ErrInvalid},
		{name: "port zero", target: Target{NQN: nqnA, Address: "10.0.0.5"}, wantErr: ErrInvalid},
		{name: "port too big", target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 70000}, wantErr: ErrInvalid},
		{name: "bad NQN", target: Target{NQN: "nqn.2000-02.com.mikrotik:PVC A", Address: "10.0.0.5", Port: 4420}, wantErr: ErrInvalid},
		{name: "bad ctrl-loss-tmo", target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420, CtrlLossTmo: -5}, wantErr: ErrInvalid},
		{name: "bad keep-alive", target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420, KeepAliveTmo: -1}, wantErr: ErrInvalid},
		{name: "connect fails", target: Target{NQN: nqnA, Address: "10.0.0.5", Port: 4420}, fail: true, wantErr: ErrUnavailable},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{}
			if tc.fail {
				r.respond = func(string) ([]byte, error) {
					return nil, &CommandError{Command: "nvme connect", ExitCode: 1, Output: "could not add new controller: failed to connect", Err: errors.New("exit status 1")}
				}
			}
			c, _ := newTestCLI(t, "none", r, CLIConfig{})
			_, err := c.Connect(context.Background(), tc.target)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Connect error %v, want %v", err, tc.wantErr)
			}
			if !tc.fail {
				sameCalls(t, r.Calls(), nil)
			}
		})
	}
	if _, err := NewCLI(CLIConfig{HostNQN: "nqn.x; rm -rf /"}); !errors.Is(err, ErrInvalid) {
		t.Fatalf("NewCLI with a bad host NQN: %v", err)
	}
}

func TestCLIDisconnect(t *testing.T) {
	tests := []struct {
		name, tree, nqn string
		want            []string
		wantErr         error
	}{
		{name: "connected", tree: "single", nqn: nqnA, want: []string{"nvme disconnect -n " + nqnA}},
		{name: "renumbered", tree: "renumbered", nqn: nqnA, want: []string{"nvme disconnect -n " + nqnA}},
		{name: "controller without namespace", tree: "reconnecting", nqn: nqnB, want: []string{"nvme disconnect -n " + nqnB}},
		{name: "not connected", tree: "none", nqn: nqnA},
		{name: "not ours", tree: "none", nqn: "nqn.2014-08.org.nvmexpress.discovery", wantErr: ErrNotOwned},
		{name: "not ours either", tree: "single", nqn: "nqn.2001-01.com.example:pvc-11111111-1111-1111-1111-111111111111", wantErr: ErrNotOwned},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := &fakeRunner{}
			c, _ := newTestCLI(t, tc.tree, r, CLIConfig{})
			err := c.Disconnect(context.Background(), tc.nqn)
			if !errors.Is(err, tc.wantErr) {
				t.Fatalf("Disconnect error %v, want %v", err, tc.wantErr)
			}
			sameCalls(t, r.Calls(), tc.want)
		})
	}
}

func TestCLIRescanAndHealth(t *testing.T) {
	tests := []struct {
		tree, nqn            string
		wantRescan           []string
		rescanErr, healthErr error
	}{
		{tree: "single", nqn: nqnA, wantRescan: []string{"nvme ns-rescan DEV/nvme0"}},
		{tree: "multipath", nqn: nqnA, wantRescan: []string{"nvme ns-rescan DEV/nvme0"}},
		{tree: "renumbered", nqn: nqnA, wantRescan: []string{"nvme ns-rescan DEV/nvme5"}},
		{tree: "nonmultipath", nqn: nqnA, wantRescan: []string{"nvme ns-rescan DEV/nvme4"}},
		{tree: "reconnecting", nqn: nqnA, rescanErr: ErrUnavailable, healthErr: ErrUnavailable},
		{tree: "reconnecting", nqn: nqnB, rescanErr: ErrUnavailable, healthErr: ErrNotConnected},
		{tree: "none", nqn: nqnA, rescanErr: ErrNotConnected, healthErr: ErrNotConnected},
	}
	for _, tc := range tests {
		t.Run(tc.tree+"/"+tc.nqn, func(t *testing.T) {
			r := &fakeRunner{}
			dev := fakeDev(t)
			c, _ := newTestCLI(t, tc.tree, r, CLIConfig{DevRoot: dev})
			err := c.Rescan(context.Background(), tc.nqn)
			if !errors.Is(err, tc.rescanErr) {
				t.Fatalf("Rescan error %v, want %v", err, tc.rescanErr)
			}
			var want []string
			for _, w := range tc.wantRescan {
				want = append(want, "nvme ns-rescan "+dev+w[len("nvme ns-rescan DEV"):])
			}
			sameCalls(t, r.Calls(), want)
			if err := c.Health(context.Background(), tc.nqn); !errors.Is(err, tc.healthErr) {
				t.Fatalf("Health error %v, want %v", err, tc.healthErr)
			}
		})
	}
}

// TestCLISymlinkedSysfs lays the tree out like the kernel does: /sys/class entries are symlinks
// into /sys/devices, and subsystems link to their controllers.
func TestCLISymlinkedSysfs(t *testing.T) {
	sys := t.TempDir()
	mk := func(p, content string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sys, p), []byte(content+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	ln := func(target, p string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Dir(filepath.Join(sys, p)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(target, filepath.Join(sys, p)); err != nil {
			t.Fatal(err)
		}
	}
	mk("devices/virtual/nvme-subsystem/nvme-subsys7/subsysnqn", nqnA)
	mk("devices/virtual/nvme-subsystem/nvme-subsys7/nvme7n1/nsid", "1")
	mk("devices/virtual/nvme-fabrics/ctl/nvme9/subsysnqn", nqnA)
	mk("devices/virtual/nvme-fabrics/ctl/nvme9/state", "live")
	mk("devices/virtual/nvme-fabrics/ctl/nvme9/nvme7c9n1/nsid", "1")
	ln("../../devices/virtual/nvme-subsystem/nvme-subsys7", "class/nvme-subsystem/nvme-subsys7")
	ln("../../devices/virtual/nvme-fabrics/ctl/nvme9", "class/nvme/nvme9")
	ln("../../nvme-fabrics/ctl/nvme9", "devices/virtual/nvme-subsystem/nvme-subsys7/nvme9")
	r := &fakeRunner{}
	c, err := NewCLI(CLIConfig{SysfsRoot: sys, Runner: r})
	if err != nil {
		t.Fatal(err)
	}
	if dev, err := c.Device(context.Background(), nqnA); err != nil || dev != "/dev/nvme7n1" {
		t.Fatalf("Device = %q, %v", dev, err)
	}
	if err := c.Rescan(context.Background(), nqnA); err != nil {
		t.Fatal(err)
	}
	sameCalls(t, r.Calls(), []string{"nvme ns-rescan /dev/nvme9"})
}

func TestExecRunner(t *testing.T) {
	ctx := context.Background()
	out, err := ExecRunner{}.Run(ctx, "sh", "-c", "echo hello")
	if err != nil || string(out) != "hello\n" {
		t.Fatalf("Run = %q, %v", out, err)
	}
	_, err = ExecRunner{}.Run(ctx, "sh", "-c", "echo oops >&2; exit 3")
	var ce *CommandError
	if !errors.As(err, &ce) || ce.ExitCode != 3 || ce.Output != "oops" {
		t.Fatalf("Run error %#v", err)
	}
	_, err = ExecRunner{Timeout: 50 * time.Millisecond}.Run(ctx, "sleep", "10")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("a hung command returned %v, want a deadline error", err)
	}
}
