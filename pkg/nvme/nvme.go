// Package nvme attaches RDS volumes to this node. The NVMe/TCP initiator (nvme-cli plus sysfs) is
// the real one; the loop initiator attaches the simulator's backing files as loop devices so that
// the node service runs for real on machines without NVMe/TCP.
//
// Devices are always looked up through sysfs by NQN (or backing file): /dev/nvmeXnY names change
// after a reconnect, so a cached name is never trusted.
package nvme

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// Errors that keep their meaning through the node service (docs/design.md, principle 3). Errors returned
// by initiators wrap one of them when they can be classified.
var (
	// ErrNotConnected: no device for this NQN on this node.
	ErrNotConnected = errors.New("nvme: subsystem not connected")
	// ErrInvalid: a target field is malformed; nothing was run.
	ErrInvalid = errors.New("nvme: invalid target")
	// ErrNotOwned: the NQN does not belong to this driver; it is never disconnected.
	ErrNotOwned = errors.New("nvme: NQN not owned by this driver")
	// ErrNotFound: the volume does not exist where the target says (loop backend: no backing file).
	ErrNotFound = errors.New("nvme: volume not found")
	// ErrUnavailable: the target could not be reached or the device did not show up in time.
	ErrUnavailable = errors.New("nvme: target unavailable")
)

// Target says where a volume is exported. Zero timeouts mean "the initiator's default";
// CtrlLossTmo -1 means "reconnect forever".
type Target struct {
	NQN            string
	Address        string
	Port           int
	FilePath       string // backing file on the RDS; used by the loop backend only
	CtrlLossTmo    int    // seconds
	ReconnectDelay int    // seconds
	KeepAliveTmo   int    // seconds
}

// Initiator attaches and detaches volumes on this node.
type Initiator interface {
	// Connect attaches the target (idempotent: an attached target is reused) and returns the block
	// device once it is visible.
	Connect(ctx context.Context, t Target) (device string, err error)
	// Device returns the current block device of an NQN, looked up afresh; ErrNotConnected if none.
	Device(ctx context.Context, nqn string) (string, error)
	// Disconnect detaches an NQN owned by this driver; detaching an absent one succeeds.
	Disconnect(ctx context.Context, nqn string) error
	// Rescan makes the kernel re-read the size of the NQN's namespace.
	Rescan(ctx context.Context, nqn string) error
}

// HealthChecker is implemented by initiators that can tell whether an attached volume is usable
// (for example all NVMe controllers of the subsystem reconnecting). Optional.
type HealthChecker interface {
	Health(ctx context.Context, nqn string) error
}

// SlotOf returns the RDS slot (the CSI volume ID) of an NQN owned by this driver, with the
// initiator's error kinds: an NQN of another driver is never touched (ErrNotOwned).
func SlotOf(nqn string) (string, error) {
	if !volid.Owned(nqn) {
		return "", fmt.Errorf("%w: %q", ErrNotOwned, nqn)
	}
	slot, err := volid.SlotOfNQN(nqn)
	if err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return slot, nil
}

func validateNQN(nqn string) error {
	if err := volid.ValidateNQN(nqn); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	return nil
}

// Runner runs a command and returns its standard output. Implementations must honour ctx.
type Runner interface {
	Run(ctx context.Context, name string, args ...string) ([]byte, error)
}

// DefaultCommandTimeout bounds every command run by ExecRunner when the caller's context has a
// later deadline (or none).
const DefaultCommandTimeout = 30 * time.Second

// ExecRunner runs host commands with exec.CommandContext and a deadline on every call.
type ExecRunner struct {
	Timeout time.Duration // per command; DefaultCommandTimeout when zero
}

// CommandError is a failed command with its output, safe to log: command lines only hold validated
// values.
type CommandError struct {
	Command  string
	ExitCode int // -1 when the command did not exit by itself (not found, killed, timed out)
	Output   string
	Err      error
}

func (e *CommandError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Command, e.Err)
	if e.Output != "" {
		msg += ": " + e.Output
	}
	return msg
}

func (e *CommandError) Unwrap() error { return e.Err }

// Run implements Runner.
func (r ExecRunner) Run(ctx context.Context, name string, args ...string) ([]byte, error) {
	timeout := r.Timeout
	if timeout <= 0 {
		timeout = DefaultCommandTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.WaitDelay = 5 * time.Second // a child holding the pipes open must not outlive the deadline
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.Bytes(), nil
	}
	ce := &CommandError{Command: name + " " + strings.Join(args, " "), ExitCode: -1, Err: err,
		Output: strings.TrimSpace(stderr.String() + " " + stdout.String())}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.Exited() {
		ce.ExitCode = ee.ExitCode()
	}
	if ctxErr := ctx.Err(); ctxErr != nil {
		ce.Err = fmt.Errorf("%w (%v)", ctxErr, err)
	}
	return stdout.Bytes(), ce
}

// waitFor polls check until it reports done, ctx ends or wait passes.
func waitFor(ctx context.Context, wait, interval time.Duration, check func() (bool, error)) error {
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	deadline := time.NewTimer(wait)
	defer deadline.Stop()
	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		done, err := check()
		if err != nil || done {
			return err
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			if done, err := check(); err != nil || done {
				return err
			}
			return fmt.Errorf("%w: device did not appear within %v", ErrUnavailable, wait)
		case <-tick.C:
		}
	}
}
