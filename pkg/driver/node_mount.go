package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
	mount "k8s.io/mount-utils"
)

// mountState is what a staging or target path holds.
type mountState int

const (
	notMounted   mountState = iota
	mountedOK               // the volume's current device is mounted there
	mountedStale            // something else, a vanished device, or an unreadable mount point
)

// maxStackedMounts bounds the unmount loops: mounts stacked on one path are peeled one by one.
const maxStackedMounts = 8

// unescapeMountInfo undoes the octal escapes of /proc/self/mountinfo (\040 for a space, ...).
func unescapeMountInfo(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+4 <= len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

// resolve returns the path as the mount table shows it (symlinks resolved when possible).
func resolve(p string) string {
	if r, err := filepath.EvalSymlinks(p); err == nil {
		return r
	}
	return p
}

// mountsAt returns the mounts on a path, the topmost (visible) one last.
func (n *nodeService) mountsAt(p string) ([]mount.MountInfo, error) {
	mis, err := n.mounter.MountInfo()
	if err != nil {
		return nil, err
	}
	r := resolve(p)
	var at []mount.MountInfo
	for _, mi := range mis {
		if mi.MountPoint == r || mi.MountPoint == p {
			at = append(at, mi)
		}
	}
	return at, nil
}

func rdevOf(fi os.FileInfo) (uint64, bool) {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return 0, false
	}
	return uint64(st.Rdev), true //nolint:unconvert // Rdev is uint32 on some platforms
}

// deviceNumber is the device number of a block device node.
func (n *nodeService) deviceNumber(dev string) (uint64, error) {
	fi, err := n.mounter.Stat(dev)
	if err != nil {
		return 0, err
	}
	if fi.Mode()&os.ModeDevice == 0 || fi.Mode()&os.ModeCharDevice != 0 {
		return 0, fmt.Errorf("%s is not a block device", dev)
	}
	rdev, ok := rdevOf(fi)
	if !ok {
		return 0, fmt.Errorf("%s: no device number", dev)
	}
	return rdev, nil
}

func devString(rdev uint64) string { return fmt.Sprintf("%d:%d", unix.Major(rdev), unix.Minor(rdev)) }

// checkMount tells whether path holds the volume's current device dev ("" when the volume has no
// device on this node). For block volumes, path is a device node bind mount; for filesystem
// volumes, a mount of dev (or a bind mount of one).
func (n *nodeService) checkMount(path, dev string, block bool) (mountState, string, error) {
	fi, err := n.mounter.Stat(path)
	switch {
	case os.IsNotExist(err):
		return notMounted, "", nil
	case mount.IsCorruptedMnt(err):
		return mountedStale, fmt.Sprintf("mount point %s is unreadable: %v", path, err), nil
	case err != nil:
		return notMounted, "", err
	}
	at, err := n.mountsAt(path)
	if err != nil {
		return notMounted, "", err
	}
	if len(at) == 0 {
		return notMounted, "", nil
	}
	if dev == "" {
		return mountedStale, "the volume's device is gone from this node", nil
	}
	want, err := n.deviceNumber(dev)
	if err != nil {
		return mountedStale, fmt.Sprintf("device %s is unusable: %v", dev, err), nil
	}
	var got string
	if block {
		rdev, ok := rdevOf(fi)
		if !ok || fi.Mode()&os.ModeDevice == 0 {
			return mountedStale, fmt.Sprintf("%s is mounted but is not a device node", path), nil
		}
		got = devString(rdev)
	} else {
		top := at[len(at)-1]
		got = fmt.Sprintf("%d:%d", top.Major, top.Minor)
	}
	if got != devString(want) {
		return mountedStale, fmt.Sprintf("%s holds device %s, but the volume's device is %s (%s)", path, got, dev, devString(want)), nil
	}
	return mountedOK, "", nil
}

// mountReadOnly reports whether the topmost mount on path is read-only.
func (n *nodeService) mountReadOnly(path string) (bool, error) {
	at, err := n.mountsAt(path)
	if err != nil || len(at) == 0 {
		return false, err
	}
	for _, o := range at[len(at)-1].MountOptions {
		if o == "ro" {
			return true, nil
		}
	}
	return false, nil
}

// errMountInUse marks an unmount refused because a process on the node still uses the mount
// (umount(8): "target is busy"). Nothing changed and nothing is forced: a lazy or forced unmount
// would hide a writer that is still there. It is FailedPrecondition; the caller retries once the
// process is gone.
var errMountInUse = errors.New("still in use by a process on this node; nothing was unmounted")

// unmount unmounts the topmost mount on path, giving up (not stopping it) after the mount timeout.
func (n *nodeService) unmount(ctx context.Context, id, path string) error {
	err := n.bounded(ctx, id, "unmounting "+path, n.mountTimeout, func() error { return n.mounter.Unmount(path) })
	if err != nil && strings.Contains(err.Error(), "target is busy") {
		return fmt.Errorf("%w: %v", errMountInUse, err)
	}
	return err
}

// unmountAll unmounts everything mounted on path, a broken mount point included. It never deletes.
func (n *nodeService) unmountAll(ctx context.Context, id, path string) error {
	for i := 0; i < maxStackedMounts; i++ {
		_, err := n.mounter.Stat(path)
		if os.IsNotExist(err) {
			return nil
		}
		if err != nil && !mount.IsCorruptedMnt(err) {
			return fmt.Errorf("checking %s: %w", path, err)
		}
		if err == nil {
			at, err := n.mountsAt(path)
			if err != nil {
				return err
			}
			if len(at) == 0 {
				return nil
			}
		}
		if err := n.unmount(ctx, id, path); err != nil {
			return fmt.Errorf("unmounting %s: %w", path, err)
		}
	}
	return fmt.Errorf("%s still has mounts after %d unmounts", path, maxStackedMounts)
}

// removeMountPoint deletes a target path this driver created, once nothing is mounted on it: an
// empty directory or an empty file, never anything holding data.
func (n *nodeService) removeMountPoint(path string) error {
	fi, err := os.Lstat(path)
	if os.IsNotExist(err) {
		return nil
	}
	if err != nil {
		return err
	}
	if at, err := n.mountsAt(path); err != nil {
		return err
	} else if len(at) > 0 {
		return fmt.Errorf("%s is still a mount point", path)
	}
	if fi.Mode().IsRegular() && fi.Size() != 0 {
		return fmt.Errorf("%s is a file holding %d bytes, not an empty mount point: left in place", path, fi.Size())
	}
	if err := os.Remove(path); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("removing %s (only an empty directory or file is removed): %w", path, err)
	}
	return nil
}

// deviceUsers lists what holds dev on this node, apart from the paths in except: mounts of it
// (filesystem mounts and their bind mounts), bind mounts of its device node, and kernel holders
// such as device-mapper.
func (n *nodeService) deviceUsers(dev string, except ...string) ([]string, error) {
	rdev, err := n.deviceNumber(dev)
	if err != nil {
		return nil, err
	}
	skip := map[string]bool{}
	for _, e := range except {
		skip[e], skip[resolve(e)] = true, true
	}
	mis, err := n.mounter.MountInfo()
	if err != nil {
		return nil, err
	}
	var users []string
	for _, mi := range mis {
		if skip[mi.MountPoint] {
			continue
		}
		if uint32(mi.Major) == unix.Major(rdev) && uint32(mi.Minor) == unix.Minor(rdev) {
			users = append(users, mi.MountPoint)
			continue
		}
		// A device node bind mount shows the file system that holds the node (devtmpfs, or tmpfs
		// in a container) and the node's path inside it.
		if mi.Root == "/" || (mi.FsType != "devtmpfs" && mi.FsType != "tmpfs") {
			continue
		}
		if fi, err := n.mounter.Stat(mi.MountPoint); err == nil && fi.Mode()&os.ModeDevice != 0 {
			if r, ok := rdevOf(fi); ok && r == rdev {
				users = append(users, mi.MountPoint)
			}
		}
	}
	holders, _ := os.ReadDir(filepath.Join(n.sysfs, "dev", "block", devString(rdev), "holders"))
	for _, h := range holders {
		users = append(users, "holder "+h.Name())
	}
	return users, nil
}
