package rdssim

import (
	"bytes"
	"io"
	"os"
)

const copyChunk = 1 << 20

// copySparse copies src into dst (both open, dst empty) preserving holes:
// only the data ranges of src are read (SEEK_DATA/SEEK_HOLE where the OS has
// them), and all-zero chunks inside them are skipped, so a mostly empty
// multi-GiB image copies in milliseconds. dst ends up with src's size.
func copySparse(dst, src *os.File) error {
	fi, err := src.Stat()
	if err != nil {
		return err
	}
	size := fi.Size()
	if err := dst.Truncate(size); err != nil {
		return err
	}
	ranges, err := dataRanges(src, size)
	if err != nil {
		return err
	}
	buf := make([]byte, copyChunk)
	zero := make([]byte, copyChunk)
	for _, r := range ranges {
		for off := r[0]; off < r[1]; {
			n := int(min(int64(copyChunk), r[1]-off))
			m, err := src.ReadAt(buf[:n], off)
			if err != nil && err != io.EOF {
				return err
			}
			if m == 0 {
				break
			}
			if !bytes.Equal(buf[:m], zero[:m]) {
				if _, err := dst.WriteAt(buf[:m], off); err != nil {
					return err
				}
			}
			off += int64(m)
		}
	}
	return nil
}
