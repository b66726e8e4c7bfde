package routeros

import (
	"errors"
	"fmt"
	"strings"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// Kind classifies a failure so that callers can keep its meaning (docs/design.md, principle 3).
type Kind int

// The kinds of failure a RouterOS command can have.
const (
	KindInternal Kind = iota
	KindNotFound
	KindAlreadyExists
	KindOutOfSpace
	KindInvalidArgument
	KindUnavailable
	KindDeadlineExceeded
	// KindBusy: the object is in use by another operation (a copy still writing a file, a disk
	// still using it); the same call succeeds later.
	KindBusy
)

func (k Kind) String() string {
	switch k {
	case KindNotFound:
		return "not found"
	case KindAlreadyExists:
		return "already exists"
	case KindOutOfSpace:
		return "out of space"
	case KindInvalidArgument:
		return "invalid argument"
	case KindUnavailable:
		return "unavailable"
	case KindDeadlineExceeded:
		return "deadline exceeded"
	case KindBusy:
		return "busy"
	default:
		return "internal"
	}
}

// Error is a classified failure of a command or of the connection that carried it.
type Error struct {
	Kind    Kind
	Command string // the command line, safe to log: it only holds validated values
	Message string
	Err     error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("rds: ")
	b.WriteString(e.Kind.String())
	if e.Command != "" {
		fmt.Fprintf(&b, " (%s)", e.Command)
	}
	if e.Message != "" {
		b.WriteString(": ")
		b.WriteString(e.Message)
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// Errorf returns a classified error.
func Errorf(kind Kind, format string, args ...any) *Error {
	return &Error{Kind: kind, Message: fmt.Sprintf(format, args...)}
}

// KindOf returns the kind of err; errors that were never classified are internal, except the
// refusals of pkg/volid, which are invalid arguments wherever they come from.
func KindOf(err error) Kind {
	var e *Error
	if errors.As(err, &e) {
		return e.Kind
	}
	if errors.Is(err, volid.ErrInvalid) {
		return KindInvalidArgument
	}
	return KindInternal
}

// IsNotFound reports whether err means the object does not exist on the RDS.
func IsNotFound(err error) bool { return err != nil && KindOf(err) == KindNotFound }

// IsAlreadyExists reports whether err means the object already exists.
func IsAlreadyExists(err error) bool { return err != nil && KindOf(err) == KindAlreadyExists }

// errorPatterns maps failure texts to kinds, most specific first. Matching is on lower-cased text.
var errorPatterns = []struct {
	substr string
	kind   Kind
}{
	{"no such item", KindNotFound},
	{"no such file", KindNotFound},
	{"not found", KindNotFound},
	{"already exists", KindAlreadyExists},
	{"already have", KindAlreadyExists},
	{"not enough space", KindOutOfSpace},
	{"no space", KindOutOfSpace},
	{"out of space", KindOutOfSpace},
	{"disk full", KindOutOfSpace},
	{"in use", KindBusy},
	{"invalid parameter", KindInvalidArgument},
	{"invalid value", KindInvalidArgument},
	{"value out of range", KindInvalidArgument},
	{"bad command name", KindInternal},
	{"syntax error", KindInternal},
	{"expected end of command", KindInternal},
}

// failurePrefixes are the line starts that mark a failed command, on stdout or stderr alike. Every
// error text docs/routeros.md lists as seen on hardware is here, also without its `failure:` prefix.
var failurePrefixes = []string{
	"failure:", "bad command name", "syntax error", "expected end of command", "invalid ",
	"input does not match", "no such item", "not enough space", "file already exists",
}

// maxMessage bounds the command output quoted in an error message.
const maxMessage = 512

// CheckOutput classifies the result of one command. RouterOS may report a failure with exit status
// 0 and its text on stdout, or the other way round, so both streams are searched whatever the exit
// status; a non-zero status without a recognised text is still a failure.
func CheckOutput(command, stdout, stderr string, exitStatus int) error {
	for _, stream := range []string{stdout, stderr} {
		for _, line := range splitLines(stream) {
			t := strings.ToLower(strings.TrimSpace(line))
			if t == "" {
				continue
			}
			for _, p := range failurePrefixes {
				if strings.HasPrefix(t, p) {
					return &Error{Kind: classify(t), Command: command, Message: strings.TrimSpace(line)}
				}
			}
		}
	}
	if exitStatus != 0 {
		msg := strings.TrimSpace(stderr)
		if msg == "" {
			msg = strings.TrimSpace(stdout)
		}
		if len(msg) > maxMessage {
			msg = strings.ToValidUTF8(msg[:maxMessage], "")
		}
		return &Error{Kind: classify(strings.ToLower(msg)), Command: command, Message: fmt.Sprintf("exit status %d: %s", exitStatus, msg)}
	}
	return nil
}

func classify(text string) Kind {
	for _, p := range errorPatterns {
		if strings.Contains(text, p.substr) {
			return p.kind
		}
	}
	return KindInternal
}
