package rdssim

import (
	"testing"
)

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, line, want string
	}{
		{"unknown menu", "/foo", "bad command name foo (line 1 column 2)"},
		{"unknown menu with args", "/foo bar=1", "bad command name foo (line 1 column 2)"},
		{"unknown command", "/disk frob", "bad command name frob (line 1 column 7)"},
		{"unknown command slash form", "/disk/frob", "bad command name frob (line 1 column 7)"},
		{"unknown system menu", "/system reboot", "bad command name reboot (line 1 column 9)"},
		{"unknown parameter", "/disk add foo=bar", "expected end of command (line 1 column 11)"},
		{"stray word", "/disk remove [find slot=a] extra", "expected end of command (line 1 column 28)"},
		{"semicolon", "/disk print detail where slot=a;b", "syntax error (line 1 column 32)"},
		{"second command", "/disk print; /system reboot", "syntax error (line 1 column 12)"},
		{"dollar", "/disk print detail where slot=$x", "syntax error (line 1 column 31)"},
		{"dollar in quotes", `/disk print detail where slot~"^a$"`, "syntax error (line 1 column 34)"},
		{"backtick", "/disk add slot=`id`", "syntax error (line 1 column 16)"},
		{"newline", "/disk print\n/system reboot", "syntax error (line 1 column 12)"},
		{"newline in quotes", "/disk add slot=\"a\nb\"", "syntax error (line 1 column 18)"},
		{"unterminated quote", `/disk add slot="abc`, "syntax error (line 1 column 20)"},
		{"glued value", `/disk add slot=a"b"`, "syntax error (line 1 column 17)"},
		{"pipe", "/disk add slot=a|b", "syntax error (line 1 column 17)"},
		{"parenthesis", "/disk print where slot~(a)", "syntax error (line 1 column 24)"},
		{"find value not allowed", "/disk add slot=[find]", "syntax error (line 1 column 16)"},
		{"bad find", "/disk remove [slot=a]", "syntax error (line 1 column 15)"},
		{"unclosed find", "/disk remove [find slot=a", "syntax error (line 1 column 26)"},
		{"missing target", "/disk remove", "syntax error (line 1 column 13)"},
		{"bad condition", "/disk print where slot", "syntax error (line 1 column 19)"},
		{"bad regex", `/disk print where slot~"("`, "failure: invalid parameter"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parse(tc.line)
			if err == nil || err.Error() != tc.want {
				t.Fatalf("parse(%q) = %v, want %q", tc.line, err, tc.want)
			}
		})
	}
}

func TestParseCommands(t *testing.T) {
	for _, tc := range []struct {
		name, line string
		kind       cmdKind
		check      func(t *testing.T, c *command)
	}{
		{"empty", "", cmdNone, nil},
		{"menu only", "/disk", cmdNone, nil},
		{"add", addCmd("pvc-1", "/storage-pool/k8s/pvc-1.img", "10G"), cmdDiskAdd, func(t *testing.T, c *command) {
			if c.args["slot"].val != "pvc-1" || c.args["file-size"].val != "10G" ||
				c.args["nvme-tcp-server-nqn"].val != "nqn.2000-02.com.mikrotik:pvc-1" {
				t.Fatalf("args %+v", c.args)
			}
		}},
		{"add slash form", "/disk/add type=file slot=\"a b\"", cmdDiskAdd, func(t *testing.T, c *command) {
			if c.args["slot"].val != "a b" {
				t.Fatalf("slot %q", c.args["slot"].val)
			}
		}},
		{"relative path", "disk add type=file", cmdDiskAdd, nil},
		{"copy-from", "/disk add type=file copy-from=[find slot=src] file-path=/p/x.img slot=x", cmdDiskAdd,
			func(t *testing.T, c *command) {
				s := c.args["copy-from"].sel
				if s == nil || !s.find || len(s.conds) != 1 || s.conds[0].val != "src" {
					t.Fatalf("copy-from %+v", c.args["copy-from"])
				}
			}},
		{"set", "/disk set [find slot=pvc-1] file-size=20G", cmdDiskSet, func(t *testing.T, c *command) {
			if c.target == nil || c.args["file-size"].val != "20G" {
				t.Fatalf("%+v", c)
			}
		}},
		{"remove find where", "/disk remove [find where slot=a type=file]", cmdDiskRemove, func(t *testing.T, c *command) {
			if len(c.target.conds) != 2 {
				t.Fatalf("conds %+v", c.target.conds)
			}
		}},
		{"remove empty find", "/disk remove [find]", cmdDiskRemove, nil},
		{"print regex", `/disk print detail where slot~"^pvc-[0-9a-f]+\.img" and type=file`, cmdDiskPrint,
			func(t *testing.T, c *command) {
				if len(c.where) != 2 || !c.where[0].re.MatchString("pvc-12ab.img") || c.where[0].re.MatchString("pvc-12abximg") {
					t.Fatalf("where %+v", c.where)
				}
			}},
		{"escaped dollar", `/disk print where slot~"a\$"`, cmdDiskPrint, func(t *testing.T, c *command) {
			if c.where[0].val != "a$" {
				t.Fatalf("val %q", c.where[0].val)
			}
		}},
		{"file remove", `/file remove [find name="storage-pool/k8s/x.img"]`, cmdFileRemove, nil},
		{"file print", `/file print detail where name~"k8s"`, cmdFilePrint, nil},
		{"monitor", "/disk monitor-traffic pvc-1 once", cmdDiskMonitor, func(t *testing.T, c *command) {
			if c.target.name != "pvc-1" || !c.flags["once"] {
				t.Fatalf("%+v", c)
			}
		}},
		{"resource", "/system resource print", cmdResourcePrint, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c, err := parse(tc.line)
			if err != nil {
				t.Fatalf("parse(%q): %v", tc.line, err)
			}
			if c.kind != tc.kind {
				t.Fatalf("kind %d, want %d", c.kind, tc.kind)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
		})
	}
}
