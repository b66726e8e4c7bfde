package driver

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	utilexec "k8s.io/utils/exec"
	testingexec "k8s.io/utils/exec/testing"

	"github.com/srvlab/rds-csi/pkg/nvme"
)

func nodeWantCode(t *testing.T, err error, code codes.Code) {
	t.Helper()
	if status.Code(err) != code {
		t.Fatalf("got %v, want code %v", err, code)
	}
}

func nodeMountCap(fs string, mode csi.VolumeCapability_AccessMode_Mode, flags ...string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fs, MountFlags: flags}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

func nodeBlockCap(mode csi.VolumeCapability_AccessMode_Mode) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: mode},
	}
}

const snw = csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER

// recordingExec runs real commands, records their command lines, and lets a test answer some
// itself.
type recordingExec struct {
	utilexec.Interface
	mu       sync.Mutex
	commands []string // "name arg1 arg2 ..."
	answer   map[string]func(args []string) ([]byte, error)
}

func (r *recordingExec) Command(cmd string, args ...string) utilexec.Cmd {
	return r.CommandContext(context.Background(), cmd, args...)
}

func (r *recordingExec) CommandContext(ctx context.Context, cmd string, args ...string) utilexec.Cmd {
	r.mu.Lock()
	r.commands = append(r.commands, strings.Join(append([]string{cmd}, args...), " "))
	answer := r.answer[cmd]
	r.mu.Unlock()
	if answer != nil {
		fake := &testingexec.FakeCmd{CombinedOutputScript: []testingexec.FakeAction{func() ([]byte, []byte, error) {
			out, err := answer(args)
			return out, nil, err
		}}}
		return testingexec.InitFakeCmd(fake, cmd, args...)
	}
	return r.Interface.CommandContext(ctx, cmd, args...)
}

// command returns the first command line starting with prefix, or "".
func (r *recordingExec) command(prefix string) string {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.commands {
		if strings.HasPrefix(c, prefix) {
			return c
		}
	}
	return ""
}

func (r *recordingExec) ran(prefix string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range r.commands {
		if strings.HasPrefix(c, prefix) {
			return true
		}
	}
	return false
}

// nodeEnv is a node service on the loop backend, working in a temporary directory.
type nodeEnv struct {
	ns    *nodeService
	root  string // the "RDS" data directory
	base  string // staging and target paths live here
	exec  *recordingExec
	loop  *nvme.Loop
	files map[string]string // volume ID → file path in the volume context
}

// newNodeEnv skips unless the test can attach loop devices and mount. Everything it mounts or
// attaches is undone by t.Cleanup, also when the test fails.
func newNodeEnv(t *testing.T) *nodeEnv {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("the loop backend tests need root (loop devices and mounts)")
	}
	for _, tool := range []string{"losetup", "blkid", "mkfs.ext4", "mkfs.xfs", "mount", "umount"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	e := &nodeEnv{root: t.TempDir(), base: t.TempDir(), files: map[string]string{}}
	e.base, _ = filepath.EvalSymlinks(e.base)
	e.root, _ = filepath.EvalSymlinks(e.root)
	e.exec = &recordingExec{Interface: utilexec.New(), answer: map[string]func([]string) ([]byte, error){}}
	loop, err := nvme.NewLoop(nvme.LoopConfig{Root: e.root})
	if err != nil {
		t.Fatal(err)
	}
	e.loop = loop
	ns, err := newNodeService("node-1", NodeConfig{Initiator: loop, Exec: e.exec})
	if err != nil {
		t.Fatal(err)
	}
	e.ns = ns
	t.Cleanup(func() { e.cleanup(t) })
	return e
}

func (e *nodeEnv) cleanup(t *testing.T) {
	// Unmount everything under base, deepest and latest first.
	for i := 0; i < maxStackedMounts; i++ {
		mps := mountsUnder(t, e.base)
		if len(mps) == 0 {
			break
		}
		for _, mp := range mps {
			if out, err := exec.Command("umount", mp).CombinedOutput(); err != nil {
				t.Logf("cleanup: umount %s: %v %s", mp, err, out)
			}
		}
	}
	if mps := mountsUnder(t, e.base); len(mps) > 0 {
		t.Errorf("cleanup: still mounted: %v", mps)
	}
	for id := range e.files {
		if err := e.loop.Disconnect(context.Background(), "nqn.2000-02.com.mikrotik:"+id); err != nil {
			t.Errorf("cleanup: detaching %s: %v", id, err)
		}
	}
}

// mountsUnder lists mount points below dir, latest first.
func mountsUnder(t *testing.T, dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var mps []string
	s := bufio.NewScanner(f)
	for s.Scan() {
		fields := strings.Fields(s.Text())
		if len(fields) > 4 && strings.HasPrefix(unescapeMountInfo(fields[4]), dir+"/") {
			mps = append(mps, unescapeMountInfo(fields[4]))
		}
	}
	for i, j := 0, len(mps)-1; i < j; i, j = i+1, j-1 {
		mps[i], mps[j] = mps[j], mps[i]
	}
	return mps
}

// newVolume makes a sparse backing file for a volume ID.
func (e *nodeEnv) newVolume(t *testing.T, id string, size int64) string {
	t.Helper()
	fp := "/storage-pool/kubernetes-volumes/" + id + ".img"
	p := filepath.Join(e.root, fp)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(size); err != nil {
		t.Fatal(err)
	}
	_ = f.Close()
	e.files[id] = fp
	return p
}

func (e *nodeEnv) path(parts ...string) string {
	return filepath.Join(append([]string{e.base}, parts...)...)
}

func (e *nodeEnv) stage(id string, c *csi.VolumeCapability) error {
	return e.stageCtx(context.Background(), id, c)
}

func (e *nodeEnv) stageCtx(ctx context.Context, id string, c *csi.VolumeCapability) error {
	_, err := e.ns.NodeStageVolume(ctx, &csi.NodeStageVolumeRequest{
		VolumeId: id, StagingTargetPath: e.path(id, "staging"), VolumeCapability: c,
		PublishContext: map[string]string{ContextNQN: "nqn.2000-02.com.mikrotik:" + id, ContextFilePath: e.files[id],
			ContextNVMeAddress: "10.0.0.5", ContextNVMePort: "4420"},
	})
	return err
}

func (e *nodeEnv) publish(id, target string, c *csi.VolumeCapability, ro bool) error {
	_, err := e.ns.NodePublishVolume(context.Background(), &csi.NodePublishVolumeRequest{
		VolumeId: id, StagingTargetPath: e.path(id, "staging"), TargetPath: target, VolumeCapability: c, Readonly: ro,
		PublishContext: map[string]string{ContextFilePath: e.files[id]},
	})
	return err
}

func (e *nodeEnv) unpublish(id, target string) error {
	_, err := e.ns.NodeUnpublishVolume(context.Background(), &csi.NodeUnpublishVolumeRequest{VolumeId: id, TargetPath: target})
	return err
}

func (e *nodeEnv) unstage(id string) error {
	return e.unstageCtx(context.Background(), id)
}

func (e *nodeEnv) unstageCtx(ctx context.Context, id string) error {
	_, err := e.ns.NodeUnstageVolume(ctx, &csi.NodeUnstageVolumeRequest{VolumeId: id, StagingTargetPath: e.path(id, "staging")})
	return err
}

func (e *nodeEnv) device(t *testing.T, id string) string {
	t.Helper()
	dev, err := e.loop.Device(context.Background(), "nqn.2000-02.com.mikrotik:"+id)
	if err != nil {
		t.Fatal(err)
	}
	return dev
}

func (e *nodeEnv) attached(id string) bool {
	_, err := e.loop.Device(context.Background(), "nqn.2000-02.com.mikrotik:"+id)
	return !errors.Is(err, nvme.ErrNotConnected)
}

func blkidValue(t *testing.T, dev, tag string) string {
	t.Helper()
	out, _ := exec.Command("blkid", "-p", "-s", tag, "-o", "value", dev).Output()
	return strings.TrimSpace(string(out))
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
