package driver

import (
	"fmt"
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The block device ioctls and O_DIRECT reads exist on Linux only; node_blockdev_other.go has the
// stubs that let the module build (and the node logic be unit tested) elsewhere.

// directIOAlign is the buffer and offset alignment used for O_DIRECT reads; a page is a multiple
// of every logical block size the kernel supports for NVMe and loop devices.
const directIOAlign = 4096

// blockDeviceSize returns the size of a block device (or of the device behind a device node).
func blockDeviceSize(path string) (int64, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return 0, err
	}
	defer f.Close()
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, f.Fd(), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return 0, fmt.Errorf("BLKGETSIZE64 %s: %w", path, errno)
	}
	return int64(size), nil
}

// deviceReadOnly reads, and setDeviceReadOnly sets, the kernel's read-only flag of a block device.
// A read-only bind mount does not stop writes through a device node; this flag does.
func deviceReadOnly(dev string) (bool, error) {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return false, err
	}
	defer f.Close()
	ro, err := unix.IoctlGetInt(int(f.Fd()), unix.BLKROGET)
	if err != nil {
		return false, fmt.Errorf("BLKROGET %s: %w", dev, err)
	}
	return ro != 0, nil
}

func setDeviceReadOnly(dev string, ro bool) error {
	f, err := os.OpenFile(dev, os.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	v := 0
	if ro {
		v = 1
	}
	if err := unix.IoctlSetPointerInt(int(f.Fd()), unix.BLKROSET, v); err != nil {
		return fmt.Errorf("BLKROSET %s: %w", dev, err)
	}
	return nil
}

// deviceEdgesBlank reads the first and last blankEdge bytes of dev and reports whether they are
// all zeros: nil when they are, a *notBlankError when they are not, and an error wrapping
// errUnreadable when any of it could not be read.
//
// It exists because "blkid -p" exits 2 with no output both for a blank device and for one it could
// not read (an NVMe path going away, a loop device over a truncated file): on its own, a transient
// read error looks exactly like a blank disk, and formatting on that answer destroys the volume.
// O_DIRECT bypasses the page cache, so what is compared is what the device returns now, not pages
// cached before an error or before another node wrote the volume.
func deviceEdgesBlank(dev string) error {
	fd, err := unix.Open(dev, unix.O_RDONLY|unix.O_DIRECT|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("%w: opening %s with O_DIRECT: %v", errUnreadable, dev, err)
	}
	defer unix.Close(fd)
	var size uint64
	if _, _, errno := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.BLKGETSIZE64, uintptr(unsafe.Pointer(&size))); errno != 0 {
		return fmt.Errorf("%w: BLKGETSIZE64 %s: %v", errUnreadable, dev, errno)
	}
	if size == 0 {
		// A namespace reported with no size is one the kernel cannot use yet, not a blank disk.
		return fmt.Errorf("%w: %s reports a size of 0", errUnreadable, dev)
	}
	end := int64(size)
	type span struct{ from, to int64 }
	spans := []span{{0, min(end, blankEdge)}}
	if end > blankEdge {
		spans = append(spans, span{max(blankEdge, end-blankEdge), end})
	}
	buf := alignedBuffer(blankEdge, directIOAlign)
	for _, s := range spans {
		if err := readZeros(fd, dev, buf[:s.to-s.from], s.from); err != nil {
			return err
		}
	}
	return nil
}

// readZeros fills buf from offset off of fd, completely, and checks that it holds only zeros.
func readZeros(fd int, dev string, buf []byte, off int64) error {
	for done := 0; done < len(buf); {
		n, err := unix.Pread(fd, buf[done:], off+int64(done))
		if err != nil {
			return fmt.Errorf("%w: reading %s at byte %d: %v", errUnreadable, dev, off+int64(done), err)
		}
		if n == 0 {
			return fmt.Errorf("%w: reading %s at byte %d: end of device before its reported size", errUnreadable, dev, off+int64(done))
		}
		done += n
	}
	for i, b := range buf {
		if b != 0 {
			return &notBlankError{dev: dev, offset: off + int64(i)}
		}
	}
	return nil
}

// alignedBuffer returns size bytes starting at a multiple of align, as O_DIRECT requires. Go's
// heap does not move objects, so the alignment holds for the buffer's life.
func alignedBuffer(size, align int) []byte {
	raw := make([]byte, size+align)
	shift := 0
	if r := int(uintptr(unsafe.Pointer(&raw[0])) % uintptr(align)); r != 0 {
		shift = align - r
	}
	return raw[shift : shift+size : shift+size]
}
