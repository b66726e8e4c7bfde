package driver

import (
	"errors"
	"fmt"
)

// blankEdge is how much of each end of a device must read back as zeros before it is formatted.
// Every signature blkid knows lives there: superblocks and partition tables at the start, GPT
// backup headers and md/LVM/ZFS labels at the end.
const blankEdge = 1 << 20

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
