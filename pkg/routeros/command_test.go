package routeros

import (
	"math"
	"regexp"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/pkg/volid"
)

const (
	goodSlot = "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f"
	goodPath = "/storage-pool/kubernetes-volumes/" + goodSlot + ".img"
	goodNQN  = volid.NQNPrefix + goodSlot
	tib15    = int64(1649267441664) // 1.5 TiB
)

func goodSpec() DiskSpec {
	return DiskSpec{Slot: goodSlot, FilePath: goodPath, Size: 10 << 30, Export: true, Port: 4420, NQN: goodNQN}
}

func TestCommandLines(t *testing.T) {
	noExport := goodSpec()
	noExport.Export, noExport.Port, noExport.NQN = false, 0, ""
	big := goodSpec()
	big.Size = tib15
	odd := goodSpec()
	odd.Size = MinFileSize + 1
	maxSize := noExport
	maxSize.Size = MaxFileSize
	snap := DiskSpec{Slot: "snap-1", FilePath: "/storage-pool/k8s/snap-1.img"}
	clone := goodSpec()
	clone.Size = tib15

	build := func(c Command, err error) func() (Command, error) {
		return func() (Command, error) { return c, err }
	}
	tests := []struct {
		name  string
		build func() (Command, error)
		want  string
	}{
		{"DiskAdd exported", build(DiskAdd(goodSpec())),
			"/disk add type=file file-path=" + goodPath + " file-size=10737418240 slot=" + goodSlot +
				" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=" + goodNQN},
		{"DiskAdd not exported", build(DiskAdd(noExport)),
			"/disk add type=file file-path=" + goodPath + " file-size=10737418240 slot=" + goodSlot},
		{"DiskAdd 1.5 TiB exact", build(DiskAdd(big)),
			"/disk add type=file file-path=" + goodPath + " file-size=1649267441664 slot=" + goodSlot +
				" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=" + goodNQN},
		{"DiskAdd odd byte count", build(DiskAdd(odd)),
			"/disk add type=file file-path=" + goodPath + " file-size=1048577 slot=" + goodSlot +
				" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=" + goodNQN},
		{"DiskAdd max size", build(DiskAdd(maxSize)),
			"/disk add type=file file-path=" + goodPath + " file-size=1125899906842624 slot=" + goodSlot},
		{"DiskCopy same size, not exported", build(DiskCopy(goodSlot, snap)),
			`/disk add type=file copy-from=[find slot="` + goodSlot + `"] file-path=/storage-pool/k8s/snap-1.img slot=snap-1`},
		{"DiskCopy with size and export", build(DiskCopy("snap-1", clone)),
			`/disk add type=file copy-from=[find slot="snap-1"] file-path=` + goodPath + ` slot=` + goodSlot +
				` file-size=1649267441664 nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=` + goodNQN},
		{"DiskResize 1.5 TiB exact", build(DiskResize(goodSlot, tib15)),
			`/disk set [find slot="` + goodSlot + `"] file-size=1649267441664`},
		{"DiskRemove", build(DiskRemove(goodSlot)),
			`/disk remove [find slot="` + goodSlot + `"]`},
		{"DiskPrint", build(DiskPrint(goodSlot)),
			`/disk print detail where slot="` + goodSlot + `"`},
		{"DiskPrintPrefix", build(DiskPrintPrefix("pvc-")),
			`/disk print detail where slot~"^pvc-"`},
		{"DiskPrintPrefix empty lists all", build(DiskPrintPrefix("")),
			`/disk print detail where slot~"^"`},
		{"DiskPrintPrefix underscore", build(DiskPrintPrefix("snap_")),
			`/disk print detail where slot~"^snap_"`},
		{"PoolPrint", build(PoolPrint("storage-pool")),
			`/disk print detail where mount-point="storage-pool"`},
		{"FilePrint", build(FilePrint(goodPath)),
			`/file print detail where name="storage-pool/kubernetes-volumes/` + goodSlot + `.img"`},
		{"FileFindBySlot", build(FileFindBySlot(goodSlot)),
			`/file print detail where name~"` + goodSlot + `.img"`},
		{"FileRemove", build(FileRemove(goodPath)),
			`/file remove [find name="storage-pool/kubernetes-volumes/` + goodSlot + `.img"]`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c, err := tc.build()
			if err != nil {
				t.Fatalf("unexpected error: %v", err)
			}
			if c.String() != tc.want {
				t.Errorf("command\n got %s\nwant %s", c, tc.want)
			}
			assertSafeLine(t, c.String())
		})
	}
}

var (
	// the builder's own syntax around values: `[find slot="v"]` and a trailing `where key="v"`
	builderFind   = regexp.MustCompile(`\[find (slot|name)="([^"]*)"\]`)
	builderWhere  = regexp.MustCompile(`(where [a-z-]+[=~])"([^"]*)"$`)
	safeLineToken = regexp.MustCompile(`^[A-Za-z0-9._:/^=~-]+$`)
)

// stripBuilderSyntax removes the quotes and brackets the builder itself writes around values.
func stripBuilderSyntax(line string) string {
	line = builderFind.ReplaceAllString(line, "${1}=${2}")
	return builderWhere.ReplaceAllString(line, "${1}${2}")
}

// assertSafeLine checks a built command line: once the builder's own quoting syntax is removed, no
// character that RouterOS would interpret (or that breaks a value apart) is left.
func assertSafeLine(t *testing.T, line string) {
	t.Helper()
	stripped := stripBuilderSyntax(line)
	if strings.ContainsAny(stripped, ";$[]\"'`\\{}\n\r\t") {
		t.Errorf("command %q holds a forbidden character outside the builder syntax (%q)", line, stripped)
	}
	for _, tok := range strings.Split(stripped, " ") {
		if tok == "" || !safeLineToken.MatchString(tok) {
			t.Errorf("command %q has an unsafe token %q", line, tok)
		}
	}
}

func TestSizesNeverTruncated(t *testing.T) {
	for _, size := range []int64{MinFileSize, MinFileSize + 1, 1 << 30, 3 << 29, tib15, tib15 + 1, 7949127950336, MaxFileSize - 1, MaxFileSize} {
		s := goodSpec()
		s.Size = size
		add, err := DiskAdd(s)
		if err != nil {
			t.Fatalf("DiskAdd(%d): %v", size, err)
		}
		res, err := DiskResize(goodSlot, size)
		if err != nil {
			t.Fatalf("DiskResize(%d): %v", size, err)
		}
		cp, err := DiskCopy("snap-1", s)
		if err != nil {
			t.Fatalf("DiskCopy(%d): %v", size, err)
		}
		want := " file-size=" + FormatSize(size)
		for _, c := range []Command{add, res, cp} {
			if !strings.Contains(c.String()+" ", want+" ") {
				t.Errorf("%q does not carry the exact size %d", c, size)
			}
			// the size must parse back to the very same byte count
			got, err := ParseHumanSize(sizeOf(c.String()))
			if err != nil || got != size {
				t.Errorf("%q: size parses back as %d, %v", c, got, err)
			}
		}
	}
	if FormatSize(tib15) != "1649267441664" {
		t.Errorf("FormatSize(1.5 TiB) = %q", FormatSize(tib15))
	}
}

func sizeOf(line string) string {
	for _, tok := range strings.Fields(line) {
		if v, ok := strings.CutPrefix(tok, "file-size="); ok {
			return v
		}
	}
	return ""
}

// bad value fragments: each must be refused wherever it appears in a name.
var badFragments = []struct{ name, s string }{
	{"semicolon", ";"},
	{"space", " "},
	{"open bracket", "["},
	{"close bracket", "]"},
	{"double quote", `"`},
	{"single quote", "'"},
	{"dollar", "$"},
	{"backtick", "`"},
	{"backslash", `\`},
	{"newline", "\n"},
	{"carriage return", "\r"},
	{"tab", "\t"},
	{"NUL", "\x00"},
	{"open brace", "{"},
	{"close brace", "}"},
	{"equals", "="},
	{"tilde", "~"},
	{"hash", "#"},
	{"command substitution", "$(reboot)"},
	{"injected command", `"];/system reset-configuration;[find slot="`},
	{"invalid UTF-8", "\xff"},
	{"unicode letter", "é"},
	{"fullwidth semicolon", "；"},
}

// position puts a value into one argument of one constructor, the other arguments being good.
type position struct {
	name  string
	build func(v string) (Command, error)
	good  string // a value this position accepts
}

var positions = []position{
	{"DiskAdd slot", func(v string) (Command, error) { s := goodSpec(); s.Slot = v; return DiskAdd(s) }, goodSlot},
	{"DiskAdd path", func(v string) (Command, error) { s := goodSpec(); s.FilePath = v; return DiskAdd(s) }, goodPath},
	{"DiskAdd nqn", func(v string) (Command, error) { s := goodSpec(); s.NQN = v; return DiskAdd(s) }, goodNQN},
	{"DiskCopy source", func(v string) (Command, error) { return DiskCopy(v, goodSpec()) }, "snap-1"},
	{"DiskCopy slot", func(v string) (Command, error) { s := goodSpec(); s.Slot = v; return DiskCopy("snap-1", s) }, goodSlot},
	{"DiskCopy path", func(v string) (Command, error) { s := goodSpec(); s.FilePath = v; return DiskCopy("snap-1", s) }, goodPath},
	{"DiskCopy nqn", func(v string) (Command, error) { s := goodSpec(); s.NQN = v; return DiskCopy("snap-1", s) }, goodNQN},
	{"DiskResize slot", func(v string) (Command, error) { return DiskResize(v, 1<<30) }, goodSlot},
	{"DiskRemove slot", DiskRemove, goodSlot},
	{"DiskPrint slot", DiskPrint, goodSlot},
	{"DiskPrintPrefix prefix", DiskPrintPrefix, "pvc-"},
	{"PoolPrint pool", PoolPrint, "storage-pool"},
	{"FilePrint path", FilePrint, goodPath},
	{"FileRemove path", FileRemove, goodPath},
}

func assertRefused(t *testing.T, c Command, err error) {
	t.Helper()
	if err == nil {
		t.Fatalf("accepted, built %q", c)
	}
	if k := KindOf(err); k != KindInvalidArgument {
		t.Errorf("kind = %v, want invalid argument (%v)", k, err)
	}
	if c != (Command{}) || c.String() != "" {
		t.Errorf("a command was returned with the error: %q", c)
	}
}

func TestConstructorsRefuseBadCharacters(t *testing.T) {
	for _, p := range positions {
		if _, err := p.build(p.good); err != nil {
			t.Fatalf("%s: good value %q refused: %v", p.name, p.good, err)
		}
		for _, f := range badFragments {
			for _, v := range []string{f.s, f.s + p.good, p.good + f.s, insertMiddle(p.good, f.s)} {
				t.Run(p.name+"/"+f.name, func(t *testing.T) {
					c, err := p.build(v)
					assertRefused(t, c, err)
				})
			}
		}
	}
}

func insertMiddle(s, frag string) string { return s[:len(s)/2] + frag + s[len(s)/2:] }

func TestConstructorsRefuseBadNames(t *testing.T) {
	long := strings.Repeat("a", 300)
	cases := map[string][]string{
		"DiskAdd slot":           {"", long, "PVC-A", "pvc-A", "-pvc", "pvc-", ".pvc", "pvc.", "_pvc", strings.Repeat("a", volid.MaxSlotLen+1)},
		"DiskCopy source":        {"", long, "Snap-1", "snap-1-"},
		"DiskCopy slot":          {"", long, "PVC"},
		"DiskResize slot":        {"", long, "Pvc-a"},
		"DiskRemove slot":        {"", long, "PVC-A"},
		"DiskPrint slot":         {"", long, "pvc-A"},
		"DiskPrintPrefix prefix": {long, "PVC-", "pvc.", ".*", "^pvc", "pvc|snap", "pvc(", strings.Repeat("a", volid.MaxSlotLen+1)},
		"PoolPrint pool":         {"", long, "-pool", ".pool", strings.Repeat("p", 65)},
		"DiskAdd nqn":            {"", long, "NQN.2000-02.com.mikrotik:pvc-a", "nqn.2000-02.com.mikrotik:PVC-A", "nqn.2000-02.com.mikrotik:", "iqn.2000-02.com.mikrotik:pvc-a", "nqn.20-02.com.mikrotik:pvc-a", volid.NQNPrefix + strings.Repeat("a", volid.MaxNQNLen-len(volid.NQNPrefix)+1)},
	}
	badPaths := []string{
		"", "/", "//", long, "/" + strings.Repeat("a", volid.MaxPathLen), "storage-pool/a.img", "./a.img",
		"/storage-pool/../etc/passwd", "/storage-pool/..", "/../a.img", "/..", "/storage-pool/./a.img",
		"/storage-pool/.", "/storage-pool//a.img", "/storage-pool/a.img/", "/storage-pool/a b.img",
		"/storage-pool/a:b.img", "/storage-pool/a^b.img",
	}
	for _, p := range []string{"DiskAdd path", "DiskCopy path", "FilePrint path", "FileRemove path"} {
		cases[p] = badPaths
	}
	for _, p := range positions {
		for _, v := range cases[p.name] {
			t.Run(p.name+"/"+volid.Printable(v), func(t *testing.T) {
				c, err := p.build(v)
				assertRefused(t, c, err)
			})
		}
	}
}

func TestConstructorsAcceptEdgeNames(t *testing.T) {
	tests := []struct {
		pos string
		v   string
	}{
		{"DiskAdd slot", "a"},
		{"DiskAdd slot", "0"},
		{"DiskAdd slot", "snap-1.2_3"},
		{"DiskAdd slot", strings.Repeat("a", volid.MaxSlotLen)},
		{"DiskPrint slot", strings.Repeat("9", volid.MaxSlotLen)},
		{"DiskPrintPrefix prefix", strings.Repeat("a", volid.MaxSlotLen)},
		{"DiskPrintPrefix prefix", "-"},
		{"PoolPrint pool", "Storage_Pool.2"},
		{"PoolPrint pool", strings.Repeat("p", 64)},
		{"DiskAdd nqn", volid.NQNPrefix + strings.Repeat("a", volid.MaxNQNLen-len(volid.NQNPrefix))},
		{"DiskAdd nqn", "nqn.2014-08.org.nvmexpress:uuid:1b4e28ba-2fa1-11d2-883f-0016d3cca427"},
		{"FilePrint path", "/" + strings.Repeat("a", volid.MaxPathLen-1)},
		{"FilePrint path", "/storage-pool/..hidden.img"},
		{"FilePrint path", "/storage-pool/a..b.img"},
		{"FilePrint path", "/Storage-Pool/K8s/A_b-c.IMG"},
		{"FileRemove path", "/a"},
	}
	byName := map[string]position{}
	for _, p := range positions {
		byName[p.name] = p
	}
	for _, tc := range tests {
		t.Run(tc.pos+"/"+volid.Printable(tc.v), func(t *testing.T) {
			c, err := byName[tc.pos].build(tc.v)
			if err != nil {
				t.Fatalf("refused: %v", err)
			}
			if !strings.Contains(c.String(), strings.TrimPrefix(tc.v, "/")) {
				t.Errorf("%q does not hold %q verbatim", c, tc.v)
			}
			assertSafeLine(t, c.String())
		})
	}
}

func TestSizeValidation(t *testing.T) {
	bad := []int64{0, -1, -(1 << 30), math.MinInt64, 1, MinFileSize - 1, MaxFileSize + 1, math.MaxInt64}
	for _, size := range bad {
		t.Run("DiskAdd/"+FormatSize(size), func(t *testing.T) {
			s := goodSpec()
			s.Size = size
			c, err := DiskAdd(s)
			assertRefused(t, c, err)
		})
		t.Run("DiskResize/"+FormatSize(size), func(t *testing.T) {
			c, err := DiskResize(goodSlot, size)
			assertRefused(t, c, err)
		})
		if size != 0 { // 0 means "same size as the source" for a copy
			t.Run("DiskCopy/"+FormatSize(size), func(t *testing.T) {
				s := goodSpec()
				s.Size = size
				c, err := DiskCopy("snap-1", s)
				assertRefused(t, c, err)
			})
		}
	}
	for _, size := range []int64{MinFileSize, MaxFileSize, tib15} {
		if err := ValidateSize(size); err != nil {
			t.Errorf("ValidateSize(%d) = %v", size, err)
		}
	}
	c, err := DiskCopy("snap-1", DiskSpec{Slot: "pvc-b", FilePath: "/p/pvc-b.img"})
	if err != nil || strings.Contains(c.String(), "file-size") {
		t.Errorf("DiskCopy with size 0 = %q, %v; want no file-size", c, err)
	}
}

func TestPortValidation(t *testing.T) {
	for _, port := range []int{0, -1, 65536, 70000, math.MaxInt, math.MinInt} {
		t.Run("DiskAdd/"+itoa(port), func(t *testing.T) {
			s := goodSpec()
			s.Port = port
			c, err := DiskAdd(s)
			assertRefused(t, c, err)
		})
		t.Run("DiskCopy/"+itoa(port), func(t *testing.T) {
			s := goodSpec()
			s.Port = port
			c, err := DiskCopy("snap-1", s)
			assertRefused(t, c, err)
		})
	}
	for _, port := range []int{1, 4420, 65535} {
		s := goodSpec()
		s.Port = port
		c, err := DiskAdd(s)
		if err != nil || !strings.Contains(c.String(), " nvme-tcp-server-port="+itoa(port)+" ") {
			t.Errorf("port %d: %q, %v", port, c, err)
		}
	}
	// without export the port and NQN are not sent, so they are not checked
	s := goodSpec()
	s.Export, s.Port, s.NQN = false, 70000, "bad nqn;"
	c, err := DiskAdd(s)
	if err != nil || strings.Contains(c.String(), "nvme") {
		t.Errorf("unexported disk: %q, %v", c, err)
	}
}

func TestValidators(t *testing.T) {
	long := strings.Repeat("a", 300)
	tests := []struct {
		name string
		err  error
		ok   bool
	}{
		{"slot good", volid.ValidateSlot(goodSlot), true},
		{"slot 300", volid.ValidateSlot(long), false},
		{"slot upper", volid.ValidateSlot("PVC"), false},
		{"path good", volid.ValidatePath(goodPath), true},
		{"path 300", volid.ValidatePath("/" + long), false},
		{"path dotdot", volid.ValidatePath("/a/../b"), false},
		{"nqn good", volid.ValidateNQN(goodNQN), true},
		{"nqn 300", volid.ValidateNQN(volid.NQNPrefix + long), false},
		{"size good", ValidateSize(1 << 30), true},
		{"size 0", ValidateSize(0), false},
		{"port good", volid.ValidatePort(4420), true},
		{"port 70000", volid.ValidatePort(70000), false},
		{"pool good", ValidatePoolName("storage-pool"), true},
		{"pool 300", ValidatePoolName(long), false},
		{"pool empty", ValidatePoolName(""), false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if (tc.err == nil) != tc.ok {
				t.Fatalf("err = %v, want ok=%v", tc.err, tc.ok)
			}
			if tc.err != nil && KindOf(tc.err) != KindInvalidArgument {
				t.Errorf("kind = %v", KindOf(tc.err))
			}
		})
	}
	if volid.NQN(goodSlot) != goodNQN || volid.ValidateNQN(volid.NQN(strings.Repeat("a", volid.MaxSlotLen))) != nil {
		t.Error("volid.NQN does not give a valid NQN for a valid slot")
	}
	if FileName(goodPath) != strings.TrimPrefix(goodPath, "/") {
		t.Errorf("FileName(%q) = %q", goodPath, FileName(goodPath))
	}
}

func TestPrintableBoundsMessages(t *testing.T) {
	err := volid.ValidateSlot(strings.Repeat("\xff", 500))
	if err == nil || len(err.Error()) > 400 || !isValidUTF8(err.Error()) {
		t.Errorf("error message not bounded or not valid UTF-8: %q", err)
	}
}

func TestBuilderRefusesUnsafeValueAsLastLine(t *testing.T) {
	// The builder checks every value itself, even if a constructor's validation let it through.
	b := &builder{}
	b.raw("/disk print detail where slot=" + b.quoted(`a"];/system reboot;[`))
	c, err := b.done()
	assertRefused(t, c, err)
	b = &builder{}
	b.raw("/x").kv("k", "a b")
	c, err = b.done()
	assertRefused(t, c, err)
	b = &builder{}
	b.raw("/x").kv("k", "")
	c, err = b.done()
	assertRefused(t, c, err)
}
