package driver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
)

// fakeDevice is a block device as the fake Mounter shows it.
type fakeDevice struct {
	rdev   uint64
	size   int64
	fsType string // what blkid finds: "" for blank (or unreadable: blkid cannot tell them apart)
	probe  error  // blkid fails to answer
	edges  error  // what reading the first and last MiB gives: nil (zeros), a *notBlankError, errUnreadable
	ro     bool   // the kernel's read-only flag
}

// fakeMount is a mount table entry; dev is set for a device node bind mounted onto a file.
type fakeMount struct {
	mount.MountInfo
	dev string
}

// fakeMounter is a Mounter over an in-memory mount table and devices, for unit tests of the node's
// decisions without root. Paths outside its devices and mounts are the real file system (the
// tests' temporary directories), as the node service creates and removes mount points itself.
type fakeMounter struct {
	mu        sync.Mutex
	devices   map[string]*fakeDevice
	mounts    []fakeMount     // in mount order: the topmost mount on a path is the last one
	broken    map[string]bool // mount points whose filesystem is gone: Stat fails with ENOTCONN until unmounted
	formatErr error           // FormatAndMount fails after writing half a filesystem
	mountErr  error           // Mount of a device fails (a filesystem that does not mount)
	umountErr error           // Unmount fails and changes nothing (a mount a process still uses)
	calls     []string        // "op arg ...", in order
	nextID    int
}

func newFakeMounter() *fakeMounter {
	return &fakeMounter{devices: map[string]*fakeDevice{}, broken: map[string]bool{}}
}

// addDevice adds a blank device.
func (f *fakeMounter) addDevice(dev string, minor uint32) *fakeDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	d := &fakeDevice{rdev: unix.Mkdev(259, minor), size: 64 << 20}
	f.devices[dev] = d
	return d
}

func (f *fakeMounter) device(dev string) *fakeDevice {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.devices[dev]
}

// addMount puts something that is not a volume (a tmpfs) on path.
func (f *fakeMounter) addMount(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.mounts = append(f.mounts, fakeMount{MountInfo: mount.MountInfo{ID: f.nextID, Major: 0, Minor: 4242,
		Root: "/", MountPoint: path, MountOptions: []string{"rw"}, FsType: "tmpfs", Source: "tmpfs"}})
}

func (f *fakeMounter) breakMount(path string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.broken[path] = true
}

func (f *fakeMounter) record(format string, args ...any) {
	f.calls = append(f.calls, fmt.Sprintf(format, args...))
}

// ran returns the calls starting with prefix.
func (f *fakeMounter) ran(prefix string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		if strings.HasPrefix(c, prefix) {
			out = append(out, c)
		}
	}
	return out
}

// mountsAt returns the mounts on path, topmost last.
func (f *fakeMounter) mountsAt(path string) []fakeMount {
	f.mu.Lock()
	defer f.mu.Unlock()
	var at []fakeMount
	for _, m := range f.mounts {
		if m.MountPoint == path {
			at = append(at, m)
		}
	}
	return at
}

func (f *fakeMounter) topLocked(path string) *fakeMount {
	for i := len(f.mounts) - 1; i >= 0; i-- {
		if f.mounts[i].MountPoint == path {
			return &f.mounts[i]
		}
	}
	return nil
}

func (f *fakeMounter) Mount(source, target, fsType string, options []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("mount %s %s %s %s", source, target, fsType, strings.Join(options, ","))
	if f.mountErr != nil && f.devices[source] != nil && !slices.Contains(options, "bind") {
		return f.mountErr
	}
	return f.mountLocked(source, target, fsType, options)
}

func (f *fakeMounter) mountLocked(source, target, fsType string, options []string) error {
	mode := "rw"
	if slices.Contains(options, "ro") {
		mode = "ro"
	}
	m := fakeMount{MountInfo: mount.MountInfo{Root: "/", MountPoint: target, MountOptions: []string{mode}}}
	d := f.devices[source]
	switch {
	case slices.Contains(options, "bind") && d != nil:
		// As the kernel shows a device node bind mount: the devtmpfs holding the node, and the
		// node's path inside it.
		m.FsType, m.Source, m.Major, m.Minor, m.Root, m.dev = "devtmpfs", "udev", 0, 6, "/"+filepath.Base(source), source
	case slices.Contains(options, "bind"):
		top := f.topLocked(source)
		if top == nil {
			return fmt.Errorf("mount --bind %s %s: nothing mounted on %s (the fake binds mounts only)", source, target, source)
		}
		m.FsType, m.Source, m.Major, m.Minor, m.dev = top.FsType, top.Source, top.Major, top.Minor, top.dev
	case d == nil:
		return fmt.Errorf("mount %s %s: no such device", source, target)
	case d.fsType != fsType:
		return fmt.Errorf("mount %s %s: wrong fs type %q, the device holds %q", source, target, fsType, d.fsType)
	default:
		m.FsType, m.Source, m.Major, m.Minor = fsType, source, int(unix.Major(d.rdev)), int(unix.Minor(d.rdev))
	}
	f.nextID++
	m.ID = f.nextID
	f.mounts = append(f.mounts, m)
	return nil
}

func (f *fakeMounter) Unmount(target string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("unmount %s", target)
	if f.umountErr != nil {
		return f.umountErr
	}
	for i := len(f.mounts) - 1; i >= 0; i-- {
		if f.mounts[i].MountPoint == target {
			f.mounts = slices.Delete(f.mounts, i, i+1)
			delete(f.broken, target)
			return nil
		}
	}
	return fmt.Errorf("umount %s: not mounted", target)
}

func (f *fakeMounter) FormatAndMount(dev, target, fsType string, mountOptions, formatOptions []string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("format %s %s %s", dev, fsType, strings.Join(formatOptions, " "))
	d := f.devices[dev]
	if d == nil {
		return fmt.Errorf("mkfs %s: no such device", dev)
	}
	// mkfs writes near the start of the device before anything else: whatever stops it leaves a
	// device that is neither blank nor a filesystem.
	d.edges = &notBlankError{dev: dev, offset: 1024}
	if f.formatErr != nil {
		return f.formatErr
	}
	d.fsType = fsType
	return f.mountLocked(dev, target, fsType, mountOptions)
}

func (f *fakeMounter) MountInfo() ([]mount.MountInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	mis := make([]mount.MountInfo, 0, len(f.mounts))
	for _, m := range f.mounts {
		mis = append(mis, m.MountInfo)
	}
	return mis, nil
}

func (f *fakeMounter) Stat(path string) (os.FileInfo, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.broken[path] {
		return nil, &os.PathError{Op: "stat", Path: path, Err: syscall.ENOTCONN}
	}
	if d := f.devices[path]; d != nil {
		return fakeDevInfo{name: path, rdev: d.rdev}, nil
	}
	if top := f.topLocked(path); top != nil && top.dev != "" {
		if d := f.devices[top.dev]; d != nil {
			return fakeDevInfo{name: path, rdev: d.rdev}, nil
		}
	}
	return os.Stat(path)
}

func (f *fakeMounter) ProbeFilesystem(_ context.Context, dev string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("probe %s", dev)
	d := f.devices[dev]
	if d == nil {
		return "", status.Errorf(codes.Internal, "blkid: %s: no such device", dev)
	}
	return d.fsType, d.probe
}

func (f *fakeMounter) DeviceEdgesBlank(dev string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("edges %s", dev)
	d := f.devices[dev]
	if d == nil {
		return fmt.Errorf("%w: %s: no such device", errUnreadable, dev)
	}
	return d.edges
}

func (f *fakeMounter) DeviceSize(dev string) (int64, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.devices[dev]; d != nil {
		return d.size, nil
	}
	return 0, fmt.Errorf("%s: no such device", dev)
}

func (f *fakeMounter) DeviceReadOnly(dev string) (bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if d := f.devices[dev]; d != nil {
		return d.ro, nil
	}
	return false, fmt.Errorf("%s: no such device", dev)
}

func (f *fakeMounter) SetDeviceReadOnly(dev string, ro bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("setro %s %v", dev, ro)
	d := f.devices[dev]
	if d == nil {
		return fmt.Errorf("%s: no such device", dev)
	}
	d.ro = ro
	return nil
}

func (f *fakeMounter) Resize(dev, path string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.record("resize %s %s", dev, path)
	return nil
}

// fakeDevInfo is what stat says of a block device node.
type fakeDevInfo struct {
	name string
	rdev uint64
}

func (i fakeDevInfo) Name() string     { return filepath.Base(i.name) }
func (fakeDevInfo) Size() int64        { return 0 }
func (fakeDevInfo) Mode() os.FileMode  { return os.ModeDevice | 0o660 }
func (fakeDevInfo) ModTime() time.Time { return time.Time{} }
func (fakeDevInfo) IsDir() bool        { return false }
func (i fakeDevInfo) Sys() any         { st := &syscall.Stat_t{}; setRdev(&st.Rdev, i.rdev); return st }

// setRdev sets a Stat_t's Rdev, whose type depends on the platform.
func setRdev[T ~int32 | ~uint32 | ~uint64](p *T, v uint64) { *p = T(v) }
