package driver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	mount "k8s.io/mount-utils"
	utilexec "k8s.io/utils/exec"
)

// Mounter is what the node service does to the host, apart from attaching volumes: mount(8) and
// umount(8), mkfs, blkid, the mount table, the block device ioctls and the resize tools. The node's
// decisions (what to format, when to repair a stale mount, what to refuse) are made over it, so
// that they can be tested with a fake, without root and without devices; hostMounter is the real
// one.
type Mounter interface {
	// Mount mounts source on target (a bind mount when options hold "bind"); Unmount unmounts the
	// topmost mount on target. Neither takes a context: mount(8) and umount(8) cannot be stopped,
	// so callers wait for them with a bound (nodeService.bounded).
	Mount(source, target, fsType string, options []string) error
	Unmount(target string) error
	// FormatAndMount makes an fsType filesystem on dev, with formatOptions put before mount-utils'
	// own, and mounts it on target. It is called only on a device proven blank.
	FormatAndMount(dev, target, fsType string, mountOptions, formatOptions []string) error
	// MountInfo returns the mount table, mount points and roots unescaped.
	MountInfo() ([]mount.MountInfo, error)
	// Stat is os.Stat. It gives the device numbers of device nodes (and of device nodes bind
	// mounted onto files), and fails on a mount point whose filesystem is gone (ENOTCONN, EIO).
	Stat(path string) (os.FileInfo, error)
	// ProbeFilesystem returns the filesystem on dev, or "" only when the device is positively
	// blank; anything that cannot be told for sure is an error (a gRPC status).
	ProbeFilesystem(ctx context.Context, dev string) (string, error)
	// DeviceEdgesBlank returns nil when the first and last MiB of dev read back as zeros, a
	// *notBlankError when they hold data, and an error wrapping errUnreadable when they cannot be
	// read in full.
	DeviceEdgesBlank(dev string) error
	// DeviceSize is the size of a block device in bytes.
	DeviceSize(dev string) (int64, error)
	// DeviceReadOnly and SetDeviceReadOnly read and set the kernel's read-only flag of a block
	// device, which lives on the device and outlives its mounts.
	DeviceReadOnly(dev string) (bool, error)
	SetDeviceReadOnly(dev string, ro bool) error
	// Resize grows the filesystem on dev, mounted on path, to the size of the device.
	Resize(dev, path string) error
}

// hostMounter is the Mounter of a Linux host: mount-utils for mount(8), umount(8) and mkfs, the
// tools run through exec, the mount table read from mountInfo, and the block device ioctls.
type hostMounter struct {
	sfm       *mount.SafeFormatAndMount
	exec      utilexec.Interface
	resizer   *mount.ResizeFs
	mountInfo string // /proc/self/mountinfo
}

func newHostMounter(ex utilexec.Interface, mountInfo string) *hostMounter {
	return &hostMounter{
		sfm:       mount.NewSafeFormatAndMount(mount.New(""), ex),
		exec:      ex,
		resizer:   mount.NewResizeFs(ex),
		mountInfo: mountInfo,
	}
}

func (m *hostMounter) Mount(source, target, fsType string, options []string) error {
	return m.sfm.Mount(source, target, fsType, options)
}

func (m *hostMounter) Unmount(target string) error { return m.sfm.Unmount(target) }

func (m *hostMounter) FormatAndMount(dev, target, fsType string, mountOptions, formatOptions []string) error {
	return m.sfm.FormatAndMountSensitiveWithFormatOptions(dev, target, fsType, mountOptions, nil, formatOptions)
}

func (m *hostMounter) MountInfo() ([]mount.MountInfo, error) {
	mis, err := mount.ParseMountInfo(m.mountInfo)
	if err != nil {
		return nil, fmt.Errorf("reading the mount table: %w", err)
	}
	for i := range mis {
		mis[i].MountPoint = unescapeMountInfo(mis[i].MountPoint)
		mis[i].Root = unescapeMountInfo(mis[i].Root)
	}
	return mis, nil
}

func (m *hostMounter) Stat(path string) (os.FileInfo, error) { return os.Stat(path) }

func (m *hostMounter) DeviceEdgesBlank(dev string) error { return deviceEdgesBlank(dev) }

func (m *hostMounter) DeviceSize(dev string) (int64, error) { return blockDeviceSize(dev) }

func (m *hostMounter) DeviceReadOnly(dev string) (bool, error) { return deviceReadOnly(dev) }

func (m *hostMounter) SetDeviceReadOnly(dev string, ro bool) error {
	return setDeviceReadOnly(dev, ro)
}

func (m *hostMounter) Resize(dev, path string) error {
	_, err := m.resizer.Resize(dev, path)
	return err
}

// ProbeFilesystem asks blkid: "" only for its positive "blank" (exit status 2 and no output).
// Anything else that is not a clean answer is an error: a device is never formatted on a guess.
func (m *hostMounter) ProbeFilesystem(ctx context.Context, dev string) (string, error) {
	out, err := m.exec.CommandContext(ctx, "blkid", "-p", "-s", "TYPE", "-s", "PTTYPE", "-o", "export", dev).CombinedOutput()
	text := strings.TrimSpace(string(out))
	if err != nil {
		var ee utilexec.ExitError
		if errors.As(err, &ee) && ee.ExitStatus() == 2 && text == "" {
			return "", nil
		}
		return "", status.Errorf(codes.Internal, "cannot tell whether %s is blank, so it is left alone: blkid: %v %s", dev, err, text)
	}
	var fsType, ptType string
	for _, line := range strings.Split(text, "\n") {
		k, val, ok := strings.Cut(strings.TrimSpace(line), "=")
		switch {
		case !ok:
			return "", status.Errorf(codes.Internal, "cannot tell whether %s is blank, so it is left alone: blkid printed %q", dev, text)
		case k == "TYPE":
			fsType = val
		case k == "PTTYPE":
			ptType = val
		}
	}
	if ptType != "" {
		return "", status.Errorf(codes.FailedPrecondition, "%s holds a %s partition table: refusing to format or mount it", dev, ptType)
	}
	if fsType == "" {
		return "", status.Errorf(codes.Internal, "cannot tell whether %s is blank, so it is left alone: blkid found a signature without a type: %q", dev, text)
	}
	return fsType, nil
}
