package routeros

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// Error texts from docs/routeros.md and docs/simulator.md, with the kind each must map to.
var docErrorTexts = []struct {
	text string
	kind Kind
}{
	{"failure: no such item", KindNotFound},
	{"no such item", KindNotFound},
	{"not enough space", KindOutOfSpace},
	{"failure: not enough space", KindOutOfSpace},
	{"invalid parameter", KindInvalidArgument},
	{"failure: invalid parameter", KindInvalidArgument},
	{"file already exists", KindAlreadyExists},
	{"failure: file already exists", KindAlreadyExists},
	{"failure: slot already exists", KindAlreadyExists},
	{"bad command name", KindInternal},
	{"bad command name frobnicate (line 1 column 2)", KindInternal},
	{"syntax error (line 1 column 12)", KindInternal},
	{"expected end of command (line 1 column 40)", KindInternal},
}

func TestCheckOutput(t *testing.T) {
	const cmd = `/disk remove [find slot="pvc-a"]`
	tests := []struct {
		name           string
		stdout, stderr string
		exit           int
		wantErr        bool
		kind           Kind
		msg            string // substring the error message must hold
	}{
		{"clean output", sampleDiskDetail, "", 0, false, 0, ""},
		{"empty output", "", "", 0, false, 0, ""},
		{"flags header only", "Flags: X - disabled\r\n", "", 0, false, 0, ""},
		{"monitor-traffic output", sampleMonitorTraffic, "", 0, false, 0, ""},
		{"file print output", sampleFilePrint, "", 0, false, 0, ""},
		{"failure on stdout, exit 0", "failure: no such item\n", "", 0, true, KindNotFound, "failure: no such item"},
		{"failure on stderr, exit 0", "", "failure: no such item\n", 0, true, KindNotFound, "failure: no such item"},
		{"failure on stdout, exit 1", "failure: no such item\n", "", 1, true, KindNotFound, "failure: no such item"},
		{"failure on stderr, exit 1", "", "failure: no such item\n", 1, true, KindNotFound, "failure: no such item"},
		{"failure on stdout CRLF, exit 0", "\r\nfailure: not enough space\r\n", "", 0, true, KindOutOfSpace, "not enough space"},
		{"failure after normal output", "Flags: X\n 0   slot=a\n\nfailure: invalid parameter\n", "", 0, true, KindInvalidArgument, "invalid parameter"},
		{"failure indented", "   failure: no such item\n", "", 0, true, KindNotFound, "no such item"},
		{"failure upper case", "FAILURE: No Such Item\n", "", 0, true, KindNotFound, "FAILURE: No Such Item"},
		{"bad command name, exit 0", "bad command name frobnicate (line 1 column 2)\n", "", 0, true, KindInternal, "bad command name"},
		{"bad command name on stderr, exit 1", "", "bad command name frobnicate (line 1 column 2)\n", 1, true, KindInternal, "bad command name"},
		{"syntax error", "syntax error (line 1 column 12)\n", "", 0, true, KindInternal, "syntax error"},
		{"expected end of command", "expected end of command (line 1 column 40)\n", "", 0, true, KindInternal, "expected end of command"},
		{"input does not match", "input does not match any value of slot\n", "", 0, true, KindInternal, "input does not match"},
		{"bare file already exists, exit 0", "file already exists\n", "", 0, true, KindAlreadyExists, "file already exists"},
		{"bare file already exists on stderr, exit 0", "", "file already exists\n", 0, true, KindAlreadyExists, "file already exists"},
		{"non-zero exit without text", "", "", 1, true, KindInternal, "exit status 1"},
		{"non-zero exit with unrecognised stderr", "", "something odd\n", 2, true, KindInternal, "something odd"},
		{"non-zero exit with classifiable stdout", "slot already exists\n", "", 1, true, KindAlreadyExists, "slot already exists"},
		{"negative exit status", "", "", -1, true, KindInternal, "exit status -1"},
		{"unrelated stderr with exit 0 is not a failure", "", "Warning: something\n", 0, false, 0, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			err := CheckOutput(cmd, tc.stdout, tc.stderr, tc.exit)
			if (err != nil) != tc.wantErr {
				t.Fatalf("CheckOutput = %v, want error %v", err, tc.wantErr)
			}
			if err == nil {
				return
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("error %T is not *Error", err)
			}
			if e.Kind != tc.kind || KindOf(err) != tc.kind {
				t.Errorf("kind = %v, want %v (%v)", e.Kind, tc.kind, err)
			}
			if e.Command != cmd {
				t.Errorf("Command = %q, want %q", e.Command, cmd)
			}
			if !strings.Contains(err.Error(), tc.msg) {
				t.Errorf("error %q does not mention %q", err, tc.msg)
			}
		})
	}
}

func TestCheckOutputDocErrorTexts(t *testing.T) {
	for _, tc := range docErrorTexts {
		for _, stream := range []string{"stdout", "stderr"} {
			for _, exit := range []int{0, 1} {
				t.Run(fmt.Sprintf("%s/%s/exit%d", tc.text, stream, exit), func(t *testing.T) {
					stdout, stderr := tc.text+"\n", ""
					if stream == "stderr" {
						stdout, stderr = "", tc.text+"\r\n"
					}
					err := CheckOutput("/disk print", stdout, stderr, exit)
					if err == nil {
						t.Fatalf("no error for %q on %s with exit %d", tc.text, stream, exit)
					}
					if k := KindOf(err); k != tc.kind {
						t.Errorf("kind = %v, want %v (%v)", k, tc.kind, err)
					}
				})
			}
		}
	}
}

func TestCheckOutputLongMessageTruncated(t *testing.T) {
	long := strings.Repeat("é", 600) // 2 bytes each: the cut falls on a rune boundary only by luck
	err := CheckOutput("/x", "", "x"+long, 3)
	if err == nil {
		t.Fatal("no error")
	}
	var e *Error
	errors.As(err, &e)
	if len(e.Message) > 600 {
		t.Errorf("message not truncated: %d bytes", len(e.Message))
	}
	if !strings.HasPrefix(e.Message, "exit status 3: ") {
		t.Errorf("message %q", e.Message)
	}
	if !isValidUTF8(e.Message) {
		t.Errorf("truncated message is not valid UTF-8")
	}
}

func isValidUTF8(s string) bool { return strings.ToValidUTF8(s, "\uFFFD") == s }

func TestKind(t *testing.T) {
	names := map[Kind]string{
		KindInternal:         "internal",
		KindNotFound:         "not found",
		KindAlreadyExists:    "already exists",
		KindOutOfSpace:       "out of space",
		KindInvalidArgument:  "invalid argument",
		KindUnavailable:      "unavailable",
		KindDeadlineExceeded: "deadline exceeded",
		Kind(99):             "internal",
	}
	for k, want := range names {
		if got := k.String(); got != want {
			t.Errorf("Kind(%d).String() = %q, want %q", int(k), got, want)
		}
	}
}

func TestErrorFormatAndWrapping(t *testing.T) {
	tests := []struct {
		name string
		err  *Error
		want string
	}{
		{"kind only", &Error{Kind: KindNotFound}, "rds: not found"},
		{"with command", &Error{Kind: KindNotFound, Command: "/disk print"}, "rds: not found (/disk print)"},
		{"with message", &Error{Kind: KindOutOfSpace, Message: "not enough space"}, "rds: out of space: not enough space"},
		{"with cause", &Error{Kind: KindUnavailable, Command: "/x", Message: "ssh", Err: context.DeadlineExceeded}, "rds: unavailable (/x): ssh: context deadline exceeded"},
		{"Errorf", Errorf(KindInvalidArgument, "bad %s %d", "size", 3), "rds: invalid argument: bad size 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.err.Error(); got != tc.want {
				t.Errorf("Error() = %q, want %q", got, tc.want)
			}
		})
	}

	cause := errors.New("boom")
	e := &Error{Kind: KindUnavailable, Err: cause}
	if !errors.Is(e, cause) {
		t.Error("errors.Is does not see the cause")
	}
	wrapped := fmt.Errorf("create volume: %w", Errorf(KindNotFound, "gone"))
	if KindOf(wrapped) != KindNotFound || !IsNotFound(wrapped) {
		t.Error("kind lost through wrapping")
	}
	if KindOf(errors.New("plain")) != KindInternal || KindOf(nil) != KindInternal {
		t.Error("unclassified errors must be internal")
	}
}

func TestErrorPredicates(t *testing.T) {
	tests := []struct {
		err              error
		notFound, exists bool
	}{
		{nil, false, false},
		{errors.New("x"), false, false},
		{Errorf(KindNotFound, "x"), true, false},
		{fmt.Errorf("w: %w", Errorf(KindNotFound, "x")), true, false},
		{Errorf(KindAlreadyExists, "x"), false, true},
		{Errorf(KindUnavailable, "x"), false, false},
		{Errorf(KindDeadlineExceeded, "x"), false, false},
		{Errorf(KindOutOfSpace, "x"), false, false},
		{Errorf(KindInternal, "x"), false, false},
	}
	for i, tc := range tests {
		if IsNotFound(tc.err) != tc.notFound || IsAlreadyExists(tc.err) != tc.exists {
			t.Errorf("case %d (%v): IsNotFound=%v IsAlreadyExists=%v", i, tc.err, IsNotFound(tc.err), IsAlreadyExists(tc.err))
		}
	}
}

func TestClassify(t *testing.T) {
	tests := []struct {
		text string
		kind Kind
	}{
		{"failure: no such item", KindNotFound},
		{"no such file or directory", KindNotFound},
		{"disk not found", KindNotFound},
		{"failure: file already exists", KindAlreadyExists},
		{"failure: already have disk with such slot", KindAlreadyExists},
		{"failure: not enough space", KindOutOfSpace},
		{"no space left on device", KindOutOfSpace},
		{"disk full", KindOutOfSpace},
		{"failure: invalid parameter", KindInvalidArgument},
		{"invalid value for argument file-size", KindInvalidArgument},
		{"value out of range", KindInvalidArgument},
		{"bad command name", KindInternal},
		{"", KindInternal},
		{"something else", KindInternal},
	}
	for _, tc := range tests {
		if got := classify(tc.text); got != tc.kind {
			t.Errorf("classify(%q) = %v, want %v", tc.text, got, tc.kind)
		}
	}
}
