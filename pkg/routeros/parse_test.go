package routeros

import (
	"reflect"
	"strings"
	"testing"

	"github.com/srvlab/rds-csi/pkg/volid"
)

// Output captured from real RDS units, verbatim (docs/routeros.md shows them, the disk shortened).
// The fuzz seed corpus under testdata/fuzz holds the same texts (see fuzz_test.go).
const (
	sampleDiskDetail = `Flags: ...
 0   type=file slot="pvc-test-123" slot-default="" parent="" fs=-
     model="/storage-pool/test.img"
     size=53 687 091 200 mount-filesystem=yes mount-read-only=no
     compress=no sector-size=512 raid-master=none
     nvme-tcp-export=yes nvme-tcp-server-port=4420
     nvme-tcp-server-nqn="nqn.2000-02.com.mikrotik:pvc-test-123"
     nvme-tcp-server-allow-host-name="" iscsi-export=no
     nfs-sharing=no smb-sharing=no media-sharing=no
     media-interface=none swap=no
     file-path=/storage-pool/test.img
     file-size=50.0GiB file-offset=0
`
	samplePoolLine = `slot=storage-pool type=partition mount-point=storage-pool file-system=btrfs size=7 949 127 950 336 free=5 963 595 964 416 use=25%`

	sampleFilePrint = ` 0   name=storage-pool/k8s type=directory
     last-modified=2025-11-11 16:47:07

 1   name=storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img
     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41
`
	sampleMonitorTraffic = `                 slot: pvc-test-123
  read-ops-per-second: 0
 write-ops-per-second: 98
            read-rate: 0bps
           write-rate: 12.8Mbps
           read-bytes: 0
          write-bytes: 515 659 673 600
`
)

// sampleDiskFields is what the hardware sample must parse into.
var sampleDiskFields = map[string]string{
	"type":                            "file",
	"slot":                            "pvc-test-123",
	"slot-default":                    "",
	"parent":                          "",
	"fs":                              "-",
	"model":                           "/storage-pool/test.img",
	"size":                            "53687091200",
	"mount-filesystem":                "yes",
	"mount-read-only":                 "no",
	"compress":                        "no",
	"sector-size":                     "512",
	"raid-master":                     "none",
	"nvme-tcp-export":                 "yes",
	"nvme-tcp-server-port":            "4420",
	"nvme-tcp-server-nqn":             "nqn.2000-02.com.mikrotik:pvc-test-123",
	"nvme-tcp-server-allow-host-name": "",
	"iscsi-export":                    "no",
	"nfs-sharing":                     "no",
	"smb-sharing":                     "no",
	"media-sharing":                   "no",
	"media-interface":                 "none",
	"swap":                            "no",
	"file-path":                       "/storage-pool/test.img",
	"file-size":                       "50.0GiB",
	"file-offset":                     "0",
}

var samplePoolFields = map[string]string{
	"slot":        "storage-pool",
	"type":        "partition",
	"mount-point": "storage-pool",
	"file-system": "btrfs",
	"size":        "7949127950336",
	"free":        "5963595964416",
	"use":         "25%",
}

// want is the expected shape of one parsed item.
type want struct {
	index  int
	flags  string
	fields map[string]string
}

func kv(pairs ...string) map[string]string {
	m := make(map[string]string, len(pairs)/2)
	for i := 0; i+1 < len(pairs); i += 2 {
		m[pairs[i]] = pairs[i+1]
	}
	return m
}

func checkItems(t *testing.T, in string, got []Item, wants []want) {
	t.Helper()
	if len(got) != len(wants) {
		t.Fatalf("got %d items, want %d\ninput:\n%s\ngot: %+v", len(got), len(wants), in, got)
	}
	for i, w := range wants {
		g := got[i]
		if g.Index != w.index || g.Flags != w.flags {
			t.Errorf("item %d: index/flags = %d/%q, want %d/%q", i, g.Index, g.Flags, w.index, w.flags)
		}
		if !reflect.DeepEqual(g.Fields, w.fields) {
			t.Errorf("item %d fields:\n got %q\nwant %q", i, g.Fields, w.fields)
		}
		checkOrder(t, g)
	}
}

// checkOrder asserts that Order lists every key of Fields exactly once.
func checkOrder(t *testing.T, it Item) {
	t.Helper()
	seen := map[string]bool{}
	for _, k := range it.Order {
		if seen[k] {
			t.Errorf("key %q listed twice in Order %q", k, it.Order)
		}
		seen[k] = true
		if _, ok := it.Fields[k]; !ok {
			t.Errorf("Order key %q missing from Fields", k)
		}
	}
	if len(seen) != len(it.Fields) {
		t.Errorf("Order %q does not cover Fields %q", it.Order, it.Fields)
	}
}

func crlf(s string) string { return strings.ReplaceAll(s, "\n", "\r\n") }

func TestParsePrintDetail(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []want
	}{
		{"hardware sample verbatim", sampleDiskDetail, []want{{0, "", sampleDiskFields}}},
		{"hardware sample CRLF", crlf(sampleDiskDetail), []want{{0, "", sampleDiskFields}}},
		{"hardware sample CR only", strings.ReplaceAll(sampleDiskDetail, "\n", "\r"), []want{{0, "", sampleDiskFields}}},
		{"hardware sample without trailing newline", strings.TrimSuffix(sampleDiskDetail, "\n"), []want{{0, "", sampleDiskFields}}},
		{"hardware sample with trailing spaces", strings.ReplaceAll(sampleDiskDetail, "\n", "  \t\n"), []want{{0, "", sampleDiskFields}}},
		{"empty output", "", nil},
		{"only blank lines", "\n\r\n   \n\t\n", nil},
		{"flags header, no items", "Flags: X - disabled; B - blocked\n", nil},
		{"flags header, no items, CRLF", "Flags: X - disabled; B - blocked\r\n\r\n", nil},
		{"flags header wrapped onto indented line, no items",
			"Flags: X - DISABLED; B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; R - RAID-MEMBER;\n       E - EMPTY; N - NVME-TCP-EXPORT\n", nil},
		{"flags header wrapped mid-word in lower case, no items",
			"Flags: x - disabled, b - block-dev\n       ice, m - mounted\n", nil},
		{"flags header wrapped, then an item",
			"Flags: X - DISABLED; B - BLOCK-DEVICE; M - MOUNTED; F - FORMATTING; R - RAID-MEMBER;\n       E - EMPTY; N - NVME-TCP-EXPORT\n 0   slot=a type=file\n",
			[]want{{0, "", kv("slot", "a", "type", "file")}}},
		{"columns header ignored", "Columns: SLOT, TYPE\n 0   slot=a\n", []want{{0, "", kv("slot", "a")}}},
		{"grouped digits",
			" 0   size=7 949 127 950 336 free=5 963 595 964 416 sector-size=512\n",
			[]want{{0, "", kv("size", "7949127950336", "free", "5963595964416", "sector-size", "512")}}},
		{"human sizes kept as printed",
			" 0   file-size=1024.0MiB\n 1   file-size=50.0GiB\n 2   file-size=1.5TiB\n",
			[]want{{0, "", kv("file-size", "1024.0MiB")}, {1, "", kv("file-size", "50.0GiB")}, {2, "", kv("file-size", "1.5TiB")}}},
		{"quoted and unquoted values",
			` 0   slot="pvc-a" model=/storage-pool/a.img parent="" fs=- comment="two words" esc="a \"b\" \\c"` + "\n",
			[]want{{0, "", kv("slot", "pvc-a", "model", "/storage-pool/a.img", "parent", "", "fs", "-", "comment", "two words", "esc", `a "b" \c`)}}},
		{"file-path wrapped mid-token once (doc example)",
			" 0   slot=pvc-1234-abcd file-path=/storage-pool/k8s/pvc-1234\n     -abcd.img file-size=1.0GiB\n",
			[]want{{0, "", kv("slot", "pvc-1234-abcd", "file-path", "/storage-pool/k8s/pvc-1234-abcd.img", "file-size", "1.0GiB")}}},
		{"file-path wrapped at the end of a line, next pair on the following line",
			" 0   file-path=/storage-pool/k8s/pvc-1234\n     -abcd.img\n     file-size=1.0GiB\n",
			[]want{{0, "", kv("file-path", "/storage-pool/k8s/pvc-1234-abcd.img", "file-size", "1.0GiB")}}},
		{"file-path wrapped twice",
			" 0   file-path=/storage-pool/kubernetes-vol\n     umes/pvc-ccdecfad-a8bf-572e-9120-4\n     64c4d99f12f.img file-offset=0\n",
			[]want{{0, "", kv("file-path", "/storage-pool/kubernetes-volumes/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img", "file-offset", "0")}}},
		{"file-path wrapped right after the equals sign",
			" 0   swap=no file-path=\n     /storage-pool/a.img\n",
			[]want{{0, "", kv("swap", "no", "file-path", "/storage-pool/a.img")}}},
		{"file-path wrapped where the rest starts with a digit",
			" 0   file-path=/storage-pool/pvc-\n     1234.img file-offset=0\n",
			[]want{{0, "", kv("file-path", "/storage-pool/pvc-1234.img", "file-offset", "0")}}},
		{"quoted NQN wrapped inside the quotes",
			" 0   nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:pvc-te\n     st-123\" iscsi-export=no\n",
			[]want{{0, "", kv("nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-test-123", "iscsi-export", "no")}}},
		{"quoted NQN wrapped inside the quotes where the rest looks like a key",
			" 0   nvme-tcp-server-nqn=\"nqn.2000-02.com.mikrotik:\n     a=b\" swap=no\n",
			[]want{{0, "", kv("nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:a=b", "swap", "no")}}},
		{"quoted NQN wrapped twice inside the quotes",
			" 0   nvme-tcp-server-nqn=\"nqn.2000-02.c\n     om.mikrotik:pvc-ccdecfad-a8bf-572e-9\n     120-464c4d99f12f\"\n",
			[]want{{0, "", kv("nvme-tcp-server-nqn", "nqn.2000-02.com.mikrotik:pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f")}}},
		{"quoted value wrapped between its quotes when empty",
			" 0   slot-default=\"\n     \" parent=\"\"\n",
			[]want{{0, "", kv("slot-default", "", "parent", "")}}},
		{"quoted value wrapped after an escaped quote",
			" 0   model=\"a\\\"\n     b\" swap=no\n",
			[]want{{0, "", kv("model", `a"b`, "swap", "no")}}},
		{"quoted value wrapped between backslash and escaped char",
			" 0   model=\"a\\\n     \"b\" swap=no\n",
			[]want{{0, "", kv("model", `a"b`, "swap", "no")}}},
		{"grouped number wrapped between groups",
			" 0   size=53 687\n     091 200 mount-filesystem=yes\n",
			[]want{{0, "", kv("size", "53687091200", "mount-filesystem", "yes")}}},
		{"grouped number wrapped inside a group",
			" 0   size=53 68\n     7 091 200 mount-filesystem=yes\n",
			[]want{{0, "", kv("size", "53687091200", "mount-filesystem", "yes")}}},
		{"grouped number wrapped twice, between and inside groups",
			" 0   free=5 963\n     595 96\n     4 416 use=25%\n",
			[]want{{0, "", kv("free", "5963595964416", "use", "25%")}}},
		{"grouped number wrapped right after the equals sign",
			" 0   size=\n     53 687 091 200\n",
			[]want{{0, "", kv("size", "53687091200")}}},
		{"human size wrapped mid-token",
			" 0   file-size=50.\n     0GiB file-offset=0\n",
			[]want{{0, "", kv("file-size", "50.0GiB", "file-offset", "0")}}},
		{"blank-line separators",
			" 0   slot=a\n\n 1   slot=b\n\n\n 2   slot=c\n\n",
			[]want{{0, "", kv("slot", "a")}, {1, "", kv("slot", "b")}, {2, "", kv("slot", "c")}}},
		{"whitespace-only separator lines",
			" 0   slot=a\n   \t \n 1   slot=b\n",
			[]want{{0, "", kv("slot", "a")}, {1, "", kv("slot", "b")}}},
		{"items without a separator line",
			" 0   slot=a\n     size=1\n 1   slot=b\n     size=2\n",
			[]want{{0, "", kv("slot", "a", "size", "1")}, {1, "", kv("slot", "b", "size", "2")}}},
		{"two-digit indices",
			manyItems(12),
			manyItemsWant(12)},
		{"three-digit indices",
			"Flags: X\n 99   slot=s99\n      size=99\n\n100   slot=s100\n      size=100\n",
			[]want{{99, "", kv("slot", "s99", "size", "99")}, {100, "", kv("slot", "s100", "size", "100")}}},
		{"flag letter",
			" 0   type=file slot=a\n\n 1 X  type=file slot=b\n     file-size=1.0GiB\n",
			[]want{{0, "", kv("type", "file", "slot", "a")}, {1, "X", kv("type", "file", "slot", "b", "file-size", "1.0GiB")}}},
		{"several flag letters and two-digit index",
			"10 XB  type=file slot=a\n",
			[]want{{10, "XB", kv("type", "file", "slot", "a")}}},
		{"flag star",
			" 3 *   slot=a\n",
			[]want{{3, "*", kv("slot", "a")}}},
		{"lower-case flag letter (RouterOS 7 style)",
			" 4 a   slot=a\n     size=1\n",
			[]want{{4, "a", kv("slot", "a", "size", "1")}}},
		{"index alone on its line, pairs on continuation lines",
			" 0   \n     slot=a type=file\n\n 1\n     slot=b\n",
			[]want{{0, "", kv("slot", "a", "type", "file")}, {1, "", kv("slot", "b")}}},
		{"comment line starts the item",
			" 0   ;;; created by hand\n     type=file slot=a\n\n 1 X ;;; old\n     slot=b\n",
			[]want{{0, "", kv("comment", "created by hand", "type", "file", "slot", "a")}, {1, "X", kv("comment", "old", "slot", "b")}}},
		{"comment line without blank separator",
			" 0   slot=a\n 1   ;;; note\n     slot=b\n",
			[]want{{0, "", kv("slot", "a")}, {1, "", kv("comment", "note", "slot", "b")}}},
		{"pool line without index", samplePoolLine + "\n", []want{{-1, "", samplePoolFields}}},
		{"pool line without index or newline", samplePoolLine, []want{{-1, "", samplePoolFields}}},
		{"pool line with index", " 0   " + samplePoolLine + "\n", []want{{0, "", samplePoolFields}}},
		{"pool line with flags header and CRLF", "Flags: ...\r\n 0   " + samplePoolLine + "\r\n", []want{{0, "", samplePoolFields}}},
		{"pool line with index wrapped",
			" 0   slot=storage-pool type=partition mount-point=storage-pool\n     file-system=btrfs size=7 949 127\n     950 336 free=5 963 595 964 416 use=25%\n",
			[]want{{0, "", samplePoolFields}}},
		{"two index-less entries separated by a blank line",
			"slot=a size=1\n\nslot=b size=2\n",
			[]want{{-1, "", kv("slot", "a", "size", "1")}, {-1, "", kv("slot", "b", "size", "2")}}},
		{"file print sample", sampleFilePrint, []want{
			{0, "", kv("name", "storage-pool/k8s", "type", "directory", "last-modified", "2025-11-11 16:47:07")},
			{1, "", kv("name", "storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img", "type", ".img file", "size", "10.0GiB", "last-modified", "2025-11-11 14:32:41")},
		}},
		{"file print sample CRLF", crlf(sampleFilePrint), []want{
			{0, "", kv("name", "storage-pool/k8s", "type", "directory", "last-modified", "2025-11-11 16:47:07")},
			{1, "", kv("name", "storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img", "type", ".img file", "size", "10.0GiB", "last-modified", "2025-11-11 14:32:41")},
		}},
		{"file print, month-name date format",
			" 0   name=storage-pool/k8s type=directory\n     last-modified=nov/11/2025 16:47:07\n",
			[]want{{0, "", kv("name", "storage-pool/k8s", "type", "directory", "last-modified", "nov/11/2025 16:47:07")}}},
		{"file print, date as the last pair of the first line",
			" 1   name=a.img type=.img file size=10.0GiB last-modified=nov/11/2025 16:47:07\n",
			[]want{{1, "", kv("name", "a.img", "type", ".img file", "size", "10.0GiB", "last-modified", "nov/11/2025 16:47:07")}}},
		{"file print, name wrapped mid-token",
			" 1   name=storage-pool/k8s/pvc-ccdecfad-a8bf-572e-\n     9120-464c4d99f12f.img\n     type=.img file size=10.0GiB last-modified=2025-11-11 14:32:41\n",
			[]want{{1, "", kv("name", "storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img", "type", ".img file", "size", "10.0GiB", "last-modified", "2025-11-11 14:32:41")}}},
		{"no status field on file-backed disks",
			sampleDiskDetail,
			[]want{{0, "", sampleDiskFields}}},
		{"duplicate key: last value wins",
			" 0   slot=a slot=b\n",
			[]want{{0, "", kv("slot", "b")}}},
		{"garbage lines outside items are ignored",
			"garbage here\n!!!\n 0   slot=a\n\nmore garbage\n",
			[]want{{0, "", kv("slot", "a")}}},
		{"words before the first key of an index-less line are dropped",
			"  hello world slot=a\n",
			nil},
		{"tab-separated pairs",
			" 0\tslot=a\tsize=1\n",
			[]want{{0, "", kv("slot", "a", "size", "1")}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkItems(t, tc.in, ParsePrintDetail(tc.in), tc.want)
		})
	}
}

func manyItems(n int) string {
	var b strings.Builder
	b.WriteString("Flags: X - disabled\n")
	for i := 0; i < n; i++ {
		idx := itoa(i)
		if i < 10 {
			idx = " " + idx
		}
		b.WriteString(idx + "   type=file slot=\"pvc-" + itoa(i) + "\"\n     size=1 073 741 824\n\n")
	}
	return b.String()
}

func manyItemsWant(n int) []want {
	var w []want
	for i := 0; i < n; i++ {
		w = append(w, want{i, "", kv("type", "file", "slot", "pvc-"+itoa(i), "size", "1073741824")})
	}
	return w
}

func itoa(i int) string { return FormatSize(int64(i)) }

func TestParsePrintDetailHardwareSample(t *testing.T) {
	items := ParsePrintDetail(sampleDiskDetail)
	if len(items) != 1 {
		t.Fatalf("got %d items, want 1", len(items))
	}
	it := items[0]
	for key, want := range map[string]string{
		"slot":                "pvc-test-123",
		"model":               "/storage-pool/test.img",
		"size":                "53687091200",
		"file-path":           "/storage-pool/test.img",
		"file-size":           "50.0GiB",
		"nvme-tcp-server-nqn": "nqn.2000-02.com.mikrotik:pvc-test-123",
		"fs":                  "-",
	} {
		if got, ok := it.Get(key); !ok || got != want {
			t.Errorf("%s = %q (present %v), want %q", key, got, ok, want)
		}
	}
	if _, ok := it.Get("status"); ok {
		t.Errorf("file-backed disk must have no status field")
	}
	size, err := ParseGroupedInt(it.Fields["size"])
	if err != nil || size != 53687091200 {
		t.Errorf("size = %d, %v; want 53687091200 exactly", size, err)
	}
	fs, err := ParseHumanSize(it.Fields["file-size"])
	if err != nil || fs != 50<<30 {
		t.Errorf("file-size = %d, %v; want %d", fs, err, int64(50)<<30)
	}
	if it.Fields["nvme-tcp-server-nqn"] != volid.NQN(it.Fields["slot"]) {
		t.Errorf("NQN %q does not match the slot", it.Fields["nvme-tcp-server-nqn"])
	}
	wantOrder := []string{"type", "slot", "slot-default", "parent", "fs", "model", "size"}
	if !reflect.DeepEqual(it.Order[:len(wantOrder)], wantOrder) {
		t.Errorf("Order starts %q, want %q", it.Order[:len(wantOrder)], wantOrder)
	}
	if len(it.Order) != len(sampleDiskFields) {
		t.Errorf("Order has %d keys, want %d", len(it.Order), len(sampleDiskFields))
	}
}

func TestParsePrintDetailPoolCapacity(t *testing.T) {
	for _, in := range []string{samplePoolLine, " 0   " + samplePoolLine, "Flags: X\r\n 0   " + samplePoolLine + "\r\n"} {
		items := ParsePrintDetail(in)
		if len(items) != 1 {
			t.Fatalf("%q: got %d items", in, len(items))
		}
		size, err1 := ParseGroupedInt(items[0].Fields["size"])
		free, err2 := ParseGroupedInt(items[0].Fields["free"])
		if err1 != nil || err2 != nil || size != 7949127950336 || free != 5963595964416 {
			t.Errorf("%q: size=%d (%v) free=%d (%v)", in, size, err1, free, err2)
		}
	}
}

func TestParseGroupedInt(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"0", 0, false},
		{"512", 512, false},
		{"53687091200", 53687091200, false},
		{"53 687 091 200", 53687091200, false},
		{" 53 687 091 200\r\n", 53687091200, false},
		{"515 659 673 600", 515659673600, false},
		{"7 949 127 950 336", 7949127950336, false},
		{"9 223 372 036 854 775 807", 9223372036854775807, false},
		{"-5", -5, false},
		{"", 0, true},
		{"   ", 0, true},
		{"9 223 372 036 854 775 808", 0, true},
		{"1,000", 0, true},
		{"1.5", 0, true},
		{"50.0GiB", 0, true},
		{"12a", 0, true},
		{"-", 0, true},
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseGroupedInt(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseGroupedInt(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestParseHumanSize(t *testing.T) {
	tests := []struct {
		in      string
		want    int64
		wantErr bool
	}{
		{"50.0GiB", 50 << 30, false},
		{"1024.0MiB", 1 << 30, false},
		{"10.0GiB", 10 << 30, false},
		{"1.5TiB", 1649267441664, false},
		{"512.0KiB", 512 << 10, false},
		{"0B", 0, false},
		{"4096B", 4096, false},
		{"4096", 4096, false},
		{"1.5 GiB", 3 << 29, false},
		{"1 024.0MiB", 1 << 30, false},
		{"1G", 1 << 30, false},
		{"2M", 2 << 20, false},
		{"3k", 3 << 10, false},
		{"3K", 3 << 10, false},
		{"1T", 1 << 40, false},
		{"1TB", 1e12, false},
		{"1GB", 1e9, false},
		{"1MB", 1e6, false},
		{"1kB", 1e3, false},
		{" 50.0GiB\r", 50 << 30, false},
		{"", 0, true},
		{"GiB", 0, true},
		{"-1GiB", 0, true},
		{"abc", 0, true},
		{"NaN", 0, true},
		{"InfGiB", 0, true},
		{"1e400", 0, true},
		{"8388608TiB", 0, true},
		{"9223372036854775807", 0, true}, // rounds to 2^63 as a float64
	}
	for _, tc := range tests {
		t.Run(tc.in, func(t *testing.T) {
			got, err := ParseHumanSize(tc.in)
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("ParseHumanSize(%q) = %d, %v; want %d, err=%v", tc.in, got, err, tc.want, tc.wantErr)
			}
		})
	}
}
