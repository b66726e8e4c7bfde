package rds

import (
	"context"
	"errors"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/routeros"
)

// Disk is a file-backed disk on the RDS as the RDS reports it.
type Disk struct {
	Slot     string
	FilePath string
	Size     int64 // exact bytes
	Exported bool
	Port     int
	NQN      string
}

// Capacity is the size and free space of a storage pool, in bytes.
type Capacity struct {
	Total int64
	Free  int64
}

// Backend is what the CSI services need from an RDS. Storage implements it over SSH; tests may
// use a fake.
type Backend interface {
	// CreateDisk creates the backing file and the disk entry. If the slot exists already, it
	// returns the existing disk together with a KindAlreadyExists error.
	CreateDisk(ctx context.Context, spec DiskSpec) (*Disk, error)
	// CopyDisk creates a disk whose file is a copy of source's file (snapshots, clones,
	// restores); an existing slot is reported as in CreateDisk. The slot must belong to one
	// request alone: a file at spec.FilePath without a disk entry is taken for an unfinished
	// copy of this same request and replaced. The copy has its own deadline and goes on when ctx
	// ends (the call then fails with KindDeadlineExceeded); a call for the same slot while it
	// runs waits for it instead of starting another.
	CopyDisk(ctx context.Context, source string, spec DiskSpec) (*Disk, error)
	// PendingCopies returns the slots starting with prefix of copies that are not finished:
	// running in this process, or files without a disk entry (left by a copy that was cut).
	PendingCopies(ctx context.Context, prefix string) ([]string, error)
	// GetDisk returns one disk, or a KindNotFound error.
	GetDisk(ctx context.Context, slot string) (*Disk, error)
	// ListDisks returns the file-backed disks whose slot starts with prefix, in RDS order.
	ListDisks(ctx context.Context, prefix string) ([]Disk, error)
	// ResizeDisk grows a disk to at least size bytes and returns the disk as it now is.
	ResizeDisk(ctx context.Context, slot string, size int64) (*Disk, error)
	// DeleteDisk removes the disk entry and its backing file. Both steps are idempotent: an
	// absent disk or file is not an error. filePath is used when the disk entry is already gone.
	DeleteDisk(ctx context.Context, slot, filePath string) error
	// PoolCapacity returns the size and free space of a pool (its mount point name).
	PoolCapacity(ctx context.Context, pool string) (*Capacity, error)
	// Probe returns nil while the RDS is reachable.
	Probe(ctx context.Context) error
}

// Runner runs one command; *Client is the real one.
type Runner interface {
	Run(ctx context.Context, cmd routeros.Command) (string, error)
	Probe(ctx context.Context) error
}

// DefaultCopyTimeout bounds one copy (snapshot, clone, restore) when no other deadline is given.
const DefaultCopyTimeout = 30 * time.Minute

// Storage implements Backend with RouterOS commands.
type Storage struct {
	r           Runner
	copyTimeout time.Duration

	mu     sync.Mutex
	copies map[string]*copyOp // by slot: copies running in this process
}

// copyOp is one copy running detached from the call that started it.
type copyOp struct {
	started time.Time
	done    chan struct{} // closed when disk and err are set
	disk    *Disk
	err     error
}

var _ Backend = (*Storage)(nil)

// StorageOption configures a Storage.
type StorageOption func(*Storage)

// WithCopyTimeout sets the deadline of one copy; d <= 0 keeps DefaultCopyTimeout.
func WithCopyTimeout(d time.Duration) StorageOption {
	return func(s *Storage) {
		if d > 0 {
			s.copyTimeout = d
		}
	}
}

// NewStorage returns the storage API over a command runner.
func NewStorage(r Runner, opts ...StorageOption) *Storage {
	s := &Storage{r: r, copyTimeout: DefaultCopyTimeout, copies: map[string]*copyOp{}}
	for _, o := range opts {
		o(s)
	}
	return s
}

// Probe implements Backend.
func (s *Storage) Probe(ctx context.Context) error { return s.r.Probe(ctx) }

func (s *Storage) run(ctx context.Context, cmd routeros.Command, err error) (string, error) {
	if err != nil {
		return "", err
	}
	return s.r.Run(ctx, cmd)
}

// print runs a print command and parses its items.
func (s *Storage) print(ctx context.Context, cmd routeros.Command, err error) ([]routeros.Item, error) {
	out, err := s.run(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	return routeros.ParsePrintDetail(out), nil
}

// CreateDisk implements Backend.
func (s *Storage) CreateDisk(ctx context.Context, spec DiskSpec) (*Disk, error) {
	cmd, err := routeros.DiskAdd(spec)
	return s.add(ctx, spec, cmd, err)
}

// CopyDisk implements Backend. A copy of a large disk takes minutes on a real RDS, longer than a
// CSI call may wait: the copy runs detached, under its own deadline, and a retried call joins it
// rather than start a second copy of the same data.
func (s *Storage) CopyDisk(ctx context.Context, source string, spec DiskSpec) (*Disk, error) {
	cmd, err := routeros.DiskCopy(source, spec)
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	op, running := s.copies[spec.Slot]
	if !running {
		op = &copyOp{started: time.Now(), done: make(chan struct{})}
		s.copies[spec.Slot] = op
	}
	s.mu.Unlock()
	if !running {
		go s.runCopy(op, spec, cmd)
	}
	select {
	case <-op.done:
		return op.disk, op.err
	case <-ctx.Done():
		kind := routeros.KindUnavailable
		if errors.Is(ctx.Err(), context.DeadlineExceeded) {
			kind = routeros.KindDeadlineExceeded
		}
		return nil, &routeros.Error{Kind: kind, Err: ctx.Err(), Message: fmt.Sprintf(
			"copy of %s into %s still running after %s; a retry waits for it", source, spec.Slot, time.Since(op.started).Round(time.Millisecond))}
	}
}

// runCopy makes one copy and publishes its result in op.
func (s *Storage) runCopy(op *copyOp, spec DiskSpec, cmd routeros.Command) {
	defer func() {
		s.mu.Lock()
		delete(s.copies, spec.Slot)
		s.mu.Unlock()
		close(op.done)
	}()
	ctx, cancel := context.WithTimeout(context.Background(), s.copyTimeout)
	defer cancel()
	if d, err := s.GetDisk(ctx, spec.Slot); err == nil {
		op.disk, op.err = d, &routeros.Error{Kind: routeros.KindAlreadyExists, Message: fmt.Sprintf("disk %s already exists", spec.Slot)}
		return
	} else if !routeros.IsNotFound(err) {
		op.err = err
		return
	}
	// No disk entry, so a file at the target is an unfinished copy of this same request (the
	// slot, and so the file name, is the request's alone): it would make the copy fail.
	if err := s.removeUnfinished(ctx, spec.FilePath); err != nil {
		op.err = err
		return
	}
	_, err := s.r.Run(ctx, cmd.WithTimeout(s.copyTimeout))
	if err == nil {
		op.disk, op.err = s.GetDisk(ctx, spec.Slot)
		return
	}
	// The answer is lost or the copy failed: look at what the RDS holds, on a fresh deadline
	// (the copy's may be spent).
	cctx, ccancel := context.WithTimeout(context.Background(), s.copyTimeout)
	defer ccancel()
	if d, gerr := s.GetDisk(cctx, spec.Slot); gerr == nil {
		op.disk = d // the copy completed; only its answer was lost
		if routeros.IsAlreadyExists(err) {
			op.err = &routeros.Error{Kind: routeros.KindAlreadyExists, Message: fmt.Sprintf("disk %s already exists", spec.Slot)}
		}
		return
	}
	if rerr := s.removeUnfinished(cctx, spec.FilePath); rerr != nil {
		klog.InfoS("Unfinished copy left on the RDS; the next attempt removes it", "slot", spec.Slot, "file", spec.FilePath, "err", rerr)
	}
	op.err = err
}

// removeUnfinished removes the file at p, which no disk entry uses, and checks it is gone. A file
// that is still being written is refused by the RDS ("in use": KindBusy).
func (s *Storage) removeUnfinished(ctx context.Context, p string) error {
	return s.removeUnusedFile(ctx, p, "Removing an unfinished copy")
}

// PendingCopies implements Backend.
func (s *Storage) PendingCopies(ctx context.Context, prefix string) ([]string, error) {
	seen := map[string]bool{}
	var slots []string
	s.mu.Lock()
	for slot := range s.copies {
		if strings.HasPrefix(slot, prefix) {
			seen[slot] = true
			slots = append(slots, slot)
		}
	}
	s.mu.Unlock()
	cmd, err := routeros.FileFindByPrefix(prefix)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		base := path.Base(it.Fields["name"])
		slot, ok := strings.CutSuffix(base, ".img")
		if !ok || !strings.HasPrefix(slot, prefix) || seen[slot] {
			continue
		}
		if _, err := s.GetDisk(ctx, slot); err == nil {
			continue // a finished disk
		} else if !routeros.IsNotFound(err) {
			return nil, err
		}
		seen[slot] = true
		slots = append(slots, slot)
	}
	sort.Strings(slots)
	return slots, nil
}

func (s *Storage) add(ctx context.Context, spec DiskSpec, cmd routeros.Command, err error) (*Disk, error) {
	_, err = s.run(ctx, cmd, err)
	if err != nil {
		if !routeros.IsAlreadyExists(err) && routeros.KindOf(err) != routeros.KindInternal {
			return nil, err
		}
		// The add may have failed because the slot exists (a retried create) or failed in a way
		// that left the disk behind: report what is there.
		if d, gerr := s.GetDisk(ctx, spec.Slot); gerr == nil {
			return d, &routeros.Error{Kind: routeros.KindAlreadyExists, Message: fmt.Sprintf("disk %s already exists", spec.Slot)}
		}
		if routeros.IsAlreadyExists(err) {
			return nil, &routeros.Error{Kind: routeros.KindAlreadyExists, Message: fmt.Sprintf(
				"backing file %s exists without a disk entry for %s; it is left untouched (remove it on the RDS if it holds nothing of value)", spec.FilePath, spec.Slot), Err: err}
		}
		return nil, err
	}
	return s.GetDisk(ctx, spec.Slot)
}

// GetDisk implements Backend.
func (s *Storage) GetDisk(ctx context.Context, slot string) (*Disk, error) {
	cmd, err := routeros.DiskPrint(slot)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if it.Fields["slot"] == slot {
			return diskFromItem(it)
		}
	}
	return nil, &routeros.Error{Kind: routeros.KindNotFound, Message: fmt.Sprintf("disk %s not found", slot)}
}

// ListDisks implements Backend.
func (s *Storage) ListDisks(ctx context.Context, prefix string) ([]Disk, error) {
	cmd, err := routeros.DiskPrintPrefix(prefix)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	var disks []Disk
	for _, it := range items {
		if it.Fields["type"] != "file" || !strings.HasPrefix(it.Fields["slot"], prefix) {
			continue
		}
		d, err := diskFromItem(it)
		if err != nil {
			return nil, err
		}
		disks = append(disks, *d)
	}
	return disks, nil
}

// ResizeDisk implements Backend.
func (s *Storage) ResizeDisk(ctx context.Context, slot string, size int64) (*Disk, error) {
	cur, err := s.GetDisk(ctx, slot)
	if err != nil {
		return nil, err
	}
	if cur.Size >= size {
		return cur, nil
	}
	cmd, err := routeros.DiskResize(slot, size)
	if _, err := s.run(ctx, cmd, err); err != nil {
		return nil, err
	}
	d, err := s.GetDisk(ctx, slot)
	if err != nil {
		return nil, err
	}
	if d.Size < size {
		return nil, routeros.Errorf(routeros.KindInternal, "disk %s is %d bytes after resize to %d", slot, d.Size, size)
	}
	return d, nil
}

// DeleteDisk implements Backend. RouterOS leaves the .img file behind on `/disk remove`, so the
// file is removed explicitly, and its absence verified, or storage would leak. When the disk entry
// is gone already (an earlier delete stopped half-way), the file is looked for by its name,
// "<slot>.img", in any directory, because the volume may live elsewhere than filePath (a
// StorageClass volumePath); several such files are an error, not a guess.
func (s *Storage) DeleteDisk(ctx context.Context, slot, filePath string) error {
	d, err := s.GetDisk(ctx, slot)
	switch {
	case err == nil:
		filePath = d.FilePath
		cmd, cerr := routeros.DiskRemove(slot)
		if _, err := s.run(ctx, cmd, cerr); err != nil && !routeros.IsNotFound(err) {
			return err
		}
	case !routeros.IsNotFound(err):
		return err
	default:
		found, err := s.filesOfSlot(ctx, slot)
		if err != nil {
			return err
		}
		switch len(found) {
		case 0:
		case 1:
			filePath = found[0]
		default:
			return routeros.Errorf(routeros.KindInternal, "disk %s is gone and several backing files carry its name (%s): none removed", slot, strings.Join(found, ", "))
		}
	}
	if filePath == "" {
		return nil
	}
	cmd, err := routeros.FileRemove(filePath)
	if _, err := s.run(ctx, cmd, err); err != nil && !routeros.IsNotFound(err) {
		return err
	}
	exists, err := s.fileExists(ctx, filePath)
	if err != nil {
		return err
	}
	if exists {
		return routeros.Errorf(routeros.KindInternal, "backing file %s still exists after removal", filePath)
	}
	return nil
}

// filesOfSlot returns the absolute paths of the files named exactly "<slot>.img".
func (s *Storage) filesOfSlot(ctx context.Context, slot string) ([]string, error) {
	cmd, err := routeros.FileFindBySlot(slot)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	var paths []string
	for _, it := range items {
		name := it.Fields["name"]
		if path.Base(name) == slot+".img" {
			paths = append(paths, "/"+strings.TrimPrefix(name, "/"))
		}
	}
	return paths, nil
}

func (s *Storage) fileExists(ctx context.Context, p string) (bool, error) {
	cmd, err := routeros.FilePrint(p)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return false, err
	}
	want := routeros.FileName(p)
	for _, it := range items {
		if it.Fields["name"] == want {
			return true, nil
		}
	}
	return false, nil
}

// PoolCapacity implements Backend.
func (s *Storage) PoolCapacity(ctx context.Context, pool string) (*Capacity, error) {
	cmd, err := routeros.PoolPrint(pool)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	for _, it := range items {
		if it.Fields["mount-point"] != pool {
			continue
		}
		total, err1 := routeros.ParseGroupedInt(it.Fields["size"])
		free, err2 := routeros.ParseGroupedInt(it.Fields["free"])
		if err1 != nil || err2 != nil {
			return nil, routeros.Errorf(routeros.KindInternal, "pool %s: unreadable size %q or free %q", pool, it.Fields["size"], it.Fields["free"])
		}
		return &Capacity{Total: total, Free: free}, nil
	}
	return nil, &routeros.Error{Kind: routeros.KindNotFound, Message: fmt.Sprintf("pool %s not found", pool)}
}

func diskFromItem(it routeros.Item) (*Disk, error) {
	f := it.Fields
	d := &Disk{Slot: f["slot"], FilePath: f["file-path"], NQN: f["nvme-tcp-server-nqn"], Exported: f["nvme-tcp-export"] == "yes"}
	if d.FilePath == "" {
		d.FilePath = f["model"]
	}
	if size, err := routeros.ParseGroupedInt(f["size"]); err == nil {
		d.Size = size
	} else if size, err := routeros.ParseHumanSize(f["file-size"]); err == nil {
		d.Size = size
	} else {
		return nil, routeros.Errorf(routeros.KindInternal, "disk %s: no readable size in RDS output", d.Slot)
	}
	if p := f["nvme-tcp-server-port"]; p != "" {
		port, err := strconv.Atoi(p)
		if err != nil {
			return nil, routeros.Errorf(routeros.KindInternal, "disk %s: bad port %q", d.Slot, p)
		}
		d.Port = port
	}
	return d, nil
}
