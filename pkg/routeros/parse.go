package routeros

import (
	"regexp"
	"strings"
)

// Item is one entry of `print detail` output: its index, its flag letters and its properties.
type Item struct {
	Index  int
	Flags  string
	Fields map[string]string
	// Order keeps the keys in the order the RDS printed them (useful for diagnostics).
	Order []string
}

// Get returns the value of key and whether it was present.
func (it Item) Get(key string) (string, bool) {
	v, ok := it.Fields[key]
	return v, ok
}

var (
	// itemStart matches the first line of an item: right-aligned index, optional flag letters (upper
	// case, or lower case as RouterOS 7 prints some of them), then the first pairs or a `;;; comment`.
	itemStart = regexp.MustCompile(`^\s*(\d+)(?:\s+|$)(?:([A-Za-z*]+)(?:\s+|$))?(.*)$`)
	// keyStart matches a token that begins a key=value pair.
	keyStart = regexp.MustCompile(`^[a-z][a-z0-9-]*=`)
	allDigit = regexp.MustCompile(`^[0-9]+$`)
)

// ParsePrintDetail parses the output of a `print detail` command into items. It never fails: lines
// it cannot make sense of are ignored, so the worst outcome of garbled output is a missing field,
// which callers treat as an error of their own.
func ParsePrintDetail(out string) []Item {
	var (
		items   []Item
		logical logicalLine
		index   = -1
		flags   string
		comment string
		open    bool // an item (or an index-less entry) is being collected
	)
	flush := func() {
		if !open {
			return
		}
		it := buildItem(index, flags, logical.String())
		if comment != "" {
			if _, ok := it.Fields["comment"]; !ok {
				it.Fields["comment"] = comment
				it.Order = append([]string{"comment"}, it.Order...)
			}
		}
		items = append(items, it)
		logical.Reset()
		comment = ""
		open = false
	}
	for _, raw := range splitLines(out) {
		line := strings.TrimRight(raw, " \t")
		trimmed := strings.TrimSpace(line)
		switch {
		case trimmed == "":
			flush()
		case !open && (strings.HasPrefix(trimmed, "Flags:") || strings.HasPrefix(trimmed, "Columns:")):
			// header; its wrapped continuation lines are skipped below because no item is open
		case startsItem(line):
			flush()
			m := itemStart.FindStringSubmatch(line)
			index = atoiSafe(m[1])
			flags = m[2]
			rest := strings.TrimSpace(m[3])
			if c, ok := strings.CutPrefix(rest, ";;;"); ok {
				// `;;; text` is the item's comment, printed on the index line; pairs follow on
				// continuation lines.
				comment = strings.TrimSpace(c)
				rest = ""
			}
			logical.WriteString(rest)
			open = true
		case open:
			appendContinuation(&logical, trimmed)
		case keyStart.MatchString(trimmed):
			// an entry printed without an index (e.g. a single pool line)
			index, flags, open = -1, "", true
			logical.WriteString(trimmed)
		}
	}
	flush()
	return items
}

// maxIndexIndent is the most leading whitespace before an item's index; RouterOS right-aligns the
// index in a narrow column, while continuation lines are indented further (5 or more spaces), even
// when they begin with the digits of a wrapped grouped number.
const maxIndexIndent = 3

// startsItem reports whether line is the first line of an item: a number at the left margin. Any
// such line starts an item, whatever follows the index (pairs, flag letters, a `;;;` comment), so
// that an item is never glued onto the one before it.
func startsItem(line string) bool {
	if len(line)-len(strings.TrimLeft(line, " \t")) > maxIndexIndent {
		return false
	}
	return itemStart.MatchString(line)
}

// logicalLine collects the physical lines of one item and tracks whether its text ends inside a
// quoted string, without rescanning what it already holds.
type logicalLine struct {
	b       strings.Builder
	inQuote bool
	escaped bool // the last byte was a backslash inside quotes
}

func (l *logicalLine) WriteString(s string) {
	for i := 0; i < len(s); i++ {
		switch {
		case l.escaped:
			l.escaped = false
		case s[i] == '\\' && l.inQuote:
			l.escaped = true
		case s[i] == '"':
			l.inQuote = !l.inQuote
		}
	}
	l.b.WriteString(s)
}

func (l *logicalLine) Len() int       { return l.b.Len() }
func (l *logicalLine) String() string { return l.b.String() }
func (l *logicalLine) Reset()         { *l = logicalLine{} }

// appendContinuation joins a continuation line onto the logical line. A line that starts a new
// key=value pair is a word boundary; anything else is the rest of a value that was wrapped in the
// middle of a token, so it is joined without a space. An open quote always means a mid-value wrap.
func appendContinuation(l *logicalLine, cont string) {
	if l.Len() > 0 && !l.inQuote && keyStart.MatchString(cont) {
		l.WriteString(" ")
	}
	l.WriteString(cont)
}

// buildItem splits a logical line into key=value pairs. Tokens that do not start a pair belong to
// the previous value: digit groups are concatenated (53 687 091 200), other words are kept with a
// single space (RouterOS prints some multi-word values unquoted, e.g. `type=.img file`).
func buildItem(index int, flags, logical string) Item {
	it := Item{Index: index, Flags: flags, Fields: map[string]string{}}
	var cur string
	for _, tok := range tokenize(logical) {
		if keyStart.MatchString(tok) {
			eq := strings.IndexByte(tok, '=')
			cur = tok[:eq]
			if _, seen := it.Fields[cur]; !seen {
				it.Order = append(it.Order, cur)
			}
			it.Fields[cur] = unquote(tok[eq+1:])
			continue
		}
		if cur == "" {
			continue
		}
		prev := it.Fields[cur]
		word := unquote(tok)
		if allDigit.MatchString(prev) && allDigit.MatchString(word) {
			it.Fields[cur] = prev + word
		} else if prev == "" {
			it.Fields[cur] = word
		} else {
			it.Fields[cur] = prev + " " + word
		}
	}
	return it
}

// tokenize splits on spaces outside double quotes.
func tokenize(s string) []string {
	var (
		toks []string
		b    strings.Builder
		in   bool
	)
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '\\' && in && i+1 < len(s):
			b.WriteByte(c)
			b.WriteByte(s[i+1])
			i++
		case c == '"':
			in = !in
			b.WriteByte(c)
		case (c == ' ' || c == '\t') && !in:
			if b.Len() > 0 {
				toks = append(toks, b.String())
				b.Reset()
			}
		default:
			b.WriteByte(c)
		}
	}
	if b.Len() > 0 {
		toks = append(toks, b.String())
	}
	return toks
}

// unquote removes the surrounding quotes of a RouterOS string and its backslash escapes.
func unquote(v string) string {
	if len(v) < 2 || v[0] != '"' || v[len(v)-1] != '"' {
		return v
	}
	inner := v[1 : len(v)-1]
	if !strings.Contains(inner, `\`) {
		return inner
	}
	var b strings.Builder
	for i := 0; i < len(inner); i++ {
		if inner[i] == '\\' && i+1 < len(inner) {
			i++
		}
		b.WriteByte(inner[i])
	}
	return b.String()
}

func splitLines(s string) []string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	s = strings.ReplaceAll(s, "\r", "\n")
	return strings.Split(s, "\n")
}

func atoiSafe(s string) int {
	n := 0
	for _, c := range s {
		if n > 1<<30 {
			return n
		}
		n = n*10 + int(c-'0')
	}
	return n
}
