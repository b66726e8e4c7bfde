package rds

import "github.com/srvlab/rds-csi/pkg/routeros"

// The vocabulary of Backend, so that its callers name only this package: the RouterOS command
// lines and output under it are this package's business (doc.go). The types are aliases because
// the command builders and the output classifier of pkg/routeros make and take the same values.

// DiskSpec describes a file-backed disk to create, optionally exported over NVMe/TCP.
type DiskSpec = routeros.DiskSpec

// Error is a classified failure of a storage operation or of the connection that carried it.
type Error = routeros.Error

// Kind classifies a failure so that callers can keep its meaning (docs/design.md, principle 3).
type Kind = routeros.Kind

// The kinds of failure a storage operation can have.
const (
	KindInternal         = routeros.KindInternal
	KindNotFound         = routeros.KindNotFound
	KindAlreadyExists    = routeros.KindAlreadyExists
	KindOutOfSpace       = routeros.KindOutOfSpace
	KindInvalidArgument  = routeros.KindInvalidArgument
	KindUnavailable      = routeros.KindUnavailable
	KindDeadlineExceeded = routeros.KindDeadlineExceeded
	KindBusy             = routeros.KindBusy
)

// Sizes of a disk the RDS accepts, in bytes.
const (
	MinDiskSize = routeros.MinFileSize
	MaxDiskSize = routeros.MaxFileSize
)

// KindOf returns the kind of err; errors that were never classified are internal.
func KindOf(err error) Kind { return routeros.KindOf(err) }

// IsNotFound reports whether err means the object does not exist on the RDS.
func IsNotFound(err error) bool { return routeros.IsNotFound(err) }

// IsAlreadyExists reports whether err means the object already exists.
func IsAlreadyExists(err error) bool { return routeros.IsAlreadyExists(err) }
