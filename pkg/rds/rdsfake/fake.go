// Package rdsfake is an in-memory rds.Backend for fast unit tests of the CSI services.
package rdsfake

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/routeros"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// Backend keeps disks in memory. Set Err to make every call fail with it (e.g. an outage);
// set Hook to observe or fail individual calls.
type Backend struct {
	mu       sync.Mutex
	disks    map[string]rds.Disk
	files    map[string]int64
	PoolSize int64
	Err      error
	// Hook, if set, runs before each call with the operation name and slot; a non-nil result
	// fails the call.
	Hook func(op, slot string) error
}

var _ rds.Backend = (*Backend)(nil)

// New returns an empty backend with a pool of the given size.
func New(poolSize int64) *Backend {
	return &Backend{disks: map[string]rds.Disk{}, files: map[string]int64{}, PoolSize: poolSize}
}

func (b *Backend) check(op, slot string) error {
	if b.Err != nil {
		return b.Err
	}
	if b.Hook != nil {
		return b.Hook(op, slot)
	}
	return nil
}

func (b *Backend) used() int64 {
	var n int64
	for _, s := range b.files {
		n += s
	}
	return n
}

// CreateDisk implements rds.Backend.
func (b *Backend) CreateDisk(_ context.Context, spec rds.DiskSpec) (*rds.Disk, error) {
	if _, err := routeros.DiskAdd(spec); err != nil {
		return nil, err
	}
	return b.add("create", spec, spec.Size)
}

// CopyDisk implements rds.Backend.
func (b *Backend) CopyDisk(_ context.Context, source string, spec rds.DiskSpec) (*rds.Disk, error) {
	if _, err := routeros.DiskCopy(source, spec); err != nil {
		return nil, err
	}
	b.mu.Lock()
	src, ok := b.disks[source]
	b.mu.Unlock()
	if !ok {
		return nil, routeros.Errorf(routeros.KindNotFound, "failure: no such item")
	}
	size := spec.Size
	if size == 0 {
		size = src.Size
	}
	if size < src.Size {
		return nil, routeros.Errorf(routeros.KindInvalidArgument, "failure: invalid parameter")
	}
	return b.add("copy", spec, size)
}

// PendingCopies implements rds.Backend: the fake's copies finish at once, so none is ever pending.
func (b *Backend) PendingCopies(_ context.Context, prefix string) ([]string, error) {
	if err := b.check("pending", prefix); err != nil {
		return nil, err
	}
	return nil, nil
}

func (b *Backend) add(op string, spec rds.DiskSpec, size int64) (*rds.Disk, error) {
	if err := b.check(op, spec.Slot); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.disks[spec.Slot]; ok {
		return &d, routeros.Errorf(routeros.KindAlreadyExists, "disk %s already exists", spec.Slot)
	}
	if _, ok := b.files[spec.FilePath]; ok {
		return nil, routeros.Errorf(routeros.KindAlreadyExists, "failure: file already exists")
	}
	if b.used()+size > b.PoolSize {
		return nil, routeros.Errorf(routeros.KindOutOfSpace, "failure: not enough space")
	}
	d := rds.Disk{Slot: spec.Slot, FilePath: spec.FilePath, Size: size, Exported: spec.Export, Port: spec.Port, NQN: spec.NQN}
	b.disks[spec.Slot] = d
	b.files[spec.FilePath] = size
	return &d, nil
}

// GetDisk implements rds.Backend.
func (b *Backend) GetDisk(_ context.Context, slot string) (*rds.Disk, error) {
	if err := volid.ValidateSlot(slot); err != nil {
		return nil, err
	}
	return b.update("get", slot, nil)
}

// update runs change, if any, on the disk of slot under the lock and stores what it leaves.
func (b *Backend) update(op, slot string, change func(d *rds.Disk) error) (*rds.Disk, error) {
	if err := b.check(op, slot); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	d, ok := b.disks[slot]
	if !ok {
		return nil, routeros.Errorf(routeros.KindNotFound, "disk %s not found", slot)
	}
	if change != nil {
		if err := change(&d); err != nil {
			return nil, err
		}
		b.disks[slot] = d
		b.files[d.FilePath] = d.Size
	}
	return &d, nil
}

// ListDisks implements rds.Backend.
func (b *Backend) ListDisks(_ context.Context, prefix string) ([]rds.Disk, error) {
	if err := b.check("list", prefix); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []rds.Disk
	for _, d := range b.disks {
		if strings.HasPrefix(d.Slot, prefix) {
			out = append(out, d)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Slot < out[j].Slot })
	return out, nil
}

// ResizeDisk implements rds.Backend.
func (b *Backend) ResizeDisk(_ context.Context, slot string, size int64) (*rds.Disk, error) {
	if _, err := routeros.DiskResize(slot, size); err != nil {
		return nil, err
	}
	return b.update("resize", slot, func(d *rds.Disk) error {
		if size <= d.Size {
			return nil
		}
		if b.used()+size-d.Size > b.PoolSize {
			return routeros.Errorf(routeros.KindOutOfSpace, "failure: not enough space")
		}
		d.Size = size
		return nil
	})
}

// DeleteDisk implements rds.Backend.
func (b *Backend) DeleteDisk(_ context.Context, slot, filePath string) error {
	if err := volid.ValidateSlot(slot); err != nil {
		return err
	}
	if err := b.check("delete", slot); err != nil {
		return err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if d, ok := b.disks[slot]; ok {
		filePath = d.FilePath
		delete(b.disks, slot)
	}
	delete(b.files, filePath)
	return nil
}

// PoolCapacity implements rds.Backend.
func (b *Backend) PoolCapacity(_ context.Context, pool string) (*rds.Capacity, error) {
	if err := b.check("capacity", pool); err != nil {
		return nil, err
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	return &rds.Capacity{Total: b.PoolSize, Free: b.PoolSize - b.used()}, nil
}

// Probe implements rds.Backend.
func (b *Backend) Probe(context.Context) error {
	if b.Err != nil {
		return b.Err
	}
	return nil
}

// Files lists the backing files, for leak checks.
func (b *Backend) Files() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []string
	for f := range b.files {
		out = append(out, f)
	}
	sort.Strings(out)
	return out
}

// String describes the content, for test failure messages.
func (b *Backend) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return fmt.Sprintf("%d disks, %d files", len(b.disks), len(b.files))
}
