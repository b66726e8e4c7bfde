package nvme

import (
	"cmp"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// LoopConfig configures the loop initiator.
type LoopConfig struct {
	Root           string        // the simulator's data directory; Target.FilePath is relative to it
	Runner         Runner        // nil → ExecRunner{Timeout: CommandTimeout}
	SysfsRoot      string        // "" → /sys
	DevRoot        string        // "" → /dev
	LosetupPath    string        // "" → losetup
	CommandTimeout time.Duration // per losetup call; 0 → DefaultCommandTimeout
}

// Loop attaches the simulator's backing files as loop devices: <Root>/<Target.FilePath>. The
// device of an NQN is the loop device whose backing file is that file; after a restart, when the
// file of an NQN is not known, it is the loop device backed by <slot>.img somewhere under Root.
type Loop struct {
	cfg   LoopConfig
	root  string // Root with symlinks resolved, as the kernel reports backing files
	mu    sync.Mutex
	files map[string]string // NQN → backing file (a cache: sysfs is always asked)
}

var _ Initiator = (*Loop)(nil)

var loopRE = regexp.MustCompile(`^loop[0-9]+$`)

// NewLoop builds the loop initiator.
func NewLoop(cfg LoopConfig) (*Loop, error) {
	if cfg.Root == "" || !filepath.IsAbs(cfg.Root) {
		return nil, fmt.Errorf("%w: loop root %q must be an absolute directory", ErrInvalid, cfg.Root)
	}
	root, err := filepath.EvalSymlinks(cfg.Root)
	if err != nil {
		return nil, fmt.Errorf("loop root: %w", err)
	}
	cfg.SysfsRoot = cmp.Or(cfg.SysfsRoot, "/sys")
	cfg.DevRoot = cmp.Or(cfg.DevRoot, "/dev")
	cfg.LosetupPath = cmp.Or(cfg.LosetupPath, "losetup")
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = DefaultCommandTimeout
	}
	if cfg.Runner == nil {
		cfg.Runner = ExecRunner{Timeout: cfg.CommandTimeout}
	}
	return &Loop{cfg: cfg, root: root, files: map[string]string{}}, nil
}

// backingFile resolves a target's file path under Root.
func (l *Loop) backingFile(filePath string) (string, error) {
	if err := volid.ValidatePath(filePath); err != nil {
		return "", fmt.Errorf("%w: file path: %v", ErrInvalid, err)
	}
	return filepath.Join(l.root, filePath), nil
}

// attached lists loop devices (names, sorted by number) whose backing file matches.
func (l *Loop) attached(match func(backing string) bool) ([]string, error) {
	blockDir := filepath.Join(l.cfg.SysfsRoot, "block")
	names, err := readDirNames(blockDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", blockDir, err)
	}
	var found []string
	for _, n := range names {
		if !loopRE.MatchString(n) {
			continue
		}
		b, err := readAttr(filepath.Join(blockDir, n, "loop", "backing_file"))
		if err != nil {
			continue // not attached
		}
		if strings.HasSuffix(b, " (deleted)") {
			continue
		}
		if match(b) {
			found = append(found, n)
		}
	}
	sort.Slice(found, func(i, j int) bool {
		if len(found[i]) != len(found[j]) {
			return len(found[i]) < len(found[j])
		}
		return found[i] < found[j]
	})
	return found, nil
}

// devicesOf lists the loop devices of an NQN: those backed by its known file, or else by
// <slot>.img under Root.
func (l *Loop) devicesOf(nqn string) ([]string, error) {
	if err := validateNQN(nqn); err != nil {
		return nil, err
	}
	slot, err := SlotOf(nqn)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrNotConnected, err)
	}
	l.mu.Lock()
	file, known := l.files[nqn]
	l.mu.Unlock()
	if known {
		return l.attached(func(b string) bool { return b == file })
	}
	prefix := l.root + string(filepath.Separator)
	return l.attached(func(b string) bool {
		return strings.HasPrefix(b, prefix) && filepath.Base(b) == slot+".img"
	})
}

// Connect implements Initiator: an attached file is reused, otherwise losetup attaches it.
func (l *Loop) Connect(ctx context.Context, t Target) (string, error) {
	if err := validateNQN(t.NQN); err != nil {
		return "", err
	}
	if t.FilePath == "" {
		return "", fmt.Errorf("%w: the loop backend needs the volume's file path", ErrInvalid)
	}
	file, err := l.backingFile(t.FilePath)
	if err != nil {
		return "", err
	}
	st, err := os.Stat(file)
	if os.IsNotExist(err) {
		return "", fmt.Errorf("%w: backing file %s does not exist", ErrNotFound, file)
	}
	if err != nil {
		return "", err
	}
	if !st.Mode().IsRegular() {
		return "", fmt.Errorf("%w: backing file %s is not a regular file", ErrInvalid, file)
	}
	l.mu.Lock()
	defer l.mu.Unlock() // one attach at a time: two losetup --find for one file would double-attach it
	l.files[t.NQN] = file
	devs, err := l.attached(func(b string) bool { return b == file })
	if err != nil {
		return "", err
	}
	if len(devs) > 0 {
		return filepath.Join(l.cfg.DevRoot, devs[0]), nil
	}
	out, err := l.cfg.Runner.Run(ctx, l.cfg.LosetupPath, "--find", "--show", "--direct-io=off", file)
	if err != nil {
		return "", fmt.Errorf("%w: losetup %s: %v", ErrUnavailable, file, err)
	}
	dev := strings.TrimSpace(string(out))
	name := filepath.Base(dev)
	if !strings.HasPrefix(dev, "/dev/") || !loopRE.MatchString(name) {
		return "", fmt.Errorf("losetup printed %q, not a loop device", dev)
	}
	klog.V(2).InfoS("Loop device attached", "nqn", t.NQN, "file", file, "device", name)
	return filepath.Join(l.cfg.DevRoot, name), nil
}

// Device implements Initiator.
func (l *Loop) Device(_ context.Context, nqn string) (string, error) {
	devs, err := l.devicesOf(nqn)
	if err != nil {
		return "", err
	}
	if len(devs) == 0 {
		return "", fmt.Errorf("%w: %s", ErrNotConnected, nqn)
	}
	if len(devs) > 1 {
		klog.InfoS("Backing file attached to several loop devices, using the first", "nqn", nqn, "devices", devs)
	}
	return filepath.Join(l.cfg.DevRoot, devs[0]), nil
}

// Disconnect implements Initiator: every loop device of the NQN is detached.
func (l *Loop) Disconnect(ctx context.Context, nqn string) error {
	if !volid.Owned(nqn) {
		return fmt.Errorf("%w: refusing to disconnect %q", ErrNotOwned, nqn)
	}
	if err := validateNQN(nqn); err != nil {
		return err
	}
	devs, err := l.devicesOf(nqn)
	if err != nil {
		return err
	}
	for _, d := range devs {
		if _, err := l.cfg.Runner.Run(ctx, l.cfg.LosetupPath, "-d", filepath.Join(l.cfg.DevRoot, d)); err != nil {
			return fmt.Errorf("losetup -d %s: %w", d, err)
		}
		klog.V(2).InfoS("Loop device detached", "nqn", nqn, "device", d)
	}
	// losetup -d of a device that something still holds open (udev's probe, a late umount) only
	// marks it to be cleared on its last close and succeeds: the device is gone only when sysfs
	// says so, and a disconnect that has not happened yet is not reported as done.
	if len(devs) > 0 {
		err := waitFor(ctx, l.cfg.CommandTimeout, 20*time.Millisecond, func() (bool, error) {
			left, err := l.devicesOf(nqn)
			return len(left) == 0, err
		})
		if err != nil {
			return fmt.Errorf("%w: loop device of %s still attached after losetup -d (held open?): %v", ErrUnavailable, nqn, err)
		}
	}
	l.mu.Lock()
	delete(l.files, nqn)
	l.mu.Unlock()
	return nil
}

// Rescan implements Initiator: losetup -c makes the loop device take the file's new size.
func (l *Loop) Rescan(ctx context.Context, nqn string) error {
	devs, err := l.devicesOf(nqn)
	if err != nil {
		return err
	}
	if len(devs) == 0 {
		return fmt.Errorf("%w: %s", ErrNotConnected, nqn)
	}
	for _, d := range devs {
		if _, err := l.cfg.Runner.Run(ctx, l.cfg.LosetupPath, "-c", filepath.Join(l.cfg.DevRoot, d)); err != nil {
			return fmt.Errorf("losetup -c %s: %w", d, err)
		}
	}
	return nil
}
