package rdssim

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// field is one key=value pair of a printed item. raw is the value used for
// `where`/`find` matching; shown is how it is printed (quoted, grouped, human).
type field struct {
	key   string
	raw   string
	shown string
}

// item is one printed entry of a `print detail` listing.
type item []field

// get returns the raw value of key and whether the item has it.
func (it item) get(key string) (string, bool) {
	for _, f := range it {
		if f.key == key {
			return f.raw, true
		}
	}
	return "", false
}

func plain(key, v string) field { return field{key: key, raw: v, shown: v} }

// quoteEscaper is built once: building a Replacer costs far more than using it.
var quoteEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

func quoted(key, v string) field {
	esc := quoteEscaper.Replace(v)
	return field{key: key, raw: v, shown: `"` + esc + `"`}
}

func grouped(key string, n int64) field {
	return field{key: key, raw: strconv.FormatInt(n, 10), shown: groupDigits(n)}
}

func human(key string, n int64) field {
	return field{key: key, raw: humanSize(n), shown: humanSize(n)}
}

func yesNo(b bool) string {
	if b {
		return "yes"
	}
	return "no"
}

// keyPrefix is what a parser recognises as the start of a new key=value pair.
var keyPrefix = regexp.MustCompile(`^[a-z][a-z0-9-]*=`)

// groupDigits prints n with its digits grouped by three with spaces, as
// RouterOS does: 53687091200 -> "53 687 091 200".
func groupDigits(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	if neg {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(' ')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// humanSize prints n in binary units with one decimal. A unit is used only
// when the value is strictly greater than one of it, which reproduces both
// samples from hardware: 50 GiB -> "50.0GiB", 1 GiB -> "1024.0MiB".
func humanSize(n int64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"}
	v := float64(n)
	k := 0
	for v > 1024 && k < len(units)-1 {
		v /= 1024
		k++
	}
	if k == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.1f%s", v, units[k])
}

const indent = "     " // continuation lines and the index column are 5 wide

// indexPrefix is " 0   ": the index right-aligned in two columns, then
// spaces up to column 5 (at least one).
func indexPrefix(i int) string {
	p := fmt.Sprintf("%2d", i)
	if len(p) < len(indent) {
		return p + strings.Repeat(" ", len(indent)-len(p))
	}
	return p + " "
}

// wrapItem lays out the key=value tokens of one item. Lines break between
// tokens; a token that does not fit on an empty line is broken inside its
// value (possibly several times). Keys are never broken, a line never breaks
// right after "=", never next to a space, and a continuation never starts
// with something that looks like "key=", so a parser that joins continuation
// lines without a space (or with one, when they start with key=) recovers the
// exact tokens. width <= 0 disables wrapping.
func wrapItem(prefix string, toks []string, width int) []string {
	if width <= 0 {
		return []string{prefix + strings.Join(toks, " ")}
	}
	var lines []string
	cur := prefix
	has := false
	for _, t := range toks {
		if has {
			if len(cur)+1+len(t) <= width {
				cur += " " + t
				continue
			}
			lines = append(lines, cur)
			cur, has = indent, false
		}
		if len(cur)+len(t) <= width {
			cur += t
			has = true
			continue
		}
		// Break mid-token. The first chunk holds the key, "=" and at least
		// one value character.
		eq := strings.IndexByte(t, '=')
		minK := eq + 2
		rest := t
		first := true
		for {
			avail := width - len(cur)
			lo := 1
			if first {
				lo = minK
			}
			k := len(rest)
			if len(rest) > avail {
				k = breakPoint(rest, lo, avail)
			}
			if k >= len(rest) {
				cur += rest
				has = true
				break
			}
			lines = append(lines, cur+rest[:k])
			rest = rest[k:]
			cur, first = indent, false
		}
	}
	return append(lines, cur)
}

// breakPoint returns the largest valid cut k in [lo, hi] of s, else the
// smallest valid cut above hi, else len(s) (no cut).
func breakPoint(s string, lo, hi int) int {
	valid := func(k int) bool {
		return s[k-1] != ' ' && s[k] != ' ' && !keyPrefix.MatchString(s[k:])
	}
	hi = min(hi, len(s)-1)
	for k := hi; k >= lo; k-- {
		if valid(k) {
			return k
		}
	}
	for k := hi + 1; k < len(s); k++ {
		if k >= lo && valid(k) {
			return k
		}
	}
	return len(s)
}

// renderItems prints items the way `print detail` does: optional header,
// each item with its index, a blank line after every item.
func renderItems(header string, items []item, width int) string {
	var b strings.Builder
	if header != "" {
		b.WriteString(header)
		b.WriteByte('\n')
	}
	for i, it := range items {
		toks := make([]string, len(it))
		for j, f := range it {
			toks[j] = f.key + "=" + f.shown
		}
		for _, l := range wrapItem(indexPrefix(i), toks, width) {
			b.WriteString(l)
			b.WriteByte('\n')
		}
		b.WriteByte('\n')
	}
	return b.String()
}

// renderKV prints "key: value" lines with the keys right-aligned, as
// `monitor-traffic ... once` and `/system resource print` do.
func renderKV(kv [][2]string) string {
	w := 0
	for _, p := range kv {
		w = max(w, len(p[0]))
	}
	var b strings.Builder
	for _, p := range kv {
		fmt.Fprintf(&b, "  %*s: %s\n", w, p[0], p[1])
	}
	return b.String()
}
