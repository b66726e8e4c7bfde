package driver

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/srvlab/rds-csi/pkg/routeros"
)

// MaxNameLength is the longest CSI name accepted (the CSI spec asks plugins to take 128).
const MaxNameLength = 128

const (
	volumePrefix   = "pvc-"
	snapshotPrefix = "snap-"
)

var (
	// nameRE is the alphabet of CSI volume and snapshot names. Names are never sent to the RDS
	// (IDs derived from them are), but a name outside it is a caller's mistake worth reporting.
	nameRE     = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._+:-]*$`)
	pvcNameRE  = regexp.MustCompile(`^pvc-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	hostnameRE = regexp.MustCompile(`^[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]*[A-Za-z0-9])?)*$`)
	// snapshotSlotRE: snap-<uuid of name>-t<creation unix seconds, hex>-<source volume slot>.
	// RouterOS prints neither lineage nor creation time for disks, so both live in the slot.
	snapshotSlotRE = regexp.MustCompile(`^snap-([0-9a-f-]{36})-t([0-9a-f]{1,16})-(.+)$`)

	// nameSpace makes name → ID derivation stable across releases; never change it.
	nameSpace = uuid.MustParse("7d3b1c62-5a0e-4f7e-9d8a-2f1c3e4b5a69")
)

func validateName(kind, name string) error {
	switch {
	case name == "":
		return invalid("%s name is missing", kind)
	case len(name) > MaxNameLength:
		return invalid("%s name is %d characters, the limit is %d", kind, len(name), MaxNameLength)
	case !nameRE.MatchString(name):
		return invalid("%s name %q may only hold letters, digits, '.', '_', '+', ':' and '-'", kind, name)
	}
	return nil
}

// volumeIDForName derives the volume ID (= RDS slot) from a CSI name. Kubernetes names of the form
// pvc-<uuid> are used as they are, so IDs match those of earlier drivers; other names map to
// pvc-<uuid5(name)>, deterministic so that a retried CreateVolume finds its volume.
func volumeIDForName(name string) (string, error) {
	if err := validateName("volume", name); err != nil {
		return "", err
	}
	if pvcNameRE.MatchString(name) {
		return name, nil
	}
	return volumePrefix + uuid.NewSHA1(nameSpace, []byte(name)).String(), nil
}

// snapshotIDPrefix is the part of a snapshot's slot that depends on its name only.
func snapshotIDPrefix(name string) (string, error) {
	if err := validateName("snapshot", name); err != nil {
		return "", err
	}
	return snapshotPrefix + uuid.NewSHA1(nameSpace, []byte("snapshot/"+name)).String() + "-t", nil
}

// snapshotID builds a snapshot's slot from its name prefix, creation time and source volume.
func snapshotID(prefix string, created time.Time, source string) (string, error) {
	id := prefix + strconv.FormatInt(created.Unix(), 16) + "-" + source
	if err := routeros.ValidateSlot(id); err != nil {
		return "", invalid("source volume ID %q is too long to record in a snapshot ID: %v", source, err)
	}
	return id, nil
}

// snapshotInfo is what a snapshot's slot says about it.
type snapshotInfo struct {
	Source  string
	Created time.Time
}

func parseSnapshotID(id string) (snapshotInfo, bool) {
	m := snapshotSlotRE.FindStringSubmatch(id)
	if m == nil {
		return snapshotInfo{}, false
	}
	sec, err := strconv.ParseInt(m[2], 16, 64)
	if err != nil {
		return snapshotInfo{}, false
	}
	return snapshotInfo{Source: m[3], Created: time.Unix(sec, 0)}, true
}

// validateVolumeID checks an incoming volume ID; a malformed one cannot name any volume.
func validateVolumeID(id string) error {
	if id == "" {
		return invalid("volume ID is missing")
	}
	if err := routeros.ValidateSlot(id); err != nil {
		return invalid("volume ID %q: %v", id, err)
	}
	if strings.HasPrefix(id, snapshotPrefix) {
		return invalid("%q is a snapshot ID, not a volume ID", id)
	}
	return nil
}

func describe(id string) string { return fmt.Sprintf("volume %s", id) }
