package rdssim

import (
	"math/rand/v2"
	"strings"
	"testing"
)

func TestGroupDigits(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{0, "0"}, {999, "999"}, {1000, "1 000"}, {53687091200, "53 687 091 200"},
		{7949127950336, "7 949 127 950 336"}, {-1234, "-1 234"},
	} {
		if got := groupDigits(tc.n); got != tc.want {
			t.Errorf("groupDigits(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestHumanSize(t *testing.T) {
	for _, tc := range []struct {
		n    int64
		want string
	}{
		{512, "512B"}, {1 << 30, "1024.0MiB"}, {50 << 30, "50.0GiB"}, {10 << 30, "10.0GiB"},
		{1536 << 20, "1.5GiB"}, {3 << 40, "3.0TiB"},
	} {
		if got := humanSize(tc.n); got != tc.want {
			t.Errorf("humanSize(%d) = %q, want %q", tc.n, got, tc.want)
		}
	}
}

func TestParseSize(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want int64
		ok   bool
	}{
		{"1", 1, true}, {"10G", 10 << 30, true}, {"4k", 4096, true}, {"4K", 4096, true},
		{"3M", 3 << 20, true}, {"2T", 2 << 40, true}, {"1073741824", 1 << 30, true},
		{"0", 0, false}, {"", 0, false}, {"G", 0, false}, {"1.5T", 0, false}, {"-1", 0, false},
		{"10GiB", 0, false}, {"99999999999T", 0, false}, {" 1", 0, false},
	} {
		got, err := ParseSize(tc.in)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("ParseSize(%q) = %d, %v; want %d ok=%v", tc.in, got, err, tc.want, tc.ok)
		}
	}
}

func TestIndexPrefix(t *testing.T) {
	for i, want := range map[int]string{0: " 0   ", 9: " 9   ", 10: "10   ", 123: "123  ", 12345: "12345 "} {
		if got := indexPrefix(i); got != want {
			t.Errorf("indexPrefix(%d) = %q, want %q", i, got, want)
		}
	}
}

// TestWrapItemRejoins checks on random items that every width gives lines
// that a continuation-joining parser turns back into the exact tokens, and
// that lines respect the width whenever a key fits.
func TestWrapItemRejoins(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	keys := []string{"type", "slot", "size", "file-path", "nvme-tcp-server-nqn", "x"}
	alphabet := "abcdefghijklmnopqrstuvwxyz0123456789-./:\"= "
	randValue := func() string {
		for {
			b := make([]byte, rng.IntN(90))
			for i := range b {
				b[i] = alphabet[rng.IntN(len(alphabet))]
			}
			v := string(b)
			// A space followed by key= inside a value is ambiguous even
			// unwrapped; leading/trailing spaces do not occur either.
			if testKeyAt.MatchString(" "+v) || strings.TrimSpace(v) != v || strings.Contains(v, "  ") {
				continue
			}
			return v
		}
	}
	for iter := 0; iter < 3000; iter++ {
		n := 1 + rng.IntN(8)
		toks := make([]string, n)
		for i := range toks {
			toks[i] = keys[rng.IntN(len(keys))] + "=" + randValue()
		}
		width := []int{0, 12, 20, 33, 40, 57, 80, 200}[rng.IntN(8)]
		lines := wrapItem(indexPrefix(iter%20), toks, width)
		out := strings.Join(lines, "\n")
		got := rejoin(t, out)
		want := strings.Join(toks, " ")
		if len(got) != 1 || got[0] != want {
			t.Fatalf("width %d: rejoined\n%q\nwant\n%q\noutput:\n%s", width, got, want, out)
		}
		for i, l := range lines {
			if i > 0 && !strings.HasPrefix(l, indent) {
				t.Fatalf("continuation %q not indented", l)
			}
			if strings.HasSuffix(l, " ") || (i > 0 && strings.HasPrefix(l, indent+" ")) {
				t.Fatalf("width %d: line %q has a space at a break:\n%s", width, l, out)
			}
			if width >= 40 && len(l) > width {
				t.Fatalf("width %d: line %q too long:\n%s", width, l, out)
			}
		}
	}
}

func TestWrapItemBreaksMidToken(t *testing.T) {
	toks := []string{"file-path=/storage-pool/k8s/pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f.img", "file-size=50.0GiB"}
	lines := wrapItem(indexPrefix(0), toks, 40)
	want := []string{
		" 0   file-path=/storage-pool/k8s/pvc-ccd",
		"     ecfad-a8bf-572e-9120-464c4d99f12f.i",
		"     mg file-size=50.0GiB",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Fatalf("got\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}
	// The key is never broken and the first chunk never ends at "=".
	lines = wrapItem(indexPrefix(0), []string{"nvme-tcp-server-allow-host-name=\"abc\""}, 12)
	if !strings.HasPrefix(lines[0], " 0   nvme-tcp-server-allow-host-name=\"") {
		t.Fatalf("key broken: %q", lines)
	}
}
