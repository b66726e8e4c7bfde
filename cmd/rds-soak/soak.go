//go:build linux

package main

import (
	"context"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

type soak struct {
	cfg   *config
	env   *env
	stats *stats
	m     *model
	// epoch counts driver incarnations. Without Kubernetes the driver keeps attachments in memory,
	// so a new process has forgotten them; a publish confirmed by an older incarnation is
	// restored (published again, as the external-attacher's resync does) before the volume's
	// attachments are relied on.
	epoch atomic.Int64
	grace time.Duration
	// ext4OnlineGrow: whether ext4 volumes may be expanded (see hasSysResource)
	ext4OnlineGrow bool
	seq            atomic.Int64
	// what the RDS held before the soak (a reused --work-dir): not counted as left over
	startDisks, startFiles map[string]bool
	// restartMu serialises driver restarts (injected kill -9 and unexpected exits).
	restartMu sync.Mutex
	// freezeMu guards frozen: how many copy calls hold each staged source frozen. A clone and a
	// snapshot of one source may be pending together, and a second FIFREEZE fails (EBUSY).
	freezeMu sync.Mutex
	frozen   map[string]int
}

func newSoak(ctx context.Context, c *config) (*soak, error) {
	s := &soak{cfg: c, stats: newStats(), m: newModel(), frozen: map[string]int{},
		// A command started during a fault may hang until the driver abandons it: failures up to
		// one command timeout after recovery are still the fault's.
		grace: c.rdsTimeout + time.Second, ext4OnlineGrow: hasSysResource()}
	e, err := newEnv(ctx, c, s.driverCrashed)
	if err != nil {
		return nil, err
	}
	s.env = e
	s.startDisks, s.startFiles = map[string]bool{}, map[string]bool{}
	for _, d := range e.sim.Disks() {
		s.startDisks[d.Slot] = true
	}
	for _, f := range s.files() {
		s.startFiles[f] = true
	}
	return s, nil
}

func (s *soak) close() {
	s.env.close()
	mounted := len(mountsUnder(s.env.dir)) > 0
	switch {
	case mounted:
		fmt.Printf("rds-soak: work directory %s kept: something is still mounted in it\n", s.env.dir)
	case s.cfg.keep || s.stats.violationCount() > 0:
		fmt.Printf("rds-soak: work directory %s kept (driver log rds-csi.log, simulator log rdssim.log)\n", s.env.dir)
	case s.cfg.workDir == "":
		_ = os.RemoveAll(s.env.dir)
	}
}

// driverCrashed handles an exit of the driver that nobody asked for: a violation, and a restart so
// that the soak goes on. Failures while it is down are explained by the crash (already counted).
func (s *soak) driverCrashed(detail string) {
	s.stats.violation("driver-exited", "%s", detail)
	go func() {
		s.restartMu.Lock()
		defer s.restartMu.Unlock()
		w := s.stats.openWindow(faultCrash, detail)
		if !s.env.drv.running() { // the cleanup may have restarted it already
			s.epoch.Add(1)
			if err := s.env.drv.start(); err != nil {
				s.stats.violation("driver-exited", "restart after crash failed: %v", err)
			}
		}
		if err := s.env.awaitReady(context.Background(), time.Minute); err != nil {
			s.stats.violation("no-recovery/"+faultCrash, "driver not ready after a restart: %v", err)
		}
		s.stats.closeWindow(w, time.Now().Add(s.grace))
	}()
}

func (s *soak) newName(kind string) string {
	return fmt.Sprintf("soak-%x-%s-%d", uint32(s.cfg.seed), kind, s.seq.Add(1))
}

type callScope int

const (
	controllerCall callScope = iota // any fault explains a failure
	nodeCall                        // node calls never reach the RDS: only a driver restart explains a failure
)

type outcome int

const (
	succeeded outcome = iota
	refused           // the refusal the caller expected
	failed
)

// rpc runs one CSI call under the operation deadline and judges a failure. Aborted (another
// operation on the object is still running in the driver) is the CO's cue to retry and always
// accepted. Otherwise a failure must overlap a fault window and be Unavailable or DeadlineExceeded,
// or ResourceExhausted for a call that allocates space during out-of-space; anything else, and any
// failure outside every fault window, is a violation named after the code and the call.
//
// r is the backoff of the object the call is about: reset by a success, lengthened by a failure.
func (s *soak) rpc(r *retry, name string, scope callScope, expect codes.Code, fn func(ctx context.Context) error) (outcome, error) {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.opTimeout)
	defer cancel()
	start := time.Now()
	err := fn(ctx)
	end := time.Now()
	if err == nil {
		s.stats.count(name, func(c *opCount) { c.OK++ })
		s.m.do(func() { r.failures = 0 })
		return succeeded, nil
	}
	code := status.Code(err)
	if expect != codes.OK && code == expect {
		s.stats.count(name, func(c *opCount) { c.Refused++ })
		return refused, err
	}
	s.stats.count(name, func(c *opCount) { c.Failed++ })
	s.m.do(func() {
		r.failures++
		r.notBefore = end.Add(min(50*time.Millisecond<<min(r.failures, 10), 5*time.Second))
	})
	if code == codes.Aborted {
		return failed, err
	}
	ws := s.stats.overlapping(start, end, func(kind string) bool {
		return scope == controllerCall || kind == faultKill || kind == faultCrash
	})
	if len(ws) == 0 {
		s.stats.violation(fmt.Sprintf("%s without fault: %s", codeName(code), baseName(name)), "%s: %v", name, err)
		return failed, err
	}
	allocates := strings.HasPrefix(name, "CreateVolume") || strings.HasPrefix(name, "CreateSnapshot") || strings.HasPrefix(name, "ControllerExpandVolume")
	switch {
	case code == codes.Unavailable, code == codes.DeadlineExceeded:
	case code == codes.ResourceExhausted && allocates && hasKind(ws, faultOutOfSpace):
	default:
		s.stats.violation(fmt.Sprintf("%s during fault: %s", codeName(code), baseName(name)), "%s during %s: %v", name, describeWindows(ws), err)
	}
	return failed, err
}

// baseName drops the parenthesised detail of a call name, so that violations group by call.
func baseName(name string) string {
	if i := strings.Index(name, " ("); i > 0 {
		return name[:i]
	}
	return name
}

func hasKind(ws []window, kind string) bool {
	for _, w := range ws {
		if w.kind == kind {
			return true
		}
	}
	return false
}

func describeWindows(ws []window) string {
	var parts []string
	for _, w := range ws {
		p := w.kind
		if w.detail != "" {
			p += " " + w.detail
		}
		parts = append(parts, p)
	}
	return strings.Join(parts, ", ")
}

// --- what the RDS holds, read directly from the simulator ---

func (s *soak) disk(slot string) (rdssim.Disk, bool) {
	for _, d := range s.env.sim.Disks() {
		if d.Slot == slot {
			return d, true
		}
	}
	return rdssim.Disk{}, false
}

// checkOnRDS verifies that a success is true on the RDS: the disk exists with the size the driver
// answered, and its backing file has that size.
func (s *soak) checkOnRDS(call, slot string, size int64) bool {
	d, ok := s.disk(slot)
	if !ok {
		s.stats.violation("success not on RDS: "+baseName(call), "%s succeeded but the RDS has no disk %s", call, slot)
		return false
	}
	if size > 0 && d.FileSize != size {
		s.stats.violation("success not on RDS: "+baseName(call), "%s answered %d bytes for %s, the RDS has %d", call, size, slot, d.FileSize)
		return false
	}
	st, err := os.Stat(s.env.sim.HostPath(d.FilePath))
	if err != nil || st.Size() != d.FileSize {
		s.stats.violation("success not on RDS: "+baseName(call), "%s: backing file of %s: %v (size %v, disk says %d)", call, slot, err, sizeOf(st), d.FileSize)
		return false
	}
	return true
}

func sizeOf(st os.FileInfo) any {
	if st == nil {
		return "none"
	}
	return st.Size()
}

// checkGone verifies that a deleted volume or snapshot left neither its disk nor its file.
func (s *soak) checkGone(call, slot string) {
	if _, ok := s.disk(slot); ok {
		s.stats.violation("deleted but still on RDS: "+call, "%s succeeded but disk %s is still there", call, slot)
	}
	if files := s.filesNamed(slot + ".img"); len(files) > 0 {
		s.stats.violation("deleted but still on RDS: "+call, "%s succeeded but file(s) %v remain", call, files)
	}
}

// files lists the regular files under the simulator's data directory, its own state excluded.
func (s *soak) files() []string {
	var out []string
	_ = filepath.WalkDir(s.env.data, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && d.Name() == ".rdssim" {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() {
			rel, _ := filepath.Rel(s.env.data, p)
			out = append(out, rel)
		}
		return nil
	})
	return out
}

func (s *soak) filesNamed(base string) []string {
	var out []string
	for _, f := range s.files() {
		if filepath.Base(f) == base {
			out = append(out, f)
		}
	}
	return out
}

// --- the workers ---

type worker struct {
	id  int
	rng *rand.Rand
}

type op struct {
	name   string
	weight int
	fn     func(*soak, *worker) bool // false: nothing to do right now
}

var ops = []op{
	{"create", 10, (*soak).opCreate},
	{"retry-pending", 6, (*soak).opRetryPending},
	{"restore", 5, (*soak).opRestore},
	{"clone", 5, (*soak).opClone},
	{"snapshot", 7, (*soak).opSnapshot},
	{"delete-snapshot", 4, (*soak).opDeleteSnapshot},
	{"delete-volume", 6, (*soak).opDeleteVolume},
	{"expand", 6, (*soak).opExpand},
	{"publish", 8, (*soak).opPublish},
	{"unpublish", 5, (*soak).opUnpublish},
	{"stage", 10, (*soak).opStage},
	{"write", 8, (*soak).opWrite},
	{"verify", 6, (*soak).opVerify},
	{"unstage", 6, (*soak).opUnstage},
}

func pickOp(rng *rand.Rand) op {
	total := 0
	for _, o := range ops {
		total += o.weight
	}
	n := rng.IntN(total)
	for _, o := range ops {
		if n < o.weight {
			return o
		}
		n -= o.weight
	}
	return ops[0]
}

// soak runs the workers until the duration is over, and the fault driver meanwhile.
func (s *soak) soak(ctx context.Context) {
	deadline := time.Now().Add(s.cfg.duration)
	stopFaults := make(chan struct{})
	faultsDone := make(chan struct{})
	go func() {
		defer close(faultsDone)
		if !s.cfg.noFaults {
			s.faultLoop(ctx, stopFaults)
		}
	}()
	var wg sync.WaitGroup
	for i := range s.cfg.workers {
		w := &worker{id: i, rng: rand.New(rand.NewPCG(uint64(s.cfg.seed), uint64(i)+1))}
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.work(ctx, w, deadline)
		}()
	}
	wg.Wait()
	close(stopFaults)
	<-faultsDone
}

func (s *soak) work(ctx context.Context, w *worker, deadline time.Time) {
	for time.Now().Before(deadline) && ctx.Err() == nil {
		did := false
		for try := 0; try < 8 && !did; try++ {
			did = pickOp(w.rng).fn(s, w)
		}
		if !did {
			// Everything this worker could do is claimed by others: wait for a release.
			select {
			case <-s.m.released:
			case <-time.After(200 * time.Millisecond):
			case <-ctx.Done():
			}
		}
	}
}

// capFor is what a soak volume asks for: a single-node filesystem of the given type.
func capFor(fsType string) *csi.VolumeCapability {
	return &csi.VolumeCapability{
		AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{FsType: fsType}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER},
	}
}

// hasSysResource reports whether a mounted ext4 can be grown here: EXT4_IOC_RESIZE_FS needs
// CAP_SYS_RESOURCE, which some sandboxes drop even for root. Without it only xfs volumes are
// expanded (an environment limit, not the driver's).
func hasSysResource() bool {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return false
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "CapEff:"); ok {
			caps, err := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			return err == nil && caps&(1<<24) != 0
		}
	}
	return false
}
