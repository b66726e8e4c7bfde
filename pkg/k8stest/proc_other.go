//go:build !linux

package k8stest

import "syscall"

// childAttrs puts a child in its own process group; only Linux can kill it when the test process
// dies.
func childAttrs() *syscall.SysProcAttr { return &syscall.SysProcAttr{Setpgid: true} }
