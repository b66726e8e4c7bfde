package rdssim

import (
	"context"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

var (
	testKeyStart = regexp.MustCompile(`^[a-z][a-z0-9-]*=`)
	testItemLine = regexp.MustCompile(`^ {0,4}(\d+) +(.*)$`)
	testKeyAt    = regexp.MustCompile(`(?:^| )([a-z][a-z0-9-]*)=`)
)

// rejoin turns `print detail` output back into one line per item, the way a
// client parser does: a continuation line (5-space indent) is appended to
// the previous one with a space if it starts with key=, without otherwise.
func rejoin(t testing.TB, out string) []string {
	t.Helper()
	var items []string
	for _, l := range strings.Split(strings.ReplaceAll(out, "\r\n", "\n"), "\n") {
		switch {
		case strings.HasPrefix(l, "Flags:") || l == "":
		case strings.HasPrefix(l, "     "):
			if len(items) == 0 {
				t.Fatalf("continuation line before any item: %q", l)
			}
			rest := l[5:]
			if testKeyStart.MatchString(rest) {
				items[len(items)-1] += " " + rest
			} else {
				items[len(items)-1] += rest
			}
		default:
			m := testItemLine.FindStringSubmatch(l)
			if m == nil {
				t.Fatalf("unexpected line %q in:\n%s", l, out)
			}
			items = append(items, m[2])
		}
	}
	return items
}

// parseKV splits a joined item line into its key=value pairs; quoted values
// are unquoted. Values may contain spaces (size=53 687 091 200).
func parseKV(line string) map[string]string {
	kv := map[string]string{}
	locs := testKeyAt.FindAllStringSubmatchIndex(line, -1)
	for i, loc := range locs {
		key := line[loc[2]:loc[3]]
		end := len(line)
		if i+1 < len(locs) {
			end = locs[i+1][0]
		}
		v := line[loc[1]:end]
		if len(v) >= 2 && v[0] == '"' && v[len(v)-1] == '"' {
			v = strings.NewReplacer(`\"`, `"`, `\\`, `\`).Replace(v[1 : len(v)-1])
		}
		kv[key] = v
	}
	return kv
}

// parseDetail is rejoin + parseKV.
func parseDetail(t testing.TB, out string) []map[string]string {
	t.Helper()
	var res []map[string]string
	for _, l := range rejoin(t, out) {
		res = append(res, parseKV(l))
	}
	return res
}

func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// dial opens a connection closed at the end of the test.
func dial(t testing.TB, ts *TestServer) *ssh.Client {
	t.Helper()
	c, err := ts.Dial()
	if err != nil {
		t.Fatalf("dial: %v", err)
	}
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// run runs cmd on c and fails the test on transport errors.
func run(t testing.TB, c *ssh.Client, cmd string) Result {
	t.Helper()
	r, err := RunOn(c, cmd)
	if err != nil {
		t.Fatalf("%s: %v", cmd, err)
	}
	return r
}

// mustOK runs cmd and fails the test if it printed a failure.
func mustOK(t testing.TB, c *ssh.Client, cmd string) string {
	t.Helper()
	r := run(t, c, cmd)
	if r.Stderr != "" || r.ExitStatus != 0 || isFailure(r.Stdout) {
		t.Fatalf("%s: stdout %q stderr %q exit %d", cmd, r.Stdout, r.Stderr, r.ExitStatus)
	}
	return r.Stdout
}

func isFailure(out string) bool {
	for _, p := range []string{"failure:", "bad command name", "syntax error", "expected end of command"} {
		if strings.HasPrefix(out, p) {
			return true
		}
	}
	return false
}

// eventually polls cond until it holds or the test context ends.
func eventually(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

func addCmd(slot, path, size string) string {
	return "/disk add type=file file-path=" + path + " file-size=" + size + " slot=" + slot +
		" nvme-tcp-export=yes nvme-tcp-server-port=4420 nvme-tcp-server-nqn=nqn.2000-02.com.mikrotik:" + slot
}
