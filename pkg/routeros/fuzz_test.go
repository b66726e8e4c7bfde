package routeros

import (
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// ---------------------------------------------------------------------------------------------
// Seed corpus. Every output sample of docs/routeros.md is committed under testdata/fuzz/<Fuzz>/
// as a `go test fuzz v1` file; TestSeedCorpus checks that the files are there and current.
// Regenerate them with: ROUTEROS_WRITE_CORPUS=1 go test -run TestSeedCorpus ./pkg/routeros/
// ---------------------------------------------------------------------------------------------

// Wrapped variants of the samples, as RouterOS prints them on a narrow terminal.
const (
	sampleFlagsOnly    = "Flags: X - disabled; B - blocked\r\n"
	sampleFlagsWrapped = "Flags: X - DISABLED; B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; R - RAID-MEMBER;\n" +
		"       E - EMPTY; N - NVME-TCP-EXPORT\n"
	sampleWrappedDisk = "Flags: ...\n" +
		" 0   type=file slot=\"pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f\"\n" +
		"     model=\"/storage-pool/kubernetes-volumes/pvc-ccdecfad-a8bf-572e-912\n" +
		"     0-464c4d99f12f.img\" size=53 687\n" +
		"     091 20\n" +
		"     0 nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-ccdecfad-a8\n" +
		"     bf-572e-9120-464c4d99f12f\"\n" +
		"     file-path=/storage-pool/kubernetes-volumes/pvc-ccdecfad-a8bf-57\n" +
		"     2e-9120-464c4d99f12f.im\n" +
		"     g file-size=50.0GiB\n"
	sampleFlagged = " 0   type=file slot=a\n\n 1 X  type=file slot=b\n     file-size=1.0GiB\n\n" +
		"10 XB ;;; by hand\n     type=file slot=c\n"
	sampleFileNovDate  = " 0   name=storage-pool/k8s type=directory\n     last-modified=nov/11/2025 16:47:07\n"
	sampleInjectionTry = "\"];/system reset-configuration;[find slot=\""
)

type corpusEntry struct {
	name string
	args []any
}

func samplesForParser() []corpusEntry {
	return []corpusEntry{
		{"disk-detail", []any{sampleDiskDetail}},
		{"disk-detail-crlf", []any{crlf(sampleDiskDetail)}},
		{"disk-detail-wrapped", []any{sampleWrappedDisk}},
		{"disk-two-digit-indices", []any{manyItems(12)}},
		{"disk-flagged", []any{sampleFlagged}},
		{"flags-only", []any{sampleFlagsOnly}},
		{"flags-wrapped", []any{sampleFlagsWrapped}},
		{"pool-line", []any{samplePoolLine}},
		{"pool-line-indexed", []any{"Flags: ...\r\n 0   " + samplePoolLine + "\r\n"}},
		{"file-print", []any{sampleFilePrint}},
		{"file-print-nov-date", []any{sampleFileNovDate}},
		{"monitor-traffic", []any{sampleMonitorTraffic}},
		{"error-texts", []any{errorTextsBlob()}},
	}
}

func errorTextsBlob() string {
	var b strings.Builder
	for _, e := range docErrorTexts {
		b.WriteString(e.text + "\n")
	}
	return b.String()
}

func seedCorpus() map[string][]corpusEntry {
	var check []corpusEntry
	for i, e := range docErrorTexts {
		check = append(check,
			corpusEntry{fmt.Sprintf("error-%02d-stdout-exit0", i), []any{"/disk print", e.text + "\n", "", 0}},
			corpusEntry{fmt.Sprintf("error-%02d-stderr-exit1", i), []any{"/disk print", "", e.text + "\r\n", 1}},
		)
	}
	for _, s := range samplesForParser() {
		check = append(check, corpusEntry{"output-" + s.name, []any{"/disk print detail", s.args[0], "", 0}})
	}
	check = append(check, corpusEntry{"exit1-no-text", []any{"/disk print", "", "", 1}})

	builders := []corpusEntry{
		{"slot", []any{goodSlot, tib15, 4420}},
		{"path", []any{goodPath, int64(1 << 30), 4420}},
		{"nqn", []any{goodNQN, int64(10 << 30), 4420}},
		{"pool", []any{"storage-pool", MaxFileSize, 65535}},
		{"prefix", []any{"pvc-", MinFileSize, 1}},
		{"injection", []any{sampleInjectionTry, int64(0), 0}},
		{"dotdot", []any{"/storage-pool/../etc/passwd", int64(-1), 70000}},
		{"upper", []any{"PVC-A", MaxFileSize + 1, -1}},
		{"long", []any{strings.Repeat("a", 300), int64(math.MaxInt64), math.MaxInt}},
		{"newline", []any{"pvc-a\nb", int64(math.MinInt64), 0}},
	}
	for _, s := range samplesForParser() {
		builders = append(builders, corpusEntry{"sample-" + s.name, []any{s.args[0], int64(50 << 30), 4420}})
	}

	return map[string][]corpusEntry{
		"FuzzParsePrintDetail": samplesForParser(),
		"FuzzCheckOutput":      check,
		"FuzzCommandBuilders":  builders,
		"FuzzParseWrapped": {
			{"narrow", []any{uint64(1), uint8(24)}},
			{"wide", []any{uint64(2), uint8(200)}},
			{"eighty", []any{uint64(3), uint8(80)}},
		},
	}
}

// marshalCorpus writes values in Go's fuzz corpus file format.
func marshalCorpus(args []any) string {
	var b strings.Builder
	b.WriteString("go test fuzz v1\n")
	for _, a := range args {
		switch v := a.(type) {
		case string:
			fmt.Fprintf(&b, "string(%s)\n", strconv.Quote(v))
		case int:
			fmt.Fprintf(&b, "int(%d)\n", v)
		case int64:
			fmt.Fprintf(&b, "int64(%d)\n", v)
		case uint64:
			fmt.Fprintf(&b, "uint64(%d)\n", v)
		case uint8:
			fmt.Fprintf(&b, "byte(%q)\n", v)
		default:
			panic(fmt.Sprintf("unsupported corpus type %T", a))
		}
	}
	return b.String()
}

func TestSeedCorpus(t *testing.T) {
	write := os.Getenv("ROUTEROS_WRITE_CORPUS") != ""
	for fuzzer, entries := range seedCorpus() {
		for _, e := range entries {
			path := filepath.Join("testdata", "fuzz", fuzzer, "seed-"+e.name)
			want := marshalCorpus(e.args)
			if write {
				if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(path, []byte(want), 0o644); err != nil {
					t.Fatal(err)
				}
				continue
			}
			got, err := os.ReadFile(path)
			if err != nil {
				t.Errorf("seed corpus file missing (regenerate with ROUTEROS_WRITE_CORPUS=1): %v", err)
				continue
			}
			if string(got) != want {
				t.Errorf("%s is stale (regenerate with ROUTEROS_WRITE_CORPUS=1)", path)
			}
		}
	}
}

// ---------------------------------------------------------------------------------------------
// FuzzParsePrintDetail
// ---------------------------------------------------------------------------------------------

var fieldKeyRE = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)

func FuzzParsePrintDetail(f *testing.F) {
	for _, s := range samplesForParser() {
		f.Add(s.args[0].(string))
	}
	f.Fuzz(func(t *testing.T, s string) {
		items := ParsePrintDetail(s)
		if len(items) > strings.Count(s, "\n")+strings.Count(s, "\r")+1 {
			t.Fatalf("%d items from %d lines", len(items), len(splitLines(s)))
		}
		for _, it := range items {
			if it.Index < -1 {
				t.Fatalf("index %d", it.Index)
			}
			if len(it.Order) != len(it.Fields) {
				t.Fatalf("Order %q does not match Fields %q", it.Order, it.Fields)
			}
			for _, k := range it.Order {
				if _, ok := it.Fields[k]; !ok || !fieldKeyRE.MatchString(k) {
					t.Fatalf("bad key %q in %q", k, it.Order)
				}
			}
		}
		if !reflect.DeepEqual(items, ParsePrintDetail(s)) {
			t.Fatal("parser is not deterministic")
		}
		if !strings.Contains(s, "\r") {
			// line endings and trailing blanks never change the result
			if got := ParsePrintDetail(crlf(s)); !reflect.DeepEqual(items, got) {
				t.Fatalf("CRLF changes the result:\n LF %+v\nCRLF %+v", items, got)
			}
			if got := ParsePrintDetail(strings.ReplaceAll(s, "\n", " \t\n")); !reflect.DeepEqual(items, got) {
				t.Fatalf("trailing blanks change the result:\n %+v\n %+v", items, got)
			}
		}
	})
}

// ---------------------------------------------------------------------------------------------
// FuzzCheckOutput
// ---------------------------------------------------------------------------------------------

func hasFailureLine(s string) bool {
	for _, line := range splitLines(s) {
		t := strings.ToLower(strings.TrimSpace(line))
		for _, p := range []string{"failure:", "bad command name", "syntax error", "expected end of command"} {
			if strings.HasPrefix(t, p) {
				return true
			}
		}
	}
	return false
}

func FuzzCheckOutput(f *testing.F) {
	for _, e := range docErrorTexts {
		f.Add("/disk print", e.text, "", 0)
		f.Add("/disk print", "", e.text, 1)
	}
	f.Add("/disk print detail", sampleDiskDetail, "", 0)
	f.Fuzz(func(t *testing.T, command, stdout, stderr string, exit int) {
		err := CheckOutput(command, stdout, stderr, exit)
		mustFail := exit != 0 || hasFailureLine(stdout) || hasFailureLine(stderr)
		if mustFail && err == nil {
			t.Fatalf("no error for exit %d, stdout %q, stderr %q", exit, stdout, stderr)
		}
		// the streams are treated alike
		if swapped := CheckOutput(command, stderr, stdout, exit); (swapped == nil) != (err == nil) {
			t.Fatalf("swapping the streams changes the verdict: %v vs %v", err, swapped)
		}
		if err == nil {
			return
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error %T is not *Error", err)
		}
		if e.Command != command {
			t.Fatalf("Command %q, want %q", e.Command, command)
		}
		if e.Kind < KindInternal || e.Kind > KindDeadlineExceeded || e.Kind == KindUnavailable || e.Kind == KindDeadlineExceeded {
			t.Fatalf("unexpected kind %v for command output", e.Kind)
		}
		_ = err.Error()
	})
}

// ---------------------------------------------------------------------------------------------
// FuzzCommandBuilders
// ---------------------------------------------------------------------------------------------

// fuzzPosition builds one constructor's command with v in one argument. Every other argument is a
// placeholder that never contains v's placeholder, so the expected line is the placeholder line
// with that one occurrence replaced.
type fuzzPosition struct {
	name        string
	placeholder string
	build       func(v string) (Command, error)
	render      func(v string) string // how v shows in the line
	allow       *regexp.Regexp        // what an accepted value must look like, independent of the code
}

var (
	allowSlot   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,197}$`)
	allowPrefix = regexp.MustCompile(`^[a-z0-9_-]{0,198}$`)
	allowPath   = regexp.MustCompile(`^(/[A-Za-z0-9._-]+)+$`)
	allowNQN    = regexp.MustCompile(`^nqn\.[0-9]{4}-[0-9]{2}\.[a-z0-9.-]+:[a-z0-9._:-]+$`)
	allowPool   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$`)
)

func fuzzSpec() DiskSpec {
	return DiskSpec{Slot: "zslotz", FilePath: "/zdirz/zfilez.img", Size: 1 << 30, Export: true, Port: 4420, NQN: "nqn.2000-02.znqnz:x"}
}

func same(v string) string { return v }

var fuzzPositions = []fuzzPosition{
	{"DiskAdd slot", "zslotz", func(v string) (Command, error) { s := fuzzSpec(); s.Slot = v; return DiskAdd(s) }, same, allowSlot},
	{"DiskAdd path", "/zdirz/zfilez.img", func(v string) (Command, error) { s := fuzzSpec(); s.FilePath = v; return DiskAdd(s) }, same, allowPath},
	{"DiskAdd nqn", "nqn.2000-02.znqnz:x", func(v string) (Command, error) { s := fuzzSpec(); s.NQN = v; return DiskAdd(s) }, same, allowNQN},
	{"DiskCopy source", "zsrcz", func(v string) (Command, error) { return DiskCopy(v, fuzzSpec()) }, same, allowSlot},
	{"DiskCopy slot", "zslotz", func(v string) (Command, error) { s := fuzzSpec(); s.Slot = v; return DiskCopy("zsrcz", s) }, same, allowSlot},
	{"DiskCopy path", "/zdirz/zfilez.img", func(v string) (Command, error) { s := fuzzSpec(); s.FilePath = v; return DiskCopy("zsrcz", s) }, same, allowPath},
	{"DiskResize slot", "zslotz", func(v string) (Command, error) { return DiskResize(v, 1<<30) }, same, allowSlot},
	{"DiskRemove slot", "zslotz", DiskRemove, same, allowSlot},
	{"DiskPrint slot", "zslotz", DiskPrint, same, allowSlot},
	{"DiskPrintPrefix prefix", "zpfxz", DiskPrintPrefix, same, allowPrefix},
	{"PoolPrint pool", "zpoolz", PoolPrint, same, allowPool},
	{"FilePrint path", "/zdirz/zfilez.img", FilePrint, FileName, allowPath},
	{"FileRemove path", "/zdirz/zfilez.img", FileRemove, FileName, allowPath},
	{"FileFindBySlot slot", "zslotz", FileFindBySlot, same, allowSlot},
}

func checkBuiltValue(t *testing.T, p fuzzPosition, v string) {
	t.Helper()
	c, err := p.build(v)
	if err != nil {
		if KindOf(err) != KindInvalidArgument || c != (Command{}) {
			t.Fatalf("%s(%q): kind %v, command %q", p.name, v, KindOf(err), c)
		}
		return
	}
	if !p.allow.MatchString(v) || len(v) > volid.MaxPathLen || strings.ContainsAny(v, ";$[]\"'`\\{} \t\r\n") {
		t.Fatalf("%s accepted %q, which is outside the allow-list", p.name, v)
	}
	if strings.HasPrefix(v, "/") && (strings.Contains(v+"/", "/../") || strings.Contains(v+"/", "/./")) {
		t.Fatalf("%s accepted the path %q", p.name, v)
	}
	tmpl, err := p.build(p.placeholder)
	if err != nil {
		t.Fatalf("placeholder refused: %v", err)
	}
	if n := strings.Count(tmpl.String(), p.render(p.placeholder)); n != 1 {
		t.Fatalf("placeholder %q appears %d times in %q", p.placeholder, n, tmpl)
	}
	want := strings.Replace(tmpl.String(), p.render(p.placeholder), p.render(v), 1)
	if c.String() != want {
		t.Fatalf("%s(%q):\n got %s\nwant %s", p.name, v, c, want)
	}
	assertSafeLine(t, c.String())
}

func FuzzCommandBuilders(f *testing.F) {
	f.Add(goodSlot, tib15, 4420)
	f.Add(sampleInjectionTry, int64(0), 0)
	f.Fuzz(func(t *testing.T, v string, size int64, port int) {
		for _, p := range fuzzPositions {
			checkBuiltValue(t, p, v)
		}

		// sizes and ports: refused, or sent exactly
		s := fuzzSpec()
		s.Size, s.Port = size, port
		sizeOK := size >= MinFileSize && size <= MaxFileSize
		portOK := port >= 1 && port <= 65535
		for name, build := range map[string]func() (Command, error){
			"DiskAdd":    func() (Command, error) { return DiskAdd(s) },
			"DiskCopy":   func() (Command, error) { return DiskCopy("zsrcz", s) },
			"DiskResize": func() (Command, error) { return DiskResize("zslotz", size) },
		} {
			c, err := build()
			wantOK := sizeOK && (portOK || name == "DiskResize") || (name == "DiskCopy" && size == 0 && portOK)
			if (err == nil) != wantOK {
				t.Fatalf("%s size=%d port=%d: %q, %v", name, size, port, c, err)
			}
			if err != nil {
				if KindOf(err) != KindInvalidArgument || c != (Command{}) {
					t.Fatalf("%s: kind %v, command %q", name, KindOf(err), c)
				}
				continue
			}
			line := c.String() + " "
			if size != 0 && !strings.Contains(line, " file-size="+strconv.FormatInt(size, 10)+" ") {
				t.Fatalf("%s: %q does not carry size %d exactly", name, c, size)
			}
			if name != "DiskResize" && !strings.Contains(line, " nvme-tcp-server-port="+strconv.Itoa(port)+" ") {
				t.Fatalf("%s: %q does not carry port %d", name, c, port)
			}
			assertSafeLine(t, c.String())
		}
	})
}

// ---------------------------------------------------------------------------------------------
// Property: a disk item rendered the way RouterOS wraps it parses back to the same fields.
// ---------------------------------------------------------------------------------------------

// pair is one property as printed (text after `key=`) and as the parser must return it.
type pair struct{ key, text, want string }

// renderItem prints an item like RouterOS `print detail`: index right-aligned in a 2-column field,
// optional flags, pairs separated by one space; a pair that does not fit goes to a continuation line
// indented 5 spaces; a pair longer than a whole line is broken inside its value (the key always
// stays on one line), as many times as needed.
func renderItem(index int, flags, comment string, pairs []pair, width int) []string {
	const indent = "     "
	first := fmt.Sprintf("%2d", index)
	if flags != "" {
		first += " " + flags + "  "
	}
	for len(first) < len(indent) {
		first += " "
	}
	var lines []string
	cur, empty := first, true
	if comment != "" {
		lines = append(lines, cur+";;; "+comment)
		cur = indent
	}
	for _, p := range pairs {
		text := p.key + "=" + p.text
		sep := " "
		if empty {
			sep = ""
		}
		if len(cur)+len(sep)+len(text) <= width {
			cur += sep + text
			empty = false
			continue
		}
		if !empty {
			lines = append(lines, cur)
			cur, empty = indent, true
		}
		if len(cur)+len(text) <= width {
			cur += text
			empty = false
			continue
		}
		// break inside the value: key= and at least one byte of the value on this line
		n := max(width-len(cur), len(p.key)+2)
		cur += text[:n]
		text = text[n:]
		for text != "" {
			lines = append(lines, cur)
			n = min(max(width-len(indent), 1), len(text))
			cur, text = indent+text[:n], text[n:]
		}
		empty = false
	}
	return append(lines, cur)
}

const (
	lowerAlnum = "abcdefghijklmnopqrstuvwxyz0123456789"
	hexDigits  = "0123456789abcdef"
)

func randString(r *rand.Rand, alphabet string, n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = alphabet[r.IntN(len(alphabet))]
	}
	return string(b)
}

func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// quoteRouterOS prints a string the way RouterOS quotes it, escaping '"' and '\'.
func quoteRouterOS(s string) string {
	return `"` + strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(s) + `"`
}

// genDiskItem returns the pairs of a random file-backed disk.
func genDiskItem(r *rand.Rand) []pair {
	slot := "pvc-" + randString(r, hexDigits, 8) + "-" + randString(r, hexDigits, 4) + "-" + randString(r, hexDigits, 4) + "-" + randString(r, hexDigits, 12)
	if r.IntN(4) == 0 {
		slot = "snap-" + randString(r, lowerAlnum+"-_.", 1+r.IntN(120)) + "x"
	}
	dir := "/storage-pool"
	for i := r.IntN(5); i > 0; i-- {
		dir += "/" + randString(r, lowerAlnum+"-_.", 1+r.IntN(30))
	}
	path := dir + "/" + slot + ".img"
	size := r.Int64N(MaxFileSize)
	if r.IntN(3) == 0 {
		size = int64(r.IntN(1<<20)) << 20
	}
	maybeQuote := func(s string) string {
		if r.IntN(2) == 0 {
			return quoteRouterOS(s)
		}
		return s
	}
	model := randString(r, lowerAlnum+"./:_-\\\"", r.IntN(60))
	human := strconv.FormatFloat(float64(size)/(1<<30), 'f', 1, 64) + "GiB"
	nqn := volid.NQN(slot)
	port := 1 + r.IntN(65535)
	yesNo := func() string { return []string{"yes", "no"}[r.IntN(2)] }
	pairs := []pair{
		{"type", "file", "file"},
		{"slot", maybeQuote(slot), slot},
		{"slot-default", `""`, ""},
		{"parent", `""`, ""},
		{"fs", "-", "-"},
		{"model", quoteRouterOS(model), model},
		{"size", groupDigits(size), strconv.FormatInt(size, 10)},
		{"mount-filesystem", yesNo(), ""},
		{"mount-read-only", yesNo(), ""},
		{"compress", "no", "no"},
		{"sector-size", "512", "512"},
		{"raid-master", "none", "none"},
		{"nvme-tcp-export", "yes", "yes"},
		{"nvme-tcp-server-port", strconv.Itoa(port), strconv.Itoa(port)},
		{"nvme-tcp-server-nqn", maybeQuote(nqn), nqn},
		{"nvme-tcp-server-allow-host-name", `""`, ""},
		{"iscsi-export", "no", "no"},
		{"media-interface", "none", "none"},
		{"swap", "no", "no"},
		{"file-path", path, path},
		{"file-size", human, human},
		{"file-offset", groupDigits(int64(r.IntN(1 << 20))), ""},
		{"free", groupDigits(r.Int64N(math.MaxInt64)), ""},
	}
	for i := range pairs {
		if pairs[i].want == "" && pairs[i].text != `""` {
			pairs[i].want = strings.ReplaceAll(pairs[i].text, " ", "")
		}
	}
	// RouterOS prints properties in a fixed order, but the parser must not care
	if r.IntN(4) == 0 {
		r.Shuffle(len(pairs), func(i, j int) { pairs[i], pairs[j] = pairs[j], pairs[i] })
	}
	return pairs
}

// checkWrappedRoundTrip renders a few random disks at the given width and parses them back.
func checkWrappedRoundTrip(t *testing.T, seed uint64, width int) {
	t.Helper()
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	var (
		out   []string
		wants []want
	)
	out = append(out, "Flags: X - disabled; B - blocked")
	for i, n := 0, 1+r.IntN(4); i < n; i++ {
		index := i
		if r.IntN(3) == 0 {
			index = r.IntN(1000)
		}
		flags := []string{"", "", "X", "XB", "a", "*"}[r.IntN(6)]
		comment := ""
		if r.IntN(5) == 0 {
			comment = "by hand"
		}
		pairs := genDiskItem(r)
		if i > 0 {
			out = append(out, "")
		}
		out = append(out, renderItem(index, flags, comment, pairs, width)...)
		fields := map[string]string{}
		for _, p := range pairs {
			fields[p.key] = p.want
		}
		if comment != "" {
			fields["comment"] = comment
		}
		wants = append(wants, want{index, flags, fields})
	}
	nl := "\n"
	if r.IntN(2) == 0 {
		nl = "\r\n"
	}
	text := strings.Join(out, nl) + nl
	checkItems(t, text, ParsePrintDetail(text), wants)
}

func TestParseWrappedProperty(t *testing.T) {
	n := 3000
	if testing.Short() {
		n = 300
	}
	r := rand.New(rand.NewPCG(42, 4242))
	for i := 0; i < n; i++ {
		seed := r.Uint64()
		width := 20 + r.IntN(180)
		t.Run(fmt.Sprintf("seed=%d/width=%d", seed, width), func(t *testing.T) {
			checkWrappedRoundTrip(t, seed, width)
		})
		if t.Failed() {
			break
		}
	}
}

// TestRenderItem pins the renderer itself to the RouterOS layout of the doc's hardware sample.
func TestRenderItem(t *testing.T) {
	pairs := []pair{{"type", "file", ""}, {"file-path", "/storage-pool/k8s/pvc-1234-abcd.img", ""}, {"swap", "no", ""}}
	got := renderItem(0, "", "", pairs, 40)
	want := []string{
		" 0   type=file",
		"     file-path=/storage-pool/k8s/pvc-123",
		"     4-abcd.img swap=no",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("render:\n%q\nwant\n%q", got, want)
	}
	got = renderItem(1, "X", "", pairs[:1], 80)
	if !reflect.DeepEqual(got, []string{" 1 X  type=file"}) {
		t.Errorf("render with flag: %q", got)
	}
	got = renderItem(12, "", "", pairs[:1], 80)
	if !reflect.DeepEqual(got, []string{"12   type=file"}) {
		t.Errorf("render two-digit index: %q", got)
	}
}

func FuzzParseWrapped(f *testing.F) {
	f.Add(uint64(1), uint8(24))
	f.Add(uint64(2), uint8(200))
	f.Fuzz(func(t *testing.T, seed uint64, width uint8) {
		checkWrappedRoundTrip(t, seed, 20+int(width))
	})
}
