package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"
	"unsafe"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"golang.org/x/crypto/ssh"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/nvme"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// inGuestEnv is set when rds-bench runs inside the qemu guest of hack/vm.sh: the vm section then
// measures instead of booting a guest.
const inGuestEnv = "RDS_BENCH_IN_VM"

const vmRuns = 5

// benchVM boots the guest of hack/vm.sh (from the repository root, as make bench runs) with this
// program built statically in it, and prints the figures it measures there over the kernel's
// NVMe/TCP. Without root or the guest, it says why and measures nothing.
func benchVM(ctx context.Context, o benchOptions) error {
	if os.Getenv(inGuestEnv) != "" {
		return benchInGuest(ctx, o)
	}
	if os.Geteuid() != 0 {
		fmt.Println("== vm: skipped (needs root to build and boot the qemu guest)")
		return nil
	}
	if _, err := os.Stat("hack/vm.sh"); err != nil {
		fmt.Println("== vm: skipped (run from the repository root, as make bench does: hack/vm.sh boots the guest)")
		return nil
	}
	share, err := os.MkdirTemp("", "rds-bench-vm-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(share)
	if out, err := exec.CommandContext(ctx, "hack/vm.sh", "build").CombinedOutput(); err != nil {
		fmt.Printf("== vm: skipped (the guest could not be built: %v: %s)\n", err, strings.TrimSpace(string(out)))
		return nil
	}
	build := exec.CommandContext(ctx, "go", "build", "-o", filepath.Join(share, "rds-bench"), "./cmd/rds-bench")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("building rds-bench for the guest: %v: %s", err, out)
	}
	script := fmt.Sprintf("cd /data && %s=1 /share/rds-bench --only=vm --duration=%s >/share/figures 2>/share/errors; echo $? >/share/rc\n",
		inGuestEnv, o.duration)
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(script), 0o755); err != nil {
		return err
	}
	console, err := exec.CommandContext(ctx, "hack/vm.sh", "run", share).CombinedOutput()
	if err != nil {
		return fmt.Errorf("the guest failed: %v\n%s", err, console)
	}
	figures, _ := os.ReadFile(filepath.Join(share, "figures"))
	rc, _ := os.ReadFile(filepath.Join(share, "rc"))
	// The guest's own header line (its CPUs) is replaced by one that says what the guest is.
	lines := strings.SplitN(string(figures), "\n", 2)
	fmt.Printf("== vm: qemu TCG guest (hack/vm.sh: %s vCPUs, Debian kernel) on this host's %d CPUs; NVMe/TCP target and initiator both in the guest, on loopback\n",
		cmpOr(os.Getenv("VM_CPUS"), "2"), runtime.NumCPU())
	if len(lines) == 2 {
		fmt.Print(strings.TrimLeft(lines[1], "\n"))
	}
	if strings.TrimSpace(string(rc)) != "0" {
		errs, _ := os.ReadFile(filepath.Join(share, "errors"))
		return fmt.Errorf("the measurement failed in the guest (exit %s): %s\nconsole:\n%s", strings.TrimSpace(string(rc)), lastLines(string(errs), 30), console)
	}
	return nil
}

func cmpOr(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func lastLines(s string, n int) string {
	l := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return strings.Join(l[max(len(l)-n, 0):], "\n")
}

// guestRig is the driver (controller and node, NVMe/TCP initiator) over a simulator exporting
// through nvmet, inside the guest.
type guestRig struct {
	sim  *rdssim.Server
	ctl  csi.ControllerClient
	node csi.NodeClient
	dir  string
}

func startGuestRig(ctx context.Context) (*guestRig, func(), error) {
	dir, err := os.MkdirTemp("", "rds-bench-vm-")
	if err != nil {
		return nil, nil, err
	}
	var undo []func()
	cleanup := func() {
		for i := len(undo) - 1; i >= 0; i-- {
			undo[i]()
		}
		_ = os.RemoveAll(dir)
	}
	fail := func(err error) (*guestRig, func(), error) { cleanup(); return nil, nil, err }
	key, err := rdssim.GenerateSigner()
	if err != nil {
		return fail(err)
	}
	s, err := rdssim.New(rdssim.Config{Listen: "127.0.0.1:0", DataDir: filepath.Join(dir, "rds"),
		AuthorizedKeys: []ssh.PublicKey{key.PublicKey()}, WrapWidth: 80, PoolSize: 1 << 40, NVMeTCPExport: true})
	if err != nil {
		return fail(err)
	}
	if err := s.Start(); err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = s.UnexportNVMe(); _ = s.Close() })
	client, err := rds.NewClient(rds.Config{Address: s.Addr(), User: "admin", Signer: key, HostKey: s.HostPublicKey()})
	if err != nil {
		return fail(err)
	}
	client.Start()
	undo = append(undo, func() { _ = client.Close() })
	// rds-csi --nvme-backend=nvme with its default reconnect settings.
	ini, err := nvme.NewCLI(nvme.CLIConfig{CtrlLossTmo: -1, ReconnectDelay: 2, KeepAliveTmo: 5})
	if err != nil {
		return fail(err)
	}
	d, err := driver.New(driver.Options{NodeID: "bench-vm", Controller: true, Node: true,
		DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, rds.NewStorage(client), nil,
		&driver.NodeConfig{Initiator: ini, StateDir: filepath.Join(dir, "state")})
	if err != nil {
		return fail(err)
	}
	sock := filepath.Join(dir, "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return fail(err)
	}
	sctx, cancel := context.WithCancel(ctx)
	served := make(chan struct{})
	go func() { _ = d.ServeListener(sctx, lis); close(served) }()
	undo = append(undo, func() { cancel(); <-served })
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		return fail(err)
	}
	undo = append(undo, func() { _ = conn.Close() })
	return &guestRig{sim: s, ctl: csi.NewControllerClient(conn), node: csi.NewNodeClient(conn), dir: dir}, cleanup, nil
}

var vmCap = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: "ext4"}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

// vmVolume is a created and controller-published volume.
type vmVolume struct {
	id                    string
	volCtx, pubCtx        map[string]string
	stagePath, targetPath string
}

func (r *guestRig) create(ctx context.Context, name string, size int64) (*vmVolume, error) {
	c, err := r.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: name, VolumeCapabilities: []*csi.VolumeCapability{vmCap},
		CapacityRange: &csi.CapacityRange{RequiredBytes: size}})
	if err != nil {
		return nil, err
	}
	v := &vmVolume{id: c.Volume.VolumeId, volCtx: c.Volume.VolumeContext,
		stagePath: filepath.Join(r.dir, "stage", name), targetPath: filepath.Join(r.dir, "target", name)}
	p, err := r.ctl.ControllerPublishVolume(ctx, &csi.ControllerPublishVolumeRequest{VolumeId: v.id, NodeId: "bench-vm",
		VolumeCapability: vmCap, VolumeContext: v.volCtx})
	if err != nil {
		return nil, err
	}
	v.pubCtx = p.PublishContext
	return v, nil
}

func (r *guestRig) stagePublish(ctx context.Context, v *vmVolume) error {
	if _, err := r.node.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stagePath,
		VolumeCapability: vmCap, PublishContext: v.pubCtx, VolumeContext: v.volCtx}); err != nil {
		return err
	}
	_, err := r.node.NodePublishVolume(ctx, &csi.NodePublishVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stagePath,
		TargetPath: v.targetPath, VolumeCapability: vmCap, PublishContext: v.pubCtx, VolumeContext: v.volCtx})
	return err
}

func (r *guestRig) remove(ctx context.Context, v *vmVolume) error {
	if _, err := r.node.NodeUnpublishVolume(ctx, &csi.NodeUnpublishVolumeRequest{VolumeId: v.id, TargetPath: v.targetPath}); err != nil {
		return err
	}
	if _, err := r.node.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: v.id, StagingTargetPath: v.stagePath}); err != nil {
		return err
	}
	if _, err := r.ctl.ControllerUnpublishVolume(ctx, &csi.ControllerUnpublishVolumeRequest{VolumeId: v.id, NodeId: "bench-vm"}); err != nil {
		return err
	}
	_, err := r.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: v.id})
	return err
}

// benchInGuest measures, inside the guest: NodeStage+NodePublish of a blank volume over NVMe/TCP
// against the bare commands an operator would run for the same result (nvme connect, wait for the
// namespace, mkfs.ext4, mount) on another blank volume of the same RDS; and 4 KiB O_DIRECT random
// reads (one at a time) from a file of a staged ext4 volume against the same reads from the raw
// namespace.
func benchInGuest(ctx context.Context, o benchOptions) error {
	r, cleanup, err := startGuestRig(ctx)
	if err != nil {
		return err
	}
	defer cleanup()
	const size = 64 << 20
	var csiTimes, bareTimes latencies
	for i := 0; i < vmRuns; i++ {
		v, err := r.create(ctx, fmt.Sprintf("vm-stage-%d", i), size)
		if err != nil {
			return err
		}
		t := time.Now()
		if err := r.stagePublish(ctx, v); err != nil {
			return fmt.Errorf("stage and publish: %w", err)
		}
		csiTimes = append(csiTimes, time.Since(t))
		if err := r.remove(ctx, v); err != nil {
			return err
		}
		b, err := r.create(ctx, fmt.Sprintf("vm-bare-%d", i), size)
		if err != nil {
			return err
		}
		d, err := bareConnectFormatMount(ctx, b, filepath.Join(r.dir, fmt.Sprintf("bare-%d", i)))
		if err != nil {
			return err
		}
		bareTimes = append(bareTimes, d)
		if err := r.remove(ctx, b); err != nil {
			return err
		}
	}
	fmt.Printf("-- 64 MiB ext4 volumes, %d runs: NodeStage+NodePublish over NVMe/TCP vs the bare commands (baseline)\n", vmRuns)
	fmt.Printf("%-34s %10s | %-44s %10s | %s\n", "CSI calls", "p50", "baseline", "p50", "ratio")
	fmt.Printf("%-34s %10s | %-44s %10s | %s\n", "NodeStage+NodePublish", ms(csiTimes.pct(50)),
		"nvme connect+wait+mkfs.ext4+mount", ms(bareTimes.pct(50)), ratio(float64(csiTimes.pct(50)), float64(bareTimes.pct(50))))

	v, err := r.create(ctx, "vm-io", 256<<20)
	if err != nil {
		return err
	}
	if err := r.stagePublish(ctx, v); err != nil {
		return err
	}
	defer func() { _ = r.remove(ctx, v) }()
	const span = 128 << 20
	file := filepath.Join(v.targetPath, "data")
	if err := fillFile(file, span); err != nil {
		return err
	}
	dev, err := namespaceOf(volid.NQN(v.id))
	if err != nil {
		return err
	}
	fsRate, err := directReadRate(file, span, o.duration)
	if err != nil {
		return err
	}
	rawRate, err := directReadRate(dev, span, o.duration)
	if err != nil {
		return err
	}
	fmt.Printf("-- 4 KiB O_DIRECT random reads, one at a time, over %d MiB, %v each\n", span>>20, o.duration)
	fmt.Printf("%-34s %10s | %-44s %10s | %s\n", "through", "reads/s", "baseline", "reads/s", "ratio")
	fmt.Printf("%-34s %10.0f | %-44s %10.0f | %s\n", "a file on the staged ext4 volume", fsRate,
		"the raw namespace "+filepath.Base(dev), rawRate, ratio(fsRate, rawRate))
	return nil
}

// bareConnectFormatMount times what stage and publish amount to for a blank volume, done by hand.
func bareConnectFormatMount(ctx context.Context, v *vmVolume, mnt string) (time.Duration, error) {
	nqn := v.pubCtx[driver.ContextNQN]
	run := func(name string, args ...string) error {
		if out, err := exec.CommandContext(ctx, name, args...).CombinedOutput(); err != nil {
			return fmt.Errorf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := os.MkdirAll(mnt, 0o750); err != nil {
		return 0, err
	}
	t := time.Now()
	if err := run("nvme", "connect", "-t", "tcp", "-a", v.pubCtx[driver.ContextNVMeAddress], "-s", v.pubCtx[driver.ContextNVMePort], "-n", nqn); err != nil {
		return 0, err
	}
	defer func() { _ = run("nvme", "disconnect", "-n", nqn) }()
	var dev string
	deadline := time.Now().Add(30 * time.Second)
	for {
		d, err := namespaceOf(nqn)
		if err == nil {
			if _, err := os.Stat(d); err == nil {
				dev = d
				break
			}
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("no namespace for %s after nvme connect", nqn)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if err := run("mkfs.ext4", "-q", "-F", "-m0", "-E", "nodiscard", dev); err != nil {
		return 0, err
	}
	if err := run("mount", "-t", "ext4", dev, mnt); err != nil {
		return 0, err
	}
	d := time.Since(t)
	return d, run("umount", mnt)
}

// namespaceOf finds the block device of an NQN's namespace in sysfs (native multipath: the head
// in the subsystem's directory).
func namespaceOf(nqn string) (string, error) {
	subs, _ := filepath.Glob("/sys/class/nvme-subsystem/nvme-subsys*/subsysnqn")
	for _, s := range subs {
		b, err := os.ReadFile(s)
		if err != nil || strings.TrimSpace(string(b)) != nqn {
			continue
		}
		ns, _ := filepath.Glob(filepath.Join(filepath.Dir(s), "nvme*n*"))
		for _, n := range ns {
			if base := filepath.Base(n); !strings.Contains(base, "c") {
				return "/dev/" + base, nil
			}
		}
	}
	return "", errors.New("no namespace for " + nqn)
}

func fillFile(path string, size int) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i * 7)
	}
	for w := 0; w < size; w += len(buf) {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return err
		}
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// directReadRate reads random 4 KiB blocks of the first span bytes of path with O_DIRECT, one at a
// time, for d, and returns the reads per second.
func directReadRate(path string, span int64, d time.Duration) (float64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_DIRECT, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	const block = 4096
	raw := make([]byte, 2*block)
	off := block - int(uintptr(unsafe.Pointer(&raw[0]))%block)
	buf := raw[off%block : off%block+block]
	blocks := span / block
	n := 0
	start := time.Now()
	for time.Since(start) < d {
		if _, err := f.ReadAt(buf, rand.Int64N(blocks)*block); err != nil {
			return 0, fmt.Errorf("reading %s: %w", path, err)
		}
		n++
	}
	return float64(n) / time.Since(start).Seconds(), nil
}
