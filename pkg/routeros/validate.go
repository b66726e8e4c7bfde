package routeros

import (
	"regexp"
	"strings"
)

// Limits of the identifiers the driver sends to the RDS.
const (
	NQNPrefix   = "nqn.2000-02.com.mikrotik:"
	MaxNQNLen   = 223
	MaxSlotLen  = MaxNQNLen - len(NQNPrefix)
	MaxPathLen  = 255
	MaxFileSize = int64(1) << 50 // 1 PiB: far above any RDS pool, far below int64 overflow
	MinFileSize = int64(1) << 20 // 1 MiB: RouterOS refuses tiny file disks
)

var (
	slotRE     = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)
	pathRE     = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	nqnRE      = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+:[a-z0-9._:-]+$`)
	poolNameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)
)

// ValidateSlot checks a disk slot name (the CSI volume or snapshot ID) against the allow-list:
// lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, short
// enough for the NQN built from it.
func ValidateSlot(slot string) error {
	if slot == "" {
		return Errorf(KindInvalidArgument, "slot name is empty")
	}
	if len(slot) > MaxSlotLen {
		return Errorf(KindInvalidArgument, "slot name is %d characters, the limit is %d", len(slot), MaxSlotLen)
	}
	if !slotRE.MatchString(slot) {
		return Errorf(KindInvalidArgument, "slot name %q may only hold lower-case letters, digits, '.', '_' and '-', and must start and end with a letter or digit", printable(slot))
	}
	return nil
}

// ValidatePath checks an absolute path on the RDS: letters, digits, '.', '_', '-' and '/', no
// empty, '.' or '..' component.
func ValidatePath(p string) error {
	if len(p) > MaxPathLen {
		return Errorf(KindInvalidArgument, "path is %d characters, the limit is %d", len(p), MaxPathLen)
	}
	if !pathRE.MatchString(p) {
		return Errorf(KindInvalidArgument, "path %q must be absolute and may only hold letters, digits, '.', '_', '-' and '/'", printable(p))
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return Errorf(KindInvalidArgument, "path %q has an empty, '.' or '..' component", p)
		}
	}
	return nil
}

// ValidateNQN checks an NVMe qualified name.
func ValidateNQN(nqn string) error {
	if len(nqn) > MaxNQNLen {
		return Errorf(KindInvalidArgument, "NQN is %d bytes, the limit is %d", len(nqn), MaxNQNLen)
	}
	if !nqnRE.MatchString(nqn) {
		return Errorf(KindInvalidArgument, "NQN %q is not of the form nqn.yyyy-mm.domain:name in lower case", printable(nqn))
	}
	return nil
}

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

// ValidatePort checks a TCP port.
func ValidatePort(port int) error {
	if port < 1 || port > 65535 {
		return Errorf(KindInvalidArgument, "port %d is outside 1-65535", port)
	}
	return nil
}

// ValidatePoolName checks a pool mount point name such as "storage-pool".
func ValidatePoolName(name string) error {
	if len(name) > 64 || !poolNameRE.MatchString(name) {
		return Errorf(KindInvalidArgument, "pool name %q may only hold letters, digits, '.', '_' and '-'", printable(name))
	}
	return nil
}

// NQNForSlot returns the NQN under which the RDS exports a slot.
func NQNForSlot(slot string) string { return NQNPrefix + slot }

// printable shortens and escapes a rejected value so that it can be put in an error message.
func printable(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}
