package rdssim

import (
	"fmt"
	"strings"
	"testing"

	"golang.org/x/crypto/ssh"
)

func TestWrapWidths(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	slot := "pvc-ccdecfad-a8bf-572e-9120-464c4d99f12f"
	path := "/storage-pool/kubernetes-volumes/" + slot + ".img"
	mustOK(t, c, addCmd(slot, path, "50G"))
	want := map[string]string{
		"type": "file", "slot": slot, "slot-default": "", "parent": "", "fs": "-", "model": path,
		"size": "53 687 091 200", "nvme-tcp-export": "yes", "nvme-tcp-server-port": "4420",
		"nvme-tcp-server-nqn": "nqn.2000-02.com.mikrotik:" + slot, "nvme-tcp-server-allow-host-name": "",
		"file-path": path, "file-size": "50.0GiB", "file-offset": "0", "swap": "no",
	}
	for _, width := range []int{0, 20, 30, 40, 45, 60, 80, 132} {
		t.Run(fmt.Sprintf("width%d", width), func(t *testing.T) {
			ts.SetWrapWidth(width)
			out := mustOK(t, c, "/disk print detail where slot="+slot)
			items := parseDetail(t, out)
			if len(items) != 1 {
				t.Fatalf("items %v\n%s", items, out)
			}
			for k, v := range want {
				if got, ok := items[0][k]; !ok || got != v {
					t.Errorf("%s=%q, want %q\n%s", k, got, v, out)
				}
			}
			if len(items[0]) != 25 {
				t.Errorf("%d fields: %v", len(items[0]), items[0])
			}
			for _, l := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if width >= 40 && !strings.HasPrefix(l, "Flags:") && len(l) > width {
					t.Errorf("line longer than %d: %q", width, l)
				}
			}
			if width == 0 && strings.Count(out, "\n") != 3 {
				t.Errorf("width 0 must not wrap:\n%s", out)
			}
		})
	}
}

func TestCRLF(t *testing.T) {
	ts := StartForTest(t, func(c *Config) { c.CRLF = true })
	c := dial(t, ts)
	mustOK(t, c, addCmd("pvc-1", "/storage-pool/pvc-1.img", "1G"))
	for _, cmd := range []string{"/disk print detail", "/file print detail", "/system resource print",
		"/disk monitor-traffic pvc-1 once", "/foo"} {
		out := run(t, c, cmd).Stdout
		if !strings.HasSuffix(out, "\r\n") || strings.Count(out, "\n") != strings.Count(out, "\r\n") {
			t.Errorf("%s: not CRLF: %q", cmd, out)
		}
	}
	items := parseDetail(t, run(t, c, "/disk print detail where slot=pvc-1").Stdout)
	if len(items) != 1 || items[0]["file-size"] != "1024.0MiB" {
		t.Fatalf("items %v", items)
	}
	ts.SetCRLF(false)
	if out := run(t, c, "/disk print detail").Stdout; strings.Contains(out, "\r") {
		t.Fatalf("CR after SetCRLF(false): %q", out)
	}
}

func TestFailureModes(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	cmds := map[string]string{
		"/disk remove nope":               "failure: no such item\n",
		"/foo":                            "bad command name foo (line 1 column 2)\n",
		"/disk print where slot=a;reboot": "syntax error (line 1 column 25)\n",
		"/disk add foo=bar":               "expected end of command (line 1 column 11)\n",
	}
	for _, tc := range []struct {
		name       string
		exitStatus bool
		stream     string
		wantExit   int
	}{
		{"stdout exit 0", false, "stdout", 0},
		{"stderr exit 0", false, "stderr", 0},
		{"stdout exit 1", true, "stdout", 1},
		{"stderr exit 1", true, "stderr", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := ts.SetFailureMode(tc.exitStatus, tc.stream); err != nil {
				t.Fatal(err)
			}
			for cmd, want := range cmds {
				r := run(t, c, cmd)
				got, other := r.Stdout, r.Stderr
				if tc.stream == "stderr" {
					got, other = other, got
				}
				if got != want || other != "" || r.ExitStatus != tc.wantExit {
					t.Errorf("%s: %+v, want %q on %s exit %d", cmd, r, want, tc.stream, tc.wantExit)
				}
			}
			if r := run(t, c, "/system resource print"); r.ExitStatus != 0 || r.Stderr != "" {
				t.Errorf("success affected: %+v", r)
			}
		})
	}
	if err := ts.SetFailureMode(false, "stdpipe"); err == nil {
		t.Fatal("bad stream accepted")
	}
}

func TestAuth(t *testing.T) {
	ts := StartForTest(t, func(c *Config) { c.User = "csi" })
	other, err := GenerateSigner()
	if err != nil {
		t.Fatal(err)
	}
	dialWith := func(user string, key ssh.Signer) error {
		cfg := ts.ClientConfig()
		cfg.User, cfg.Auth = user, []ssh.AuthMethod{ssh.PublicKeys(key)}
		c, err := ssh.Dial("tcp", ts.Addr(), cfg)
		if err == nil {
			c.Close()
		}
		return err
	}
	for _, tc := range []struct {
		name   string
		user   string
		key    ssh.Signer
		reject bool
		ok     bool
	}{
		{"known key", "csi", ts.Signer, false, true},
		{"unknown key", "csi", other, false, false},
		{"wrong user", "admin", ts.Signer, false, false},
		{"auth fault", "csi", ts.Signer, true, false},
		{"fault cleared", "csi", ts.Signer, false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ts.SetRejectAuth(tc.reject)
			err := dialWith(tc.user, tc.key)
			if (err == nil) != tc.ok {
				t.Fatalf("dial: %v, want ok=%v", err, tc.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "unable to authenticate") {
				t.Fatalf("unexpected error %v", err)
			}
		})
	}
	// A client that pins another host key refuses the server.
	cfg := ts.ClientConfig()
	cfg.HostKeyCallback = ssh.FixedHostKey(other.PublicKey())
	if _, err := ssh.Dial("tcp", ts.Addr(), cfg); err == nil {
		t.Fatal("wrong host key accepted")
	}
}

func TestSessionRules(t *testing.T) {
	ts := StartForTest(t)
	c := dial(t, ts)
	// No shell and no PTY; keepalive@openssh.com is rejected like on RouterOS.
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Shell(); err == nil {
		t.Error("shell accepted")
	}
	s.Close()
	ok, _, err := c.SendRequest("keepalive@openssh.com", true, nil)
	if err != nil || ok {
		t.Errorf("keepalive: ok=%v err=%v", ok, err)
	}
	if out := mustOK(t, c, "/system resource print"); !strings.Contains(out, "uptime: ") ||
		!strings.Contains(out, "  version: 7.") {
		t.Errorf("resource: %q", out)
	}
	if out := mustOK(t, c, ""); out != "" {
		t.Errorf("empty command printed %q", out)
	}
	if st := ts.Stats(); st.Commands < 2 || st.ActiveConnections != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestMonitorAndDirectories(t *testing.T) {
	ts := StartForTest(t)
	ctx := testCtx(t)
	for _, cmd := range []string{addCmd("pvc-1", "/storage-pool/k8s/pvc-1.img", "1G")} {
		if r, err := ts.Exec(ctx, cmd); err != nil || r.Stdout != "" {
			t.Fatalf("%s: %+v %v", cmd, r, err)
		}
	}
	r, err := ts.Exec(ctx, "/disk monitor-traffic pvc-1 once")
	if err != nil || !strings.Contains(r.Stdout, "   read-ops-per-second: 0\n") ||
		!strings.Contains(r.Stdout, "          write-bytes: ") {
		t.Fatalf("monitor: %+v %v", r, err)
	}
	if r, _ := ts.Exec(ctx, "/disk monitor-traffic nope once"); r.Stdout != "failure: no such item\n" {
		t.Fatalf("monitor unknown: %+v", r)
	}

	// Without "once" samples keep coming until the session is closed.
	c := dial(t, ts)
	s, err := c.NewSession()
	if err != nil {
		t.Fatal(err)
	}
	out, err := s.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start("/disk monitor-traffic pvc-1"); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	if n, err := out.Read(buf); err != nil || !strings.Contains(string(buf[:n]), "slot: pvc-1") {
		t.Fatalf("first sample %q %v", buf[:n], err)
	}
	_ = s.Close()

	items := parseDetail(t, mustOK(t, c, "/file print detail"))
	if len(items) != 3 || items[1]["name"] != "storage-pool/k8s" || items[1]["type"] != "directory" {
		t.Fatalf("files %v", items)
	}
	mustOK(t, c, "/disk remove pvc-1")
	if r := run(t, c, "/file remove storage-pool/k8s"); r.Stdout != "failure: directory is not empty\n" {
		t.Fatalf("non-empty dir: %+v", r)
	}
	mustOK(t, c, `/file remove [find name~"^storage-pool/k8s"]`)
	if items := parseDetail(t, mustOK(t, c, "/file print detail")); len(items) != 1 {
		t.Fatalf("files %v", items)
	}
}
