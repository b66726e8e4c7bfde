package driver

import (
	"errors"
	"fmt"
	"unsafe"

	"golang.org/x/sys/unix"
)

// blankEdge is how much of each end of a device must read back as zeros before it is formatted.
// Every signature blkid knows lives there: superblocks and partition tables at the start, GPT
// backup headers and md/LVM/ZFS labels at the end.
const blankEdge = 1 << 20

// directIOAlign is the buffer and offset alignment used for O_DIRECT reads; a page is a multiple
// of every logical block size the kernel supports for NVMe and loop devices.
const directIOAlign = 4096

// notBlankError: a device read back fine but holds non-zero bytes where a blank one has none.
type notBlankError struct {
	dev    string
	offset int64
}

func (e *notBlankError) Error() string {
	return fmt.Sprintf("%s has non-zero data at byte %d", e.dev, e.offset)
}

// errUnreadable marks a device whose ends could not be read back in full.
var errUnreadable = errors.New("device could not be read")

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
