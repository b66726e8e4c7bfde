package routeros

import (
	"regexp"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// Limits of the files the driver asks the RDS for. Slot, path, NQN and port rules are in
// pkg/volid, shared with the CSI services and the NVMe initiators.
const (
	MaxFileSize = int64(1) << 50 // 1 PiB: far above any RDS pool, far below int64 overflow
	MinFileSize = int64(1) << 20 // 1 MiB: RouterOS refuses tiny file disks
)

var poolNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ValidateSize checks a file size in bytes.
func ValidateSize(size int64) error {
	if size < MinFileSize {
		return Errorf(KindInvalidArgument, "size %d bytes is below the minimum of %d bytes", size, MinFileSize)
	}
	if size > MaxFileSize {
		return Errorf(KindInvalidArgument, "size %d bytes is above the maximum of %d bytes", size, MaxFileSize)
	}
	return nil
}

// ValidatePoolName checks a pool mount point name such as "storage-pool".
func ValidatePoolName(name string) error {
	if len(name) > 64 || !poolNameRE.MatchString(name) {
		return Errorf(KindInvalidArgument, "pool name %q may only hold letters, digits, '.', '_' and '-'", volid.Printable(name))
	}
	return nil
}

// invalidArgument returns the first of errs that is not nil, as an *Error: the identifier rules
// of pkg/volid know nothing of RouterOS, but callers of the command builders rely on every
// refusal being a KindInvalidArgument *Error.
func invalidArgument(errs ...error) error {
	for _, e := range errs {
		if e == nil {
			continue
		}
		if _, ok := e.(*Error); ok {
			return e
		}
		return &Error{Kind: KindInvalidArgument, Err: e}
	}
	return nil
}
