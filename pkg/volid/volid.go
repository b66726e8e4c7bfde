// Package volid holds the naming rules of RDS volumes in one place: volume and snapshot IDs (which
// are the RDS disk slots), backing-file paths, and the NVMe/TCP name and port a volume is exported
// under.
//
// It imports none of the driver's packages, so that the CSI services, the RouterOS command
// builders, the RDS client and the NVMe initiators all apply the same rules.
package volid

import (
	"errors"
	"fmt"
	"path"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Limits of the identifiers the driver sends to the RDS and to nvme-cli.
const (
	NQNPrefix  = "nqn.2000-02.com.mikrotik:"
	MaxNQNLen  = 223 // the NVMe specification's limit
	MaxSlotLen = MaxNQNLen - len(NQNPrefix)
	MaxPathLen = 255
	// MaxNameLength is the longest CSI name accepted (the CSI spec asks plugins to take 128).
	MaxNameLength = 128
	// DefaultPort is the IANA port of NVMe/TCP, and the RDS default.
	DefaultPort = 4420
)

// Slot prefixes of the two kinds of disk the driver makes. Listing by prefix is how volumes and
// snapshots are told apart on the RDS.
const (
	VolumePrefix   = "pvc-"
	SnapshotPrefix = "snap-"
)

// ErrInvalid is wrapped by every error of this package: the value breaks a naming rule, and no
// retry can make it valid.
var ErrInvalid = errors.New("invalid identifier")

var (
	slotRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]*[a-z0-9])?$`)
	pathRE = regexp.MustCompile(`^/[A-Za-z0-9._/-]+$`)
	nqnRE  = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+:[a-z0-9._:-]+$`)
	// nameRE is the alphabet of CSI volume and snapshot names. Names are never sent to the RDS
	// (IDs derived from them are), but a name outside it is a caller's mistake worth reporting.
	nameRE    = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+:-]*$`)
	pvcNameRE = regexp.MustCompile(`^pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	// snapshotRE: snap-<uuid of name>-t<creation unix seconds, hex>-<source volume slot>.
	// RouterOS prints neither lineage nor creation time for disks, so both live in the slot.
	snapshotRE = regexp.MustCompile(`^snap-([0-9a-f-]{36})-t([0-9a-f]{1,16})-(.+)$`)
	// earlierSnapshotRE: the snapshot IDs of the earlier driver (3whiskeywhiskey/rds-csi),
	// snap-<uuid>-at-<suffix> (a Unix time in decimal or 10 hex digits) and, in its oldest
	// versions, snap-<uuid>. The uuid is the source volume's in some versions and one derived from
	// the snapshot's name in others, so neither lineage nor creation time can be read from them.
	earlierSnapshotRE = regexp.MustCompile(`^snap-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}(-at-[0-9a-f]{1,20})?$`)

	// nameSpace makes name → ID derivation stable across releases; never change it.
	nameSpace = uuid.MustParse("7d3b1c62-5a0e-4f7e-9d8a-2f1c3e4b5a69")
)

// invalidf returns an error that wraps ErrInvalid and reads as the message alone.
func invalidf(format string, args ...any) error {
	return &invalidError{msg: fmt.Sprintf(format, args...)}
}

type invalidError struct{ msg string }

func (e *invalidError) Error() string        { return e.msg }
func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// ValidateSlot checks a disk slot name (the CSI volume or snapshot ID) against the allow-list:
// lower-case letters, digits, '.', '_' and '-', starting and ending with a letter or digit, short
// enough for the NQN built from it.
func ValidateSlot(slot string) error {
	if slot == "" {
		return invalidf("slot name is empty")
	}
	return match("slot name", slot, MaxSlotLen, "characters", slotRE,
		"may only hold lower-case letters, digits, '.', '_' and '-', and must start and end with a letter or digit")
}

// match refuses s when it is longer than max or outside re; rule says what re allows.
func match(what, s string, max int, unit string, re *regexp.Regexp, rule string) error {
	if len(s) > max {
		return invalidf("%s is %d %s, the limit is %d", what, len(s), unit, max)
	}
	if !re.MatchString(s) {
		return invalidf("%s %q %s", what, Printable(s), rule)
	}
	return nil
}

// ValidateVolumeID checks a volume ID: a valid slot that is not a snapshot's, so that no volume
// call can reach a snapshot.
func ValidateVolumeID(id string) error {
	if id == "" {
		return invalidf("volume ID is missing")
	}
	if err := ValidateSlot(id); err != nil {
		return invalidf("volume ID %q: %v", id, err)
	}
	if strings.HasPrefix(id, SnapshotPrefix) {
		return invalidf("%q is a snapshot ID, not a volume ID", id)
	}
	return nil
}

// ValidatePath checks an absolute path on the RDS: letters, digits, '.', '_', '-' and '/', no
// empty, '.' or '..' component.
func ValidatePath(p string) error {
	if err := match("path", p, MaxPathLen, "characters", pathRE, "must be absolute and may only hold letters, digits, '.', '_', '-' and '/'"); err != nil {
		return err
	}
	for _, c := range strings.Split(p[1:], "/") {
		if c == "" || c == "." || c == ".." {
			return invalidf("path %q has an empty, '.' or '..' component", p)
		}
	}
	return nil
}

// ValidateNQN checks an NVMe qualified name.
func ValidateNQN(nqn string) error {
	return match("NQN", nqn, MaxNQNLen, "bytes", nqnRE, "is not of the form nqn.yyyy-mm.domain:name in lower case")
}

// ValidatePort checks a TCP port.
func ValidatePort(port int) error {
	if port < 1 || port > 65535 {
		return invalidf("port %d is outside 1-65535", port)
	}
	return nil
}

// NQN returns the NQN under which the RDS exports a slot.
func NQN(slot string) string { return NQNPrefix + slot }

// Owned reports whether an NQN belongs to this driver, i.e. may be disconnected by it.
func Owned(nqn string) bool {
	return strings.HasPrefix(nqn, NQNPrefix) && len(nqn) > len(NQNPrefix)
}

// SlotOfNQN returns the slot (the CSI volume ID) exported under an NQN of this driver.
func SlotOfNQN(nqn string) (string, error) {
	if !Owned(nqn) {
		return "", invalidf("NQN %q is not one of this driver's", Printable(nqn))
	}
	slot := strings.TrimPrefix(nqn, NQNPrefix)
	if err := ValidateSlot(slot); err != nil {
		return "", err
	}
	return slot, nil
}

// FilePath returns the backing file of a slot in a volume directory.
func FilePath(dir, slot string) string { return path.Join(dir, slot+".img") }

// Printable shortens and escapes a rejected value so that it can be put in an error message.
func Printable(s string) string {
	if len(s) > 80 {
		s = s[:80] + "..."
	}
	return strings.ToValidUTF8(s, "?")
}

func validateName(kind, name string) error {
	switch {
	case name == "":
		return invalidf("%s name is missing", kind)
	case len(name) > MaxNameLength:
		return invalidf("%s name is %d characters, the limit is %d", kind, len(name), MaxNameLength)
	case !nameRE.MatchString(name):
		return invalidf("%s name %q may only hold letters, digits, '.', '_', '+', ':' and '-'", kind, name)
	}
	return nil
}

// VolumeIDForName derives the volume ID (= RDS slot) from a CSI name. Kubernetes names of the form
// pvc-<uuid> are used as they are, so IDs match those of earlier drivers; other names map to
// pvc-<uuid5(name)>, deterministic so that a retried CreateVolume finds its volume.
func VolumeIDForName(name string) (string, error) {
	if err := validateName("volume", name); err != nil {
		return "", err
	}
	if pvcNameRE.MatchString(name) {
		return name, nil
	}
	return VolumePrefix + uuid.NewSHA1(nameSpace, []byte(name)).String(), nil
}

// SnapshotIDPrefix is the part of a snapshot's ID that depends on its name only: a retried
// CreateSnapshot finds the snapshot (or its unfinished copy) by it.
func SnapshotIDPrefix(name string) (string, error) {
	if err := validateName("snapshot", name); err != nil {
		return "", err
	}
	return SnapshotPrefix + uuid.NewSHA1(nameSpace, []byte("snapshot/"+name)).String() + "-t", nil
}

// SnapshotID builds a snapshot's ID from its name prefix, creation time and source volume.
func SnapshotID(prefix string, created time.Time, source string) (string, error) {
	id := prefix + strconv.FormatInt(created.Unix(), 16) + "-" + source
	if err := ValidateSlot(id); err != nil {
		return "", invalidf("source volume ID %q is too long to record in a snapshot ID: %v", source, err)
	}
	return id, nil
}

// Snapshot is what a snapshot's ID says about it.
type Snapshot struct {
	Source  string
	Created time.Time
}

// ParseSnapshotID reads a snapshot ID; ok is false for anything that is not one.
func ParseSnapshotID(id string) (s Snapshot, ok bool) {
	m := snapshotRE.FindStringSubmatch(id)
	if m == nil {
		return Snapshot{}, false
	}
	sec, err := strconv.ParseInt(m[2], 16, 64)
	if err != nil {
		return Snapshot{}, false
	}
	return Snapshot{Source: m[3], Created: time.Unix(sec, 0)}, true
}

// IsEarlierSnapshotID reports whether id has the form of a snapshot ID of the earlier driver
// (3whiskeywhiskey/rds-csi): snap-<uuid>-at-<suffix>, or snap-<uuid>. Such a snapshot is an
// unexported disk whose slot is the ID and whose backing file is "<ID>.img"; its ID says nothing
// else about it. No ID of this driver has either form.
func IsEarlierSnapshotID(id string) bool {
	return earlierSnapshotRE.MatchString(id)
}
