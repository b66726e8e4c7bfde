package rdssim

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

const diskFlags = "Flags: B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; p - PARTITION"

// execEnv carries what a command needs beyond the store.
type execEnv struct {
	width      int
	outOfSpace bool
	started    time.Time    // for uptime
	emit       func(string) // streaming output (monitor-traffic without once)
	copy       copyModel
	done       <-chan struct{} // closed when the server closes
}

// copyModel is how long `/disk add copy-from=` takes and what happens to a copy whose session
// ends first. A real RDS copies a large file for minutes; whether it goes on after the SSH session
// that started it is gone is not known, so both behaviours exist.
type copyModel struct {
	perGiB         time.Duration // copy time per GiB of the source's logical size; 0: instant
	finishDetached bool          // a copy whose session ends goes on and adds its disk at the end
}

// duration is the simulated time to copy size bytes (at least 1ms when the model is on).
func (m copyModel) duration(size int64) time.Duration {
	if m.perGiB <= 0 {
		return 0
	}
	return max(time.Millisecond, time.Duration(float64(m.perGiB)*float64(size)/float64(1<<30)))
}

// exec runs a parsed command and returns its output.
func (st *store) exec(ctx context.Context, c *command, env execEnv) (string, error) {
	switch c.kind {
	case cmdNone:
		return "", nil
	case cmdDiskAdd:
		return "", st.add(ctx, c.args, env)
	case cmdDiskSet:
		return "", st.set(c.target, c.args, env.outOfSpace)
	case cmdDiskRemove:
		return "", st.remove(c.target)
	case cmdDiskPrint:
		return st.printDisks(c.where, env.width)
	case cmdFilePrint:
		return st.printFiles(c.where, env.width)
	case cmdFileRemove:
		return "", st.removeFiles(c.target)
	case cmdDiskMonitor:
		return st.monitor(ctx, c, env)
	case cmdResourcePrint:
		return st.resource(env.started)
	case cmdClockPrint:
		return clock(time.Now()), nil
	}
	return "", fmt.Errorf("rdssim: unhandled command kind %d", c.kind)
}

// ParseSize parses a RouterOS size: decimal bytes, optionally followed by one
// binary unit letter k/K/M/G/T/P. Zero, fractions and overflow are rejected.
func ParseSize(s string) (int64, error) {
	orig := s
	mult := int64(1)
	if n := len(s); n > 0 {
		if i := strings.IndexByte("kKMGTP", s[n-1]); i >= 0 {
			mult = int64(1) << (10 * []int{1, 1, 2, 3, 4, 5}[i])
			s = s[:n-1]
		}
	}
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("invalid size %q", orig)
	}
	v, err := strconv.ParseInt(s, 10, 64)
	if err != nil || v <= 0 || v > math.MaxInt64/mult {
		return 0, fmt.Errorf("invalid size %q", orig)
	}
	return v * mult, nil
}

// applyExport applies the nvme-tcp-* parameters to d.
func applyExport(d *Disk, a map[string]arg) error {
	if v, ok := a["nvme-tcp-export"]; ok {
		switch v.val {
		case "yes":
			d.NVMeExport = true
		case "no":
			d.NVMeExport = false
		default:
			return errInvalidParam
		}
	}
	if v, ok := a["nvme-tcp-server-port"]; ok {
		p, err := strconv.Atoi(v.val)
		if err != nil || p < 1 || p > 65535 {
			return errInvalidParam
		}
		d.NVMePort = p
	}
	if v, ok := a["nvme-tcp-server-nqn"]; ok {
		d.NQN = v.val
	}
	if v, ok := a["nvme-tcp-server-allow-host-name"]; ok {
		d.AllowHostName = v.val
	}
	return nil
}

func (st *store) add(ctx context.Context, a map[string]arg, env execEnv) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	outOfSpace := env.outOfSpace
	d := &Disk{Slot: a["slot"].val, FilePath: a["file-path"].val, NVMePort: defaultPort}
	if a["type"].val != "file" || d.Slot == "" || !validFilePath(d.FilePath) {
		return errInvalidParam
	}
	if err := applyExport(d, a); err != nil {
		return err
	}
	if _, ok := a["nvme-tcp-server-nqn"]; !ok {
		d.NQN = nqnPrefix + d.Slot
	}
	for _, o := range st.disks {
		if o.Slot == d.Slot {
			return failure("slot already exists")
		}
	}
	size, err := optionalSize(a)
	if err != nil {
		return err
	}
	var src *Disk
	if cf, ok := a["copy-from"]; ok {
		sel := cf.sel
		if sel == nil {
			if cf.val == "" {
				return errInvalidParam
			}
			sel = &selector{name: cf.val}
		}
		ds := st.selectLocked(sel)
		if len(ds) == 0 {
			return errNoSuchItem
		}
		src = ds[0]
		if size >= 0 && size < src.FileSize {
			return errInvalidParam
		}
		size = max(size, src.FileSize)
	} else if size < 0 {
		return errInvalidParam
	}
	hp := st.hostPath(d.FilePath)
	if _, err := os.Lstat(hp); err == nil {
		return failure("file already exists")
	}
	if err := st.checkSpaceLocked(size, outOfSpace); err != nil {
		return err
	}
	if src != nil && env.copy.perGiB > 0 {
		return st.slowCopyLocked(ctx, d, size, src, env)
	}
	if err := createImage(hp, size, src, st.hostPath); err != nil {
		return failure(err.Error())
	}
	d.FileSize = size
	return st.appendDiskLocked(d)
}

// appendDiskLocked adds a disk entry and saves the state; on failure neither the entry nor its
// file stays.
func (st *store) appendDiskLocked(d *Disk) error {
	st.disks = append(st.disks, d)
	if err := st.saveLocked(); err != nil {
		st.disks = st.disks[:len(st.disks)-1]
		_ = os.Remove(st.hostPath(d.FilePath))
		return failure(err.Error())
	}
	return nil
}

// slowCopyLocked copies src into d's file taking the modelled time. The file exists (and takes
// pool space) from the start, as a real copy's target does; the disk entry appears only when the
// copy is complete. If the session ends first, the copy stops and leaves a half-written file
// without a disk entry, unless the model says copies finish on their own. st.mu is held on entry
// and on return; it is released while the copy runs, so the RDS keeps answering.
//
// The source is read when the command arrives, into a private image, as a Btrfs reflink on the
// RDS fixes a copy's content at one instant: what the source's users write while the copy runs
// is not in it.
func (st *store) slowCopyLocked(ctx context.Context, d *Disk, size int64, src *Disk, env execEnv) error {
	hp := st.hostPath(d.FilePath)
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		return failure(err.Error())
	}
	image, err := st.imageOf(src)
	if err != nil {
		return failure(err.Error())
	}
	f, err := os.OpenFile(hp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		discardImage(image)
		return failure(err.Error())
	}
	st.copying[d.FilePath] = true
	st.mu.Unlock()
	done := make(chan error, 1)
	go func() {
		defer discardImage(image)
		done <- st.runCopy(f, image, size, env, ctx)
	}()
	select {
	case err = <-done:
	case <-ctx.Done():
		if !env.copy.finishDetached {
			err = <-done // runCopy sees ctx too and stops half-way
			break
		}
		go func() { // the session is gone; the copy goes on and registers its disk itself
			if err := <-done; err == nil {
				st.mu.Lock()
				defer st.mu.Unlock()
				delete(st.copying, d.FilePath)
				d.FileSize = size
				_ = st.appendDiskLocked(d)
				return
			}
			st.mu.Lock()
			delete(st.copying, d.FilePath)
			st.mu.Unlock()
		}()
		st.mu.Lock()
		return failure("session closed during copy")
	}
	st.mu.Lock()
	delete(st.copying, d.FilePath)
	if err != nil {
		return failure(err.Error()) // the half-written file stays, as after a crash
	}
	d.FileSize = size
	return st.appendDiskLocked(d)
}

// copyImagePrefix names the private images of copy sources in the state directory; any left by a
// simulator that stopped mid-copy are removed when the store opens.
const copyImagePrefix = "copy-source-"

// imageOf copies src's file, holes kept, into a private file of the state directory and returns
// it open and unlinked-on-discard. st.mu is held, so no command changes the source meanwhile.
func (st *store) imageOf(src *Disk) (*os.File, error) {
	sf, err := os.Open(st.hostPath(src.FilePath))
	if err != nil {
		return nil, err
	}
	defer sf.Close()
	img, err := os.CreateTemp(filepath.Join(st.dir, stateDir), copyImagePrefix+"*")
	if err != nil {
		return nil, err
	}
	if err := copySparse(img, sf); err != nil {
		discardImage(img)
		return nil, err
	}
	return img, nil
}

func discardImage(img *os.File) {
	_ = img.Close()
	_ = os.Remove(img.Name())
}

// runCopy writes half of the source image, waits the modelled time, then writes all of it, so
// that a copy cut short leaves a file that is neither empty nor complete. With detached copies it
// stops only when the server closes.
func (st *store) runCopy(f *os.File, image *os.File, size int64, env execEnv, ctx context.Context) (err error) {
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
	}()
	fi, err := image.Stat()
	if err != nil {
		return err
	}
	if err := f.Truncate(fi.Size() / 2); err != nil {
		return err
	}
	stop := ctx.Done()
	if env.copy.finishDetached {
		stop = env.done
	}
	t := time.NewTimer(env.copy.duration(size))
	defer t.Stop()
	select {
	case <-t.C:
	case <-stop:
		return errors.New("copy interrupted")
	}
	if err := f.Truncate(0); err != nil {
		return err
	}
	if err := copySparse(f, image); err != nil {
		return err
	}
	return f.Truncate(size)
}

// optionalSize returns the file-size argument in bytes, or -1 when there is none.
func optionalSize(a map[string]arg) (int64, error) {
	v, ok := a["file-size"]
	if !ok {
		return -1, nil
	}
	n, err := ParseSize(v.val)
	if err != nil {
		return 0, errInvalidParam
	}
	return n, nil
}

// createImage creates the sparse image hp of size bytes, with the content of
// src's image if src is not nil. On error nothing is left behind.
func createImage(hp string, size int64, src *Disk, hostPath func(string) string) (err error) {
	if err := os.MkdirAll(filepath.Dir(hp), 0o755); err != nil {
		return err
	}
	f, err := os.OpenFile(hp, os.O_RDWR|os.O_CREATE|os.O_EXCL, 0o644)
	if err != nil {
		return err
	}
	defer func() {
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			_ = os.Remove(hp)
		}
	}()
	if src != nil {
		sf, err := os.Open(hostPath(src.FilePath))
		if err != nil {
			return err
		}
		defer sf.Close()
		if err := copySparse(f, sf); err != nil {
			return err
		}
	}
	return f.Truncate(size)
}

func (st *store) set(sel *selector, a map[string]arg, outOfSpace bool) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	ds := st.selectLocked(sel)
	if len(ds) == 0 && !sel.find {
		return errNoSuchItem
	}
	size, err := optionalSize(a)
	if err != nil {
		return err
	}
	updated := make([]Disk, len(ds))
	var grow int64
	for i, d := range ds {
		updated[i] = *d
		if err := applyExport(&updated[i], a); err != nil {
			return err
		}
		if size >= 0 {
			if size < d.FileSize {
				return errInvalidParam
			}
			grow += size - d.FileSize
			updated[i].FileSize = size
		}
	}
	if err := st.checkSpaceLocked(grow, outOfSpace); err != nil {
		return err
	}
	for i, d := range ds {
		if updated[i].FileSize != d.FileSize {
			if err := os.Truncate(st.hostPath(d.FilePath), updated[i].FileSize); err != nil {
				return failure(err.Error())
			}
		}
		*d = updated[i]
	}
	if len(ds) == 0 {
		return nil
	}
	if err := st.saveLocked(); err != nil {
		return failure(err.Error())
	}
	return nil
}

// remove drops disk entries; their image files stay (as on real RDS).
func (st *store) remove(sel *selector) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	ds := st.selectLocked(sel)
	if len(ds) == 0 {
		if sel.find {
			return nil
		}
		return errNoSuchItem
	}
	gone := map[*Disk]bool{}
	for _, d := range ds {
		gone[d] = true
	}
	kept := st.disks[:0:0]
	for _, d := range st.disks {
		if !gone[d] {
			kept = append(kept, d)
		}
	}
	old := st.disks
	st.disks = kept
	if err := st.saveLocked(); err != nil {
		st.disks = old
		return failure(err.Error())
	}
	return nil
}

func (st *store) printDisks(where []cond, width int) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	pool, err := st.poolItemLocked()
	if err != nil {
		return "", err
	}
	all := []item{pool}
	for _, d := range st.disks {
		all = append(all, st.diskItem(d))
	}
	var items []item
	for _, it := range all {
		if matchAll(where, it) {
			items = append(items, it)
		}
	}
	return renderItems(diskFlags, items, width), nil
}

func (st *store) printFiles(where []cond, width int) (string, error) {
	st.mu.Lock()
	defer st.mu.Unlock()
	entries, err := st.filesLocked()
	if err != nil {
		return "", failure(err.Error())
	}
	var items []item
	for _, e := range entries {
		if it := fileItem(e); matchAll(where, it) {
			items = append(items, it)
		}
	}
	return renderItems("", items, width), nil
}

// removeFiles removes files (and empty directories). A file that backs a
// disk entry is refused: remove the disk first.
func (st *store) removeFiles(sel *selector) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	entries, err := st.filesLocked()
	if err != nil {
		return failure(err.Error())
	}
	var targets []fileEntry
	for _, e := range entries {
		if sel.find && matchAll(sel.conds, fileItem(e)) || !sel.find && e.name == strings.TrimPrefix(sel.name, "/") {
			targets = append(targets, e)
		}
	}
	if len(targets) == 0 && !sel.find {
		return errNoSuchItem
	}
	for _, e := range targets {
		if st.diskByFileLocked("/"+e.name) != nil || st.copying["/"+e.name] {
			return failure("file is in use")
		}
	}
	// Deepest first, so a directory is removed after its content.
	sort.Slice(targets, func(i, j int) bool { return targets[i].name > targets[j].name })
	for _, e := range targets {
		if err := os.Remove(st.hostPath(e.name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			if e.isDir {
				return failure("directory is not empty")
			}
			return failure(err.Error())
		}
	}
	return nil
}

func (st *store) monitor(ctx context.Context, c *command, env execEnv) (string, error) {
	sample := func() (string, error) {
		st.mu.Lock()
		defer st.mu.Unlock()
		ds := st.selectLocked(c.target)
		if len(ds) == 0 {
			return "", errNoSuchItem
		}
		var written int64
		if fi, err := os.Stat(st.hostPath(ds[0].FilePath)); err == nil {
			written = allocatedBytes(fi)
		}
		return renderKV([][2]string{
			{"slot", ds[0].Slot},
			{"read-ops-per-second", "0"},
			{"write-ops-per-second", "0"},
			{"read-rate", "0bps"},
			{"write-rate", "0bps"},
			{"read-bytes", "0"},
			{"write-bytes", groupDigits(written)},
		}), nil
	}
	if c.flags["once"] {
		return sample()
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		out, err := sample()
		if err != nil {
			return "", err
		}
		env.emit(out + "\n")
		select {
		case <-ctx.Done():
			return "", ctx.Err()
		case <-t.C:
		}
	}
}

func (st *store) resource(started time.Time) (string, error) {
	st.mu.Lock()
	used, err := st.usedLocked()
	st.mu.Unlock()
	if err != nil {
		return "", failure(err.Error())
	}
	up := time.Since(started).Truncate(time.Second)
	return renderKV([][2]string{
		{"uptime", routerOSDuration(up)},
		{"version", "7.20.4 (stable)"},
		{"free-memory", "28.4GiB"},
		{"total-memory", "32.0GiB"},
		{"cpu", "ARM64"},
		{"cpu-count", "4"},
		{"cpu-load", "1%"},
		{"free-hdd-space", humanSize(max(st.poolSize-used, 0))},
		{"total-hdd-space", humanSize(st.poolSize)},
		{"architecture-name", "arm64"},
		{"board-name", "RDS2216"},
		{"platform", "MikroTik"},
	}), nil
}

// routerOSDuration prints 1w2d3h4m5s.
func routerOSDuration(d time.Duration) string {
	s := int64(d / time.Second)
	var b strings.Builder
	for _, u := range []struct {
		n int64
		s string
	}{{7 * 86400, "w"}, {86400, "d"}, {3600, "h"}, {60, "m"}} {
		if s >= u.n {
			fmt.Fprintf(&b, "%d%s", s/u.n, u.s)
			s %= u.n
		}
	}
	fmt.Fprintf(&b, "%ds", s)
	return b.String()
}
