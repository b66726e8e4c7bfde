package driver

import (
	"context"
	"strings"
	"time"

	utilexec "k8s.io/utils/exec"
)

// timeoutExec puts a deadline on every command that mount-utils runs (blkid, mkfs, fsck,
// resize2fs, xfs_growfs): mount-utils itself calls Command without a context.
type timeoutExec struct {
	utilexec.Interface
	timeout, formatTimeout time.Duration
}

func (e *timeoutExec) limit(cmd string) time.Duration {
	if strings.HasPrefix(cmd, "mkfs") || cmd == "fsck" || cmd == "resize2fs" || cmd == "xfs_growfs" {
		return e.formatTimeout
	}
	return e.timeout
}

func (e *timeoutExec) Command(cmd string, args ...string) utilexec.Cmd {
	return e.CommandContext(context.Background(), cmd, args...)
}

func (e *timeoutExec) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	ctx, cancel := context.WithTimeout(ctx, e.limit(cmd))
	return &timedCmd{Cmd: e.Interface.CommandContext(ctx, cmd, args...), cancel: cancel}
}

// timedCmd releases its deadline once the command is done.
type timedCmd struct {
	utilexec.Cmd
	cancel context.CancelFunc
}

func (c *timedCmd) Run() error {
	defer c.cancel()
	return c.Cmd.Run()
}

func (c *timedCmd) CombinedOutput() ([]byte, error) {
	defer c.cancel()
	return c.Cmd.CombinedOutput()
}

func (c *timedCmd) Output() ([]byte, error) {
	defer c.cancel()
	return c.Cmd.Output()
}

func (c *timedCmd) Start() error {
	err := c.Cmd.Start()
	if err != nil {
		c.cancel()
	}
	return err
}

func (c *timedCmd) Wait() error {
	defer c.cancel()
	return c.Cmd.Wait()
}

func (c *timedCmd) Stop() {
	c.Cmd.Stop()
	c.cancel()
}
