package cluster

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Paths every node sees at the same place as on a real machine, each from a directory of its
// own: its mount namespace binds them there. The chart's defaults then hold for every node.
const (
	kubeletDir = "/var/lib/kubelet"
	stateDir   = "/var/lib/rds-csi"
)

// LoopRootArg is the node plugin's --loop-root: inside each node's state directory, the
// simulator's data directory bound at a path naming the node. The kernel reports a loop device's
// backing file by the path it was opened through, so each node plugin recognizes its own loop
// devices only, as each real node has its own NVMe controllers.
const LoopRootArg = "--loop-root=" + stateDir + "/rds-$(NODE_NAME)"

// Node is one real kubelet on its own containerd, in its own mount, network and UTS namespaces.
type Node struct {
	Name  string
	Index int // from 1; its address is 10.77.<Index>.2
	IP    string
	dir   string

	anchor     *proc // holds the namespaces
	containerd *proc
	kubelet    *proc
	netns      string // readlink of /proc/<anchor>/ns/net

	kubeletBin  string
	kubeletArgs []string
}

// nodeConfig is what a node needs from the cluster.
type nodeConfig struct {
	binDir, simData, kubeconfig, registryHost, registryForward, pauseImage string
	labels                                                                 map[string]string
}

func startNode(ctx context.Context, dir string, index int, name string, nc nodeConfig) (_ *Node, err error) {
	n := &Node{Name: name, Index: index, IP: nodeIP(index), dir: dir}
	defer func() {
		if err != nil {
			n.PowerOff()
		}
	}()
	for _, d := range []string{"kubelet", "state", "containerd/root", "containerd/state", "cni", "logs", "volume-plugins"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, err
		}
	}
	for _, d := range []string{kubeletDir, stateDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, err
		}
	}
	ready := filepath.Join(dir, "ns-ready")
	loopRoot := filepath.Join(stateDir, "rds-"+name)
	// The kubelet directory must be a shared mount: the node plugin mounts into it with
	// Bidirectional propagation, and the kubelet must see those mounts.
	script := strings.Join([]string{
		"set -e",
		// hostNetwork pods share the node's UTS namespace: the sidecars' leader election
		// identities are host names, which must differ between nodes.
		"hostname " + name,
		// The namespace starts with private copies of every host mount. A copy of another
		// test's filesystem (a loop device mounted under /tmp by a test running in parallel)
		// would stay mounted here after that test unmounts it on the host, holding its loop
		// device open ("still attached after losetup -d"): detach those copies first.
		`awk '{for (i = 7; i <= NF; i++) if ($i == "-") { src = $(i + 2); break } if (src ~ /^\/dev\/loop/ || $5 ~ /^\/tmp\//) print $5}' /proc/self/mountinfo | sort -r | while read -r m; do umount -l "$m" 2>/dev/null || true; done`,
		"mount --bind " + filepath.Join(dir, "kubelet") + " " + kubeletDir,
		"mount --make-rshared " + kubeletDir,
		"mount --bind " + filepath.Join(dir, "state") + " " + stateDir,
		"mkdir -p " + loopRoot,
		"mount --bind " + nc.simData + " " + loopRoot,
		"touch " + ready,
		"exec sleep 2147483647",
	}, "\n")
	n.anchor, err = spawn(name+"-ns", filepath.Join(dir, "ns.log"), "unshare", "--mount", "--net", "--uts", "--propagation", "private", "--", "/bin/sh", "-c", script)
	if err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 30*time.Second, func() (bool, error) {
		if n.anchor.exited() {
			return false, fmt.Errorf("node %s namespace setup failed: %s", name, tail(n.anchor.log, 10))
		}
		_, err := os.Stat(ready)
		return err == nil, nil
	}); err != nil {
		return nil, err
	}
	pid := n.anchor.cmd.Process.Pid
	if n.netns, err = os.Readlink("/proc/" + strconv.Itoa(pid) + "/ns/net"); err != nil {
		return nil, err
	}
	if err := linkNode(index, pid); err != nil {
		return nil, fmt.Errorf("node %s network: %w", name, err)
	}

	sock := filepath.Join(dir, "containerd.sock")
	cdConf := filepath.Join(dir, "containerd.toml")
	if err := os.WriteFile(cdConf, []byte(containerdConfig(dir, sock, nc)), 0o644); err != nil {
		return nil, err
	}
	cni := `{"cniVersion": "0.4.0", "name": "lo", "plugins": [{"type": "loopback"}]}` + "\n"
	if err := os.WriteFile(filepath.Join(dir, "cni", "10-lo.conflist"), []byte(cni), 0o644); err != nil {
		return nil, err
	}
	if n.containerd, err = n.spawnIn("containerd", "containerd", "--config", cdConf); err != nil {
		return nil, err
	}
	if err := waitFor(ctx, 60*time.Second, func() (bool, error) {
		if n.containerd.exited() {
			return false, fmt.Errorf("containerd of %s exited: %s", name, tail(n.containerd.log, 20))
		}
		c, err := net.Dial("unix", sock)
		if err != nil {
			return false, nil
		}
		_ = c.Close()
		return true, nil
	}); err != nil {
		return nil, err
	}

	kcfg := filepath.Join(dir, "kubelet.yaml")
	if err := os.WriteFile(kcfg, []byte(kubeletConfig(dir, sock, n.IP)), 0o644); err != nil {
		return nil, err
	}
	var labels []string
	for k, v := range nc.labels {
		labels = append(labels, k+"="+v)
	}
	args := []string{"--config", kcfg, "--kubeconfig", nc.kubeconfig, "--hostname-override", name,
		"--node-ip", n.IP, "--root-dir", kubeletDir, "--v", "2"}
	if len(labels) > 0 {
		args = append(args, "--node-labels", strings.Join(labels, ","))
	}
	n.kubeletBin, n.kubeletArgs = filepath.Join(nc.binDir, "kubelet"), args
	if n.kubelet, err = n.spawnIn("kubelet", n.kubeletBin, args...); err != nil {
		return nil, err
	}
	return n, nil
}

// StartKubelet starts the kubelet again after StopKubelet.
func (n *Node) StartKubelet() error {
	if n.kubelet != nil && !n.kubelet.exited() {
		return fmt.Errorf("the kubelet of %s is running", n.Name)
	}
	var err error
	n.kubelet, err = n.spawnIn("kubelet", n.kubeletBin, n.kubeletArgs...)
	return err
}

// spawnIn starts a process in the node's namespaces.
func (n *Node) spawnIn(name, bin string, args ...string) (*proc, error) {
	pid := strconv.Itoa(n.anchor.cmd.Process.Pid)
	return spawn(n.Name+"-"+name, filepath.Join(n.dir, name+".log"), "nsenter",
		append([]string{"-t", pid, "-m", "-n", "-u", "--", bin}, args...)...)
}

// Log returns the end of one of the node's logs ("kubelet", "containerd").
func (n *Node) Log(name string, lines int) string {
	return tail(filepath.Join(n.dir, name+".log"), lines)
}

// StopKubelet kills the kubelet only: its containers run on (a kubelet crash, not a node loss).
func (n *Node) StopKubelet() {
	if n.kubelet != nil {
		n.kubelet.kill()
	}
}

// PowerOff models a node losing power: every process of the node (kubelet, containerd, the
// shims, every container, all sharing the node's network namespace since every pod here uses
// the host network) is killed at once; its mounts go with its mount namespace, and its loop
// devices, its "NVMe controllers", are detached. Nothing is unmounted or flushed cleanly.
func (n *Node) PowerOff() {
	loops := n.loopDevices()
	n.killAll() // several passes: a process forked while one scans is caught by the next
	for _, p := range []*proc{n.kubelet, n.containerd, n.anchor} {
		if p != nil {
			p.kill()
		}
	}
	// Loop devices still in use by a dying mount are detached once it is gone (autoclear).
	for _, l := range loops {
		_ = exec.Command("losetup", "-d", l).Run()
	}
	_ = run("ip", "link", "del", fmt.Sprintf(nodeLinkF, n.Index))
}

// pids lists the processes in the node's network namespace.
func (n *Node) pids() []int {
	if n.netns == "" {
		return nil
	}
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		if l, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil && l == n.netns {
			pids = append(pids, pid)
		}
	}
	return pids
}

// loopDevices lists the loop devices the node's plugin set up (backing file under its loop root).
func (n *Node) loopDevices() []string {
	prefix := filepath.Join(stateDir, "rds-"+n.Name) + "/"
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	var devs []string
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err == nil && strings.HasPrefix(strings.TrimSpace(string(b)), prefix) {
			devs = append(devs, "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(m))))
		}
	}
	return devs
}

func containerdConfig(dir, sock string, nc nodeConfig) string {
	return fmt.Sprintf(`version = 2
root = %q
state = %q

[grpc]
  address = %q

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  # This sandbox refuses lowering oom_score_adj; without this every pod sandbox fails.
  restrict_oom_score_adj = true
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
  [plugins."io.containerd.grpc.v1.cri".registry.mirrors.%q]
    endpoint = ["http://%s"]
`, filepath.Join(dir, "containerd/root"), filepath.Join(dir, "containerd/state"), sock,
		nc.pauseImage, filepath.Join(dir, "cni"), nc.registryHost, nc.registryForward)
}

func kubeletConfig(dir, sock, ip string) string {
	return fmt.Sprintf(`apiVersion: kubelet.config.k8s.io/v1beta1
kind: KubeletConfiguration
cgroupDriver: cgroupfs
failCgroupV1: false
failSwapOn: false
cgroupsPerQOS: false
enforceNodeAllocatable: []
containerRuntimeEndpoint: unix://%s
address: %s
port: 10250
readOnlyPort: 0
healthzBindAddress: 127.0.0.1
healthzPort: 10248
authentication:
  anonymous:
    enabled: true
  webhook:
    enabled: false
authorization:
  mode: AlwaysAllow
podLogsDir: %s
volumePluginDir: %s
serializeImagePulls: false
nodeStatusUpdateFrequency: 5s
imageGCHighThresholdPercent: 100
imageGCLowThresholdPercent: 99
`, sock, ip, filepath.Join(dir, "logs"), filepath.Join(dir, "volume-plugins"))
}

// waitFor polls cond every 100 ms until it is true, returns an error, or timeout passes.
func waitFor(ctx context.Context, timeout time.Duration, cond func() (bool, error)) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	t := time.NewTicker(100 * time.Millisecond)
	defer t.Stop()
	for {
		ok, err := cond()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("not done after %v: %w", timeout, ctx.Err())
		case <-t.C:
		}
	}
}

// FSSize returns the size in bytes of the filesystem mounted at path in the node's mount
// namespace (read through /proc/<pid>/root, as a process of the node sees it).
func (n *Node) FSSize(path string) (int64, error) {
	if n.anchor == nil || n.anchor.exited() {
		return 0, fmt.Errorf("node %s is off", n.Name)
	}
	var st syscall.Statfs_t
	p := "/proc/" + strconv.Itoa(n.anchor.cmd.Process.Pid) + "/root" + path
	if err := syscall.Statfs(p, &st); err != nil {
		return 0, fmt.Errorf("statfs %s on %s: %w", path, n.Name, err)
	}
	return int64(st.Blocks) * st.Bsize, nil
}

// KillProcesses sends SIGKILL to the node's processes whose command line starts with one of
// prefixes (a path's last element counts: "csi-provisioner" matches "/csi-provisioner --v=4"),
// and returns how many it killed.
func (n *Node) KillProcesses(prefixes ...string) int {
	killed := 0
	for _, pid := range n.pids() {
		b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(strings.TrimRight(string(b), "\x00"), "\x00", " ")
		base := cmd[strings.LastIndex(strings.SplitN(cmd, " ", 2)[0], "/")+1:]
		for _, p := range prefixes {
			if strings.HasPrefix(base, p) {
				if syscall.Kill(pid, syscall.SIGKILL) == nil {
					killed++
				}
				break
			}
		}
	}
	return killed
}

// cleanupStale kills what a crashed earlier run left: every process in the network namespace of
// a process whose command line names an earlier cluster directory (containerd shims outlive the
// test process: they are not its children) and the loop devices of the nodes' loop roots. It
// runs under the cluster lock, so no other cluster is running.
func cleanupStale() {
	stale := map[string]bool{}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !strings.Contains(string(b), os.TempDir()+"/rds-csi-cluster-") {
			continue
		}
		if ns, err := os.Readlink("/proc/" + e.Name() + "/ns/net"); err == nil {
			if self, err := os.Readlink("/proc/self/ns/net"); err == nil && ns != self {
				stale[ns] = true
			}
		}
	}
	for ns := range stale {
		(&Node{netns: ns}).killAll()
	}
	ms, _ := filepath.Glob("/sys/block/loop*/loop/backing_file")
	for _, m := range ms {
		b, err := os.ReadFile(m)
		if err == nil && strings.HasPrefix(string(b), stateDir+"/rds-") {
			_ = exec.Command("losetup", "-d", "/dev/"+filepath.Base(filepath.Dir(filepath.Dir(m)))).Run()
		}
	}
}

// killAll kills every process in the node's network namespace, three passes.
func (n *Node) killAll() {
	for range 3 {
		for _, pid := range n.pids() {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
