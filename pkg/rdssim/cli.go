package rdssim

import (
	"fmt"
	"regexp"
	"strings"
)

// cliError is a command failure; its text is printed verbatim.
type cliError struct{ text string }

func (e *cliError) Error() string { return e.text }

func failure(msg string) error { return &cliError{"failure: " + msg} }

func syntaxErr(col int) error {
	return &cliError{fmt.Sprintf("syntax error (line 1 column %d)", col)}
}

func endErr(col int) error {
	return &cliError{fmt.Sprintf("expected end of command (line 1 column %d)", col)}
}

func badCmd(name string, col int) error {
	return &cliError{fmt.Sprintf("bad command name %s (line 1 column %d)", name, col)}
}

var (
	errNoSuchItem   = failure("no such item")
	errInvalidParam = failure("invalid parameter")
	errNoSpace      = failure("not enough space")
)

type tokKind int

const (
	tWord tokKind = iota
	tString
	tEq
	tTilde
	tLBrack
	tRBrack
)

// punct maps the one-character tokens to their kind (tWord, the zero value, for any other byte).
var punct = [256]tokKind{'=': tEq, '~': tTilde, '[': tLBrack, ']': tRBrack}

type token struct {
	kind tokKind
	text string
	col  int  // 1-based column of the first character
	adj  bool // no whitespace between this token and the previous one
}

// bareOK is the allow-list for characters of unquoted words. Everything else
// (; $ ` \ ( ) { } | & ! < > # ? ' newlines, non-ASCII ...) is a syntax error:
// this is a parser, nothing is ever evaluated.
func bareOK(c byte) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		return true
	}
	return strings.IndexByte("-_./:,+*^@%", c) >= 0
}

// tokenize splits a command line. Quoted strings accept the escapes \" \\ \$
// \? \_ (space) \n \r \t; other backslash pairs are kept as they are (handy
// for regular expressions). Raw newlines and an unescaped $ (RouterOS would
// substitute a variable) are syntax errors even inside quotes.
func tokenize(s string) ([]token, error) {
	var toks []token
	adj := false
	for i := 0; i < len(s); {
		c := s[i]
		col := i + 1
		switch {
		case c == ' ' || c == '\t':
			adj = false
			i++
			continue
		case punct[c] != 0:
			toks = append(toks, token{punct[c], string(c), col, adj})
			i++
		case c == '"':
			var b strings.Builder
			j := i + 1
			for ; ; j++ {
				if j >= len(s) {
					return nil, syntaxErr(j + 1)
				}
				d := s[j]
				if d == '"' {
					break
				}
				if d == '\n' || d == '\r' || d == '$' {
					return nil, syntaxErr(j + 1)
				}
				if d == '\\' {
					if j+1 >= len(s) {
						return nil, syntaxErr(j + 2)
					}
					j++
					switch e := s[j]; e {
					case '"', '\\', '$', '?':
						b.WriteByte(e)
					case '_':
						b.WriteByte(' ')
					case 'n':
						b.WriteByte('\n')
					case 'r':
						b.WriteByte('\r')
					case 't':
						b.WriteByte('\t')
					case '\n', '\r':
						return nil, syntaxErr(j + 1)
					default:
						b.WriteByte('\\')
						b.WriteByte(e)
					}
					continue
				}
				b.WriteByte(d)
			}
			toks = append(toks, token{tString, b.String(), col, adj})
			i = j + 1
		case bareOK(c):
			j := i
			for j < len(s) && bareOK(s[j]) {
				j++
			}
			toks = append(toks, token{tWord, s[i:j], col, adj})
			i = j
		default:
			return nil, syntaxErr(col)
		}
		adj = true
	}
	return toks, nil
}

type cmdKind int

const (
	cmdNone cmdKind = iota
	cmdDiskAdd
	cmdDiskSet
	cmdDiskRemove
	cmdDiskPrint
	cmdDiskMonitor
	cmdFilePrint
	cmdFileRemove
	cmdResourcePrint
	cmdClockPrint
)

// cond is one `key=value` or `key~regex` condition.
type cond struct {
	key string
	op  byte // '=' or '~'
	val string
	re  *regexp.Regexp
}

func (c cond) match(it item) bool {
	v, ok := it.get(c.key)
	if !ok {
		return false
	}
	if c.op == '~' {
		return c.re.MatchString(v)
	}
	return v == c.val
}

// selector is either `[find conds...]` or a bare item name.
type selector struct {
	find  bool
	conds []cond
	name  string
}

type arg struct {
	val string
	sel *selector // copy-from=[find ...]
}

type command struct {
	kind   cmdKind
	args   map[string]arg
	target *selector
	where  []cond
	flags  map[string]bool
}

type cmdSpec struct {
	kind      cmdKind
	params    []string
	selParams []string // params whose value may be [find ...]
	flags     []string
	target    bool
	where     bool
}

var exportParams = []string{"nvme-tcp-export", "nvme-tcp-server-port", "nvme-tcp-server-nqn",
	"nvme-tcp-server-allow-host-name"}

// menus maps a menu path to its commands.
var menus = map[string]map[string]cmdSpec{
	"disk": {
		"add": {kind: cmdDiskAdd, params: append([]string{"type", "file-path", "file-size", "slot",
			"copy-from"}, exportParams...), selParams: []string{"copy-from"}},
		"set":             {kind: cmdDiskSet, params: append([]string{"file-size"}, exportParams...), target: true},
		"remove":          {kind: cmdDiskRemove, target: true},
		"print":           {kind: cmdDiskPrint, flags: []string{"detail", "without-paging"}, where: true},
		"monitor-traffic": {kind: cmdDiskMonitor, flags: []string{"once"}, target: true},
	},
	"file": {
		"print":  {kind: cmdFilePrint, flags: []string{"detail", "without-paging"}, where: true},
		"remove": {kind: cmdFileRemove, target: true},
	},
	"system":          {},
	"system/resource": {"print": {kind: cmdResourcePrint, flags: []string{"without-paging"}}},
	"system/clock":    {"print": {kind: cmdClockPrint, flags: []string{"without-paging"}}},
}

// parse turns a command line into a command. An empty line or a bare menu
// path parses to cmdNone.
func parse(line string) (*command, error) {
	toks, err := tokenize(line)
	if err != nil {
		return nil, err
	}
	if len(toks) == 0 {
		return &command{kind: cmdNone}, nil
	}
	// Menu path: "/disk add", "/disk/add", "disk add", "/system resource print".
	menu := ""
	var spec *cmdSpec
	i := 0
	for spec == nil && i < len(toks) {
		t := toks[i]
		if t.kind != tWord || (i > 0 && t.adj) {
			break
		}
		if i > 0 && strings.HasPrefix(t.text, "/") {
			break
		}
		col := t.col
		segs := strings.Split(t.text, "/")
		for k, seg := range segs {
			if k > 0 {
				col += len(segs[k-1]) + 1
			}
			if seg == "" {
				if k == 0 || k == len(segs)-1 {
					continue
				}
				return nil, syntaxErr(col)
			}
			if spec != nil {
				return nil, badCmd(seg, col)
			}
			sub := seg
			if menu != "" {
				sub = menu + "/" + seg
			}
			if _, ok := menus[sub]; ok {
				menu = sub
				continue
			}
			if cs, ok := menus[menu][seg]; ok {
				spec = &cs
				continue
			}
			return nil, badCmd(seg, col)
		}
		i++
	}
	if spec == nil {
		if i < len(toks) {
			return nil, syntaxErr(toks[i].col)
		}
		return &command{kind: cmdNone}, nil
	}
	return parseArgs(spec, toks[i:], len(line)+1)
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func parseArgs(spec *cmdSpec, toks []token, endCol int) (*command, error) {
	c := &command{kind: spec.kind, args: map[string]arg{}, flags: map[string]bool{}}
	p := &tokParser{toks: toks, endCol: endCol}
	for !p.done() {
		t := p.peek()
		if t.adj {
			return nil, syntaxErr(t.col)
		}
		switch {
		case t.kind == tLBrack && spec.target && c.target == nil:
			sel, err := p.find()
			if err != nil {
				return nil, err
			}
			c.target = sel
		case t.kind == tWord && p.nextIs(tEq):
			if !contains(spec.params, t.text) {
				return nil, endErr(t.col)
			}
			p.pos += 2
			a, err := p.value(contains(spec.selParams, t.text))
			if err != nil {
				return nil, err
			}
			c.args[t.text] = a
		case t.kind == tWord && t.text == "where" && spec.where && c.where == nil:
			p.pos++
			conds, err := p.conds(tRBrack)
			if err != nil {
				return nil, err
			}
			if !p.done() {
				return nil, syntaxErr(p.peek().col)
			}
			c.where = conds
		case t.kind == tWord && contains(spec.flags, t.text):
			c.flags[t.text] = true
			p.pos++
		case (t.kind == tWord || t.kind == tString) && spec.target && c.target == nil:
			c.target = &selector{name: t.text}
			p.pos++
		case t.kind == tWord || t.kind == tString:
			return nil, endErr(t.col)
		default:
			return nil, syntaxErr(t.col)
		}
	}
	if spec.target && c.target == nil {
		return nil, syntaxErr(endCol)
	}
	return c, nil
}

type tokParser struct {
	toks   []token
	pos    int
	endCol int
}

func (p *tokParser) done() bool  { return p.pos >= len(p.toks) }
func (p *tokParser) peek() token { return p.toks[p.pos] }
func (p *tokParser) colNow() int {
	if p.done() {
		return p.endCol
	}
	return p.peek().col
}

// nextIs reports whether the token after the current one has kind k and is
// glued to it.
func (p *tokParser) nextIs(k tokKind) bool {
	return p.pos+1 < len(p.toks) && p.toks[p.pos+1].kind == k && p.toks[p.pos+1].adj
}

// value reads the value after "=": a glued word, string or (if allowed)
// [find ...]; nothing glued means the empty value.
func (p *tokParser) value(allowFind bool) (arg, error) {
	if p.done() || !p.peek().adj {
		return arg{}, nil
	}
	t := p.peek()
	switch t.kind {
	case tWord, tString:
		p.pos++
		if !p.done() && p.peek().adj && p.peek().kind != tRBrack {
			return arg{}, syntaxErr(p.peek().col)
		}
		return arg{val: t.text}, nil
	case tLBrack:
		if allowFind {
			sel, err := p.find()
			return arg{sel: sel}, err
		}
	}
	return arg{}, syntaxErr(t.col)
}

// find parses `[find [where] conds...]`.
func (p *tokParser) find() (*selector, error) {
	p.pos++ // [
	if p.done() || p.peek().kind != tWord || p.peek().text != "find" {
		return nil, syntaxErr(p.colNow())
	}
	p.pos++
	if !p.done() && p.peek().kind == tWord && p.peek().text == "where" && !p.nextIs(tEq) && !p.nextIs(tTilde) {
		p.pos++
	}
	conds, err := p.conds(tRBrack)
	if err != nil {
		return nil, err
	}
	if p.done() || p.peek().kind != tRBrack {
		return nil, syntaxErr(p.colNow())
	}
	p.pos++
	return &selector{find: true, conds: conds}, nil
}

// conds reads `key=value` / `key~"re"` conditions (optionally joined by
// "and") until the end or a token of kind stop.
func (p *tokParser) conds(stop tokKind) ([]cond, error) {
	conds := []cond{}
	for !p.done() && p.peek().kind != stop {
		t := p.peek()
		if t.kind == tWord && t.text == "and" && len(conds) > 0 {
			p.pos++
			continue
		}
		if t.kind != tWord || !(p.nextIs(tEq) || p.nextIs(tTilde)) {
			return nil, syntaxErr(t.col)
		}
		op := p.toks[p.pos+1].text[0]
		p.pos += 2
		a, err := p.value(false)
		if err != nil {
			return nil, err
		}
		c := cond{key: t.text, op: op, val: a.val}
		if op == '~' {
			if c.re, err = regexp.Compile(a.val); err != nil {
				return nil, errInvalidParam
			}
		}
		conds = append(conds, c)
	}
	return conds, nil
}
