// Package doctor compares what the RDS holds with what Kubernetes says, reports each mismatch
// with the exact next step, and removes orphan disks and files when asked.
//
// It is read-only except for Cleanup. It makes one listing of each kind (RDS disks, files and
// clock; PersistentVolumes, PersistentVolumeClaims, VolumeAttachments, Nodes,
// VolumeSnapshotContents) and no per-volume round trips. A listing that fails stops it with a
// LookError: nothing is ever reported missing because it could not be listed.
package doctor

import (
	"errors"
	"fmt"
	"time"
)

// DefaultMinAge is how old an orphan must be before Cleanup removes it: a disk made by a
// CreateVolume a moment ago has no PersistentVolume yet.
const DefaultMinAge = time.Hour

// Config says whose volumes to look at and how cautious cleanup is.
type Config struct {
	DriverName string
	// SnapshotNamePrefix is the external-snapshotter's --snapshot-name-prefix ("snapshot"): a
	// VolumeSnapshotContent still being made names its future disk through it.
	SnapshotNamePrefix string
	// VolumeNamePrefix is the external-provisioner's --volume-name-prefix ("pvc"): a claim being
	// provisioned names its future disk through it.
	VolumeNamePrefix string
	MinAge           time.Duration
	// Now is the local clock (tests); nil means time.Now.
	Now func() time.Time
}

func (c *Config) defaults() {
	if c.SnapshotNamePrefix == "" {
		c.SnapshotNamePrefix = "snapshot"
	}
	if c.VolumeNamePrefix == "" {
		c.VolumeNamePrefix = "pvc"
	}
	if c.MinAge <= 0 {
		c.MinAge = DefaultMinAge
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Kind names a kind of finding.
type Kind string

// The kinds of finding.
const (
	OrphanDisk          Kind = "orphan-disk"           // a disk nothing in Kubernetes names
	OrphanFile          Kind = "orphan-file"           // a volume file no disk uses
	PVDiskMissing       Kind = "pv-disk-missing"       // a PV whose disk entry is gone
	PVFileMissing       Kind = "pv-file-missing"       // a PV whose disk is there but its file is not
	DiskFileMissing     Kind = "disk-file-missing"     // an unreferenced disk whose file is gone
	SnapshotDiskMissing Kind = "snapshot-disk-missing" // a VolumeSnapshotContent whose disk is gone
	NotExported         Kind = "not-exported"          // a PV's disk is not exported over NVMe/TCP
	SizeMismatch        Kind = "size-mismatch"         // PV capacity and disk size differ
	HolderNotReady      Kind = "holder-not-ready"      // attached to a NotReady node
	HolderDeleted       Kind = "holder-node-deleted"   // attached to a node that no longer exists
	HolderOutOfService  Kind = "holder-out-of-service" // attached to a node tainted out-of-service
	MigrationOverdue    Kind = "migration-overdue"     // dual attachment past migrationTimeout
	Conflict            Kind = "attach-conflict"       // single-node volume attached to two nodes
)

// Finding is one thing out of line, with what to do about it.
type Finding struct {
	Kind   Kind   `json:"kind"`
	Object string `json:"object"` // e.g. "disk pvc-...", "file /storage-pool/...", "pv pvc-..."
	Volume string `json:"volume,omitempty"`
	Node   string `json:"node,omitempty"`
	Age    string `json:"age,omitempty"`
	Detail string `json:"detail"`
	// Action is the exact next step.
	Action string `json:"action"`
	// NeedsAction is false for findings that only inform (an orphan younger than the minimum
	// age, an attachment the driver has already released).
	NeedsAction bool `json:"needsAction"`
	// Removable is set when Cleanup may remove the object.
	Removable *Target `json:"removable,omitempty"`
}

// Target is an orphan Cleanup may remove: a disk (entry and file) or a file alone.
type Target struct {
	Disk bool          `json:"disk"` // a disk entry with its file; else a file alone
	Slot string        `json:"slot"`
	Path string        `json:"path"`
	Age  time.Duration `json:"-"`
}

func (t Target) String() string {
	if t.Disk {
		return fmt.Sprintf("disk %s (file %s)", t.Slot, t.Path)
	}
	return "file " + t.Path
}

// Counts says how much was looked at.
type Counts struct {
	Disks                  int  `json:"disks"`
	Files                  int  `json:"files"`
	PersistentVolumes      int  `json:"persistentVolumes"`
	Claims                 int  `json:"persistentVolumeClaims"`
	VolumeAttachments      int  `json:"volumeAttachments"`
	Nodes                  int  `json:"nodes"`
	VolumeSnapshotContents int  `json:"volumeSnapshotContents"`
	SnapshotsInstalled     bool `json:"snapshotCRDInstalled"`
}

// Report is the outcome of one look (and of a cleanup, if one ran).
type Report struct {
	Time     time.Time `json:"time"`
	Driver   string    `json:"driver"`
	MinAge   string    `json:"minAge"`
	Counts   Counts    `json:"counts"`
	Findings []Finding `json:"findings"`
	Cleanup  []Removal `json:"cleanup,omitempty"`
	// Error is set when doctor could not look; the findings are then empty, not "all clear".
	Error string `json:"error,omitempty"`
}

// Removal is one cleanup step and its outcome.
type Removal struct {
	Target Target `json:"target"`
	// Result: "would remove" (dry run), "removed", "skipped" (the re-check found it no longer
	// an orphan old enough) or "failed".
	Result string `json:"result"`
	Reason string `json:"reason,omitempty"`
}

// Exit statuses.
const (
	ExitOK         = 0 // nothing needs action
	ExitNeedAction = 1 // something does
	ExitCannotLook = 2 // the RDS or the API server could not be listed: nothing is known
)

// ExitCode is ExitCannotLook when doctor could not look, ExitNeedAction when a finding needs
// action (one that a cleanup removed no longer does) or a removal failed, else ExitOK.
func (r *Report) ExitCode() int {
	if r.Error != "" {
		return ExitCannotLook
	}
	removed := map[Target]bool{}
	for _, c := range r.Cleanup {
		switch c.Result {
		case "removed":
			removed[c.Target] = true
		case "failed":
			return ExitNeedAction
		}
	}
	for _, f := range r.Findings {
		if f.NeedsAction && (f.Removable == nil || !removed[*f.Removable]) {
			return ExitNeedAction
		}
	}
	return ExitOK
}

// LookError is a listing that failed: doctor cannot tell what is out of line.
type LookError struct {
	What string // "RDS disks", "PersistentVolumes", ...
	Err  error
}

func (e *LookError) Error() string {
	return fmt.Sprintf("could not list %s: %v", e.What, e.Err)
}

func (e *LookError) Unwrap() error { return e.Err }

// IsLookError reports whether err is a failed listing.
func IsLookError(err error) bool {
	var le *LookError
	return errors.As(err, &le)
}
