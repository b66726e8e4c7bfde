//go:build linux

package rdssim

import (
	"errors"
	"io/fs"
	"os"
	"syscall"
)

const (
	seekData = 3 // SEEK_DATA on Linux
	seekHole = 4 // SEEK_HOLE on Linux
)

// dataRanges lists the [start, end) ranges of f that hold data.
func dataRanges(f *os.File, size int64) ([][2]int64, error) {
	var out [][2]int64
	for off := int64(0); off < size; {
		data, err := f.Seek(off, seekData)
		if errors.Is(err, syscall.ENXIO) {
			break // only a hole is left
		}
		if err != nil {
			// No SEEK_DATA on this file system: treat the rest as data.
			return append(out, [2]int64{off, size}), nil
		}
		hole, err := f.Seek(data, seekHole)
		if err != nil {
			hole = size
		}
		hole = min(hole, size)
		if hole <= data {
			break
		}
		out = append(out, [2]int64{data, hole})
		off = hole
	}
	return out, nil
}

// allocatedBytes is the space a file really uses on disk.
func allocatedBytes(fi fs.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks * 512
	}
	return fi.Size()
}
