package nvme

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// CLIConfig configures the NVMe/TCP initiator.
type CLIConfig struct {
	Runner         Runner        // nil → ExecRunner{Timeout: CommandTimeout}
	SysfsRoot      string        // "" → /sys
	DevRoot        string        // "" → /dev
	NVMePath       string        // "" → nvme
	HostNQN        string        // "" → nvme-cli's default (/etc/nvme/hostnqn)
	CommandTimeout time.Duration // per nvme-cli call; 0 → DefaultCommandTimeout
	DeviceWait     time.Duration // how long Connect waits for the namespace; 0 → 30s
	PollInterval   time.Duration // 0 → 100ms

	// Defaults for targets that leave them at zero; zero here leaves nvme-cli's default.
	CtrlLossTmo    int
	ReconnectDelay int
	KeepAliveTmo   int
}

// CLI is the real NVMe/TCP initiator: nvme-cli for connect, disconnect and rescan, sysfs for
// everything it needs to know.
type CLI struct {
	cfg   CLIConfig
	sysfs nvmeSysfs
}

var _ Initiator = (*CLI)(nil)
var _ HealthChecker = (*CLI)(nil)

var (
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9.-]{0,251}[A-Za-z0-9])?$`)
	hostNQNRE  = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[A-Za-z0-9.-]+:[A-Za-z0-9._:-]+$`)
)

// NewCLI builds the NVMe/TCP initiator.
func NewCLI(cfg CLIConfig) (*CLI, error) {
	cfg.SysfsRoot = cmp.Or(cfg.SysfsRoot, "/sys")
	cfg.DevRoot = cmp.Or(cfg.DevRoot, "/dev")
	cfg.NVMePath = cmp.Or(cfg.NVMePath, "nvme")
	if cfg.Runner == nil {
		cfg.Runner = ExecRunner{Timeout: cfg.CommandTimeout}
	}
	if cfg.DeviceWait <= 0 {
		cfg.DeviceWait = 30 * time.Second
	}
	if cfg.HostNQN != "" && (len(cfg.HostNQN) > 223 || !hostNQNRE.MatchString(cfg.HostNQN)) {
		return nil, fmt.Errorf("%w: host NQN %q", ErrInvalid, cfg.HostNQN)
	}
	if err := validateTimeouts(cfg.CtrlLossTmo, cfg.ReconnectDelay, cfg.KeepAliveTmo); err != nil {
		return nil, err
	}
	return &CLI{cfg: cfg, sysfs: nvmeSysfs{root: cfg.SysfsRoot}}, nil
}

func validateTimeouts(ctrlLoss, reconnect, keepAlive int) error {
	const maxTmo = 7 * 24 * 3600
	if ctrlLoss < -1 || ctrlLoss > maxTmo {
		return fmt.Errorf("%w: ctrl-loss-tmo %d must be -1 (forever), 0 (default) or 1-%d seconds", ErrInvalid, ctrlLoss, maxTmo)
	}
	if reconnect < 0 || reconnect > 3600 {
		return fmt.Errorf("%w: reconnect-delay %d must be 0 (default) or 1-3600 seconds", ErrInvalid, reconnect)
	}
	if keepAlive < 0 || keepAlive > 3600 {
		return fmt.Errorf("%w: keep-alive-tmo %d must be 0 (default) or 1-3600 seconds", ErrInvalid, keepAlive)
	}
	return nil
}

func validateTarget(t Target) error {
	if err := validateNQN(t.NQN); err != nil {
		return err
	}
	if net.ParseIP(t.Address) == nil && !hostnameRE.MatchString(t.Address) {
		return fmt.Errorf("%w: address %q is neither an IP address nor a host name", ErrInvalid, t.Address)
	}
	if t.Port < 1 || t.Port > 65535 {
		return fmt.Errorf("%w: port %d is outside 1-65535", ErrInvalid, t.Port)
	}
	return validateTimeouts(t.CtrlLossTmo, t.ReconnectDelay, t.KeepAliveTmo)
}

func pick(v, def int) int {
	if v != 0 {
		return v
	}
	return def
}

// connectArgs is the nvme-cli command line for a target.
func (c *CLI) connectArgs(t Target) []string {
	args := []string{"connect", "-t", "tcp", "-a", t.Address, "-s", strconv.Itoa(t.Port), "-n", t.NQN}
	if c.cfg.HostNQN != "" {
		args = append(args, "--hostnqn", c.cfg.HostNQN)
	}
	if v := pick(t.CtrlLossTmo, c.cfg.CtrlLossTmo); v != 0 {
		args = append(args, "--ctrl-loss-tmo", strconv.Itoa(v))
	}
	if v := pick(t.ReconnectDelay, c.cfg.ReconnectDelay); v != 0 {
		args = append(args, "--reconnect-delay", strconv.Itoa(v))
	}
	if v := pick(t.KeepAliveTmo, c.cfg.KeepAliveTmo); v != 0 {
		args = append(args, "--keep-alive-tmo", strconv.Itoa(v))
	}
	return args
}

// Connect implements Initiator. A subsystem that already has a controller for the NQN is not
// connected a second time (that would make a duplicate path); Connect then waits for its namespace.
func (c *CLI) Connect(ctx context.Context, t Target) (string, error) {
	if err := validateTarget(t); err != nil {
		return "", err
	}
	v, err := c.sysfs.view(t.NQN)
	if err != nil {
		return "", err
	}
	if len(v.controllers) == 0 {
		out, err := c.cfg.Runner.Run(ctx, c.cfg.NVMePath, c.connectArgs(t)...)
		if err != nil && !alreadyConnected(out, err) {
			if ctx.Err() != nil {
				return "", fmt.Errorf("nvme connect %s: %w", t.NQN, err)
			}
			return "", fmt.Errorf("%w: nvme connect %s at %s:%d: %v", ErrUnavailable, t.NQN, t.Address, t.Port, err)
		}
		klog.V(2).InfoS("NVMe/TCP subsystem connected", "nqn", t.NQN, "address", t.Address, "port", t.Port)
	} else {
		klog.V(4).InfoS("NVMe subsystem already has controllers, not connecting again", "nqn", t.NQN, "controllers", v.describeControllers())
	}
	var dev string
	err = waitFor(ctx, c.cfg.DeviceWait, c.cfg.PollInterval, func() (bool, error) {
		d, err := c.Device(ctx, t.NQN)
		if errors.Is(err, ErrNotConnected) {
			return false, nil
		}
		if err != nil {
			return false, err
		}
		if _, err := os.Stat(d); err != nil {
			return false, nil // sysfs is there, the device node not yet
		}
		dev = d
		return true, nil
	})
	if err != nil {
		return "", fmt.Errorf("waiting for the namespace of %s: %w", t.NQN, err)
	}
	return dev, nil
}

func alreadyConnected(out []byte, err error) bool {
	msg := strings.ToLower(string(out) + " " + err.Error())
	return strings.Contains(msg, "already connected") || strings.Contains(msg, "operation already in progress")
}

// view validates an NQN before reading its subsystem from sysfs, so that no malformed name is
// ever joined into a sysfs path.
func (c *CLI) view(nqn string) (*subsystemView, error) {
	if err := validateNQN(nqn); err != nil {
		return nil, err
	}
	return c.sysfs.view(nqn)
}

// Device implements Initiator.
func (c *CLI) Device(_ context.Context, nqn string) (string, error) {
	v, err := c.view(nqn)
	if err != nil {
		return "", err
	}
	name, err := v.namespace(nqn)
	if err != nil {
		return "", err
	}
	return filepath.Join(c.cfg.DevRoot, name), nil
}

// Disconnect implements Initiator. NQNs not owned by this driver are refused.
func (c *CLI) Disconnect(ctx context.Context, nqn string) error {
	if !volid.Owned(nqn) {
		return fmt.Errorf("%w: refusing to disconnect %q", ErrNotOwned, nqn)
	}
	v, err := c.view(nqn)
	if err != nil {
		return err
	}
	if len(v.controllers) == 0 && len(v.namespaces) == 0 {
		return nil
	}
	if _, err := c.cfg.Runner.Run(ctx, c.cfg.NVMePath, "disconnect", "-n", nqn); err != nil {
		return fmt.Errorf("nvme disconnect %s: %w", nqn, err)
	}
	klog.V(2).InfoS("NVMe subsystem disconnected", "nqn", nqn, "controllers", v.describeControllers())
	return nil
}

// Rescan implements Initiator: every controller of the subsystem rescans its namespaces.
func (c *CLI) Rescan(ctx context.Context, nqn string) error {
	v, err := c.view(nqn)
	if err != nil {
		return err
	}
	ctrls := v.controllerNames()
	if len(ctrls) == 0 {
		return fmt.Errorf("%w: %s", ErrNotConnected, nqn)
	}
	var errs []error
	rescanned := 0
	for _, ctrl := range ctrls {
		if v.controllers[ctrl] != "live" {
			continue // a reconnecting controller rescans by itself once live
		}
		if _, err := c.cfg.Runner.Run(ctx, c.cfg.NVMePath, "ns-rescan", filepath.Join(c.cfg.DevRoot, ctrl)); err != nil {
			errs = append(errs, fmt.Errorf("nvme ns-rescan %s: %w", ctrl, err))
			continue
		}
		rescanned++
	}
	if rescanned == 0 && len(errs) == 0 {
		return fmt.Errorf("%w: no live controller for %s (%s)", ErrUnavailable, nqn, v.describeControllers())
	}
	if rescanned == 0 {
		return errors.Join(errs...)
	}
	return nil
}

// Health implements HealthChecker: a volume is healthy when its namespace is present and at least
// one controller is live.
func (c *CLI) Health(_ context.Context, nqn string) error {
	v, err := c.view(nqn)
	if err != nil {
		return err
	}
	if _, err := v.namespace(nqn); err != nil {
		return err
	}
	if !v.anyLive() {
		return fmt.Errorf("%w: no live controller for %s (%s)", ErrUnavailable, nqn, v.describeControllers())
	}
	return nil
}
