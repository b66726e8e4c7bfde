package driver

import (
	"github.com/srvlab/rds-csi/pkg/volid"
)

// checkVolumeID checks an incoming volume ID; a malformed one cannot name any volume, and a
// snapshot's ID never names one, so no volume call can reach a snapshot.
func checkVolumeID(id string) error {
	if err := volid.ValidateVolumeID(id); err != nil {
		return invalid("%v", err)
	}
	return nil
}

// isSnapshotID reports whether id can name a snapshot: anything else is known not to exist.
func isSnapshotID(id string) bool {
	_, ok := volid.ParseSnapshotID(id)
	return ok && volid.ValidateSlot(id) == nil
}
