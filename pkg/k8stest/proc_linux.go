package k8stest

import "syscall"

// childAttrs puts a child in its own process group and has the kernel kill it when the test
// process dies, so that no etcd or kube-apiserver outlives a crashed test.
func childAttrs() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
