package routeros

import (
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// Command is a RouterOS command line built only from validated values. The zero value is not a
// command; construct one with the functions below, which refuse any value outside the allow-lists.
type Command struct {
	line    string
	timeout time.Duration
}

func (c Command) String() string { return c.line }

// WithTimeout returns the command with its own deadline instead of the client's command deadline:
// a copy of a large disk runs for minutes on a real RDS.
func (c Command) WithTimeout(d time.Duration) Command {
	c.timeout = d
	return c
}

// Timeout is the command's own deadline, or 0 for the client's default.
func (c Command) Timeout() time.Duration { return c.timeout }

// safeToken is the last line of defence: every value that reaches a command line must match it,
// whatever validation its constructor did. It excludes spaces, quotes, ';', '$', '[', ']', '\',
// '`', '{', '}' and control characters.
var safeToken = regexp.MustCompile(`^[A-Za-z0-9._:/^-]+$`)

type builder struct {
	b   strings.Builder
	err error
}

func (b *builder) raw(s string) *builder {
	b.b.WriteString(s)
	return b
}

// kv appends ` key=value` with the value bare.
func (b *builder) kv(key, value string) *builder {
	b.check(value)
	b.b.WriteString(" " + key + "=" + value)
	return b
}

// quoted returns "value" after checking the value.
func (b *builder) quoted(value string) string {
	b.check(value)
	return `"` + value + `"`
}

func (b *builder) check(value string) {
	if b.err == nil && !safeToken.MatchString(value) {
		b.err = Errorf(KindInvalidArgument, "refusing to send value %q to the RDS", volid.Printable(value))
	}
}

func (b *builder) done() (Command, error) {
	if b.err != nil {
		return Command{}, b.err
	}
	return Command{line: b.b.String()}, nil
}

// FormatSize renders an exact byte count. Plain bytes are always exact; no unit rounding happens.
func FormatSize(size int64) string { return strconv.FormatInt(size, 10) }

// DiskSpec describes a file-backed disk to create, optionally exported over NVMe/TCP.
type DiskSpec struct {
	Slot     string
	FilePath string
	Size     int64 // bytes; for copies 0 means "same as the source"
	Export   bool
	Port     int
	NQN      string
}

func (s DiskSpec) validate(sizeRequired bool) error {
	err := invalidArgument(volid.ValidateSlot(s.Slot), volid.ValidatePath(s.FilePath))
	if err == nil && (sizeRequired || s.Size != 0) {
		err = ValidateSize(s.Size)
	}
	if err == nil && s.Export {
		err = invalidArgument(volid.ValidatePort(s.Port), volid.ValidateNQN(s.NQN))
	}
	return err
}

func (b *builder) exportArgs(s DiskSpec) {
	if s.Export {
		b.kv("nvme-tcp-export", "yes").kv("nvme-tcp-server-port", strconv.Itoa(s.Port)).kv("nvme-tcp-server-nqn", s.NQN)
	}
}

// DiskAdd creates a file-backed disk.
func DiskAdd(s DiskSpec) (Command, error) {
	if err := s.validate(true); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk add").kv("type", "file").kv("file-path", s.FilePath).kv("file-size", FormatSize(s.Size)).kv("slot", s.Slot)
	b.exportArgs(s)
	return b.done()
}

// DiskCopy creates a disk whose file is a copy of the source slot's file (snapshot, clone, restore).
func DiskCopy(source string, s DiskSpec) (Command, error) {
	if err := invalidArgument(volid.ValidateSlot(source), s.validate(false)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk add").kv("type", "file").raw(" copy-from=[find slot="+b.quoted(source)+"]").kv("file-path", s.FilePath).kv("slot", s.Slot)
	if s.Size != 0 {
		b.kv("file-size", FormatSize(s.Size))
	}
	b.exportArgs(s)
	return b.done()
}

// DiskResize sets the size of a disk's backing file.
func DiskResize(slot string, size int64) (Command, error) {
	if err := invalidArgument(volid.ValidateSlot(slot), ValidateSize(size)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk set [find slot="+b.quoted(slot)+"]").kv("file-size", FormatSize(size))
	return b.done()
}

// DiskRemove removes a disk entry (not its file).
func DiskRemove(slot string) (Command, error) {
	if err := invalidArgument(volid.ValidateSlot(slot)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk remove [find slot=" + b.quoted(slot) + "]")
	return b.done()
}

// DiskPrint prints one disk.
func DiskPrint(slot string) (Command, error) {
	if err := invalidArgument(volid.ValidateSlot(slot)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk print detail where slot=" + b.quoted(slot))
	return b.done()
}

// DiskPrintPrefix prints every disk whose slot starts with prefix (all disks for "").
func DiskPrintPrefix(prefix string) (Command, error) {
	if err := validatePrefix(prefix); err != nil {
		return Command{}, err
	}
	b := &builder{}
	// '.' is a regular expression metacharacter, so the prefix alphabet leaves it out.
	b.raw("/disk print detail where slot~" + b.quoted("^"+prefix))
	return b.done()
}

var slotPrefixRE = regexp.MustCompile(`^[a-z0-9_-]+$`)

// PoolPrint prints the pool partition entry that carries size and free space.
func PoolPrint(pool string) (Command, error) {
	if err := ValidatePoolName(pool); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/disk print detail where mount-point=" + b.quoted(pool))
	return b.done()
}

// FileName turns an absolute path into the name RouterOS gives the file (no leading slash).
func FileName(path string) string { return strings.TrimPrefix(path, "/") }

// FilePrint prints one file by its absolute path.
func FilePrint(path string) (Command, error) {
	if err := invalidArgument(volid.ValidatePath(path)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/file print detail where name=" + b.quoted(FileName(path)))
	return b.done()
}

// FileFindBySlot lists the files whose name contains "<slot>.img" anywhere in the file system
// ('.' matches any character here, so callers filter the answer exactly). It finds the backing
// file of a disk whose entry is gone when its directory is unknown.
func FileFindBySlot(slot string) (Command, error) {
	if err := invalidArgument(volid.ValidateSlot(slot)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/file print detail where name~" + b.quoted(slot+".img"))
	return b.done()
}

// validatePrefix checks a slot prefix; '.' is a regular expression metacharacter, so the prefix
// alphabet leaves it out.
func validatePrefix(prefix string) error {
	if len(prefix) > volid.MaxSlotLen {
		return Errorf(KindInvalidArgument, "slot prefix is %d characters, the limit is %d", len(prefix), volid.MaxSlotLen)
	}
	if prefix != "" && !slotPrefixRE.MatchString(prefix) {
		return Errorf(KindInvalidArgument, "slot prefix %q may only hold lower-case letters, digits, '_' and '-'", volid.Printable(prefix))
	}
	return nil
}

// FileFindByPrefix lists the files whose name contains prefix anywhere in the file system
// (callers filter the answer exactly). It finds unfinished copies, whose disk entry does not
// exist yet.
func FileFindByPrefix(prefix string) (Command, error) {
	if err := validatePrefix(prefix); err != nil {
		return Command{}, err
	}
	if prefix == "" {
		return Command{}, Errorf(KindInvalidArgument, "an empty prefix would list every file")
	}
	b := &builder{}
	b.raw("/file print detail where name~" + b.quoted(prefix))
	return b.done()
}

// FileRemove removes a file by its absolute path.
func FileRemove(path string) (Command, error) {
	if err := invalidArgument(volid.ValidatePath(path)); err != nil {
		return Command{}, err
	}
	b := &builder{}
	b.raw("/file remove [find name=" + b.quoted(FileName(path)) + "]")
	return b.done()
}
