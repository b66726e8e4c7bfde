// Package vm runs the tests that need the kernel's NVMe/TCP (test/vm/guest, test/vm/guestsanity)
// in the qemu guest of hack/vm.sh and asserts their results; the guest's console is printed when
// something fails. It needs root on a Debian host (hack/vm.sh installs qemu and fetches the kernel).
package vm

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// suite is one guest test binary run.
type suite struct {
	name, binary string
	args         []string
	want         []string // top-level tests that must pass
}

var suites = []suite{
	{"node", "guest.test", []string{"-test.timeout=40m"}, []string{
		"TestStageWriteUnstageRestage", "TestExt4OnlineExpansion", "TestRawBlockVolume",
		"TestEightVolumesConnectOrder", "TestUnreadableDeviceIsNeverFormatted",
		"TestTargetOutageReconnectForever", "TestTargetOutageFiniteCtrlLossTmo", "TestSimulatorExportFollowsDiskTable", "TestBinaryWithNVMeBackend"}},
	{"sanity-mount", "guestsanity.test", []string{"-test.run=^TestSanityMount$", "-test.timeout=40m"}, []string{"TestSanityMount"}},
	{"sanity-block", "guestsanity.test", []string{"-test.run=^TestSanityBlock$", "-test.timeout=40m"}, []string{"TestSanityBlock"}},
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "hack", "vm.sh")); err != nil {
		t.Fatalf("not in the repository: %v", err)
	}
	return root
}

// buildGuestBinaries compiles the guest tests statically (no cgo: the guest has only the libraries
// of the tools hack/vm.sh copies) into dir.
func buildGuestBinaries(t *testing.T, root, dir string) {
	t.Helper()
	// One go command for the tests (it builds them in parallel and names them after their
	// packages), one for the rds-csi binary the guest tests run.
	for _, args := range [][]string{
		{"test", "-c", "-tags", "vmguest", "-o", dir + "/", "./test/vm/guest", "./test/vm/guestsanity"},
		{"build", "-o", filepath.Join(dir, "rds-csi"), "./cmd/rds-csi"},
	} {
		cmd := exec.Command("go", args...)
		cmd.Dir = root
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
	}
}

// runScript is what the guest runs: each suite with its output and exit status in /share/out
// and a summary on the console.
func runScript() string {
	var b strings.Builder
	b.WriteString(`set -u
mkdir -p /data/bin /share/out
cp /share/bin/* /data/bin/
cd /data
export RDS_CSI_VM_DRIVER=/data/bin/rds-csi
suite() {
	name=$1; shift
	start=$(cut -d. -f1 /proc/uptime)
	echo "rds-csi-vm: suite $name starts"
	"$@" >/share/out/$name.log 2>&1
	rc=$?
	echo $rc >/share/out/$name.rc
	grep -E '^(--- |=== RUN|ok|FAIL|PASS)' /share/out/$name.log | grep -v '=== RUN' | tail -n 60
	echo "rds-csi-vm: suite $name exit $rc after $(( $(cut -d. -f1 /proc/uptime) - start ))s"
}
`)
	for _, s := range suites {
		fmt.Fprintf(&b, "suite %s /data/bin/%s -test.v %s\n", s.name, s.binary, strings.Join(s.args, " "))
	}
	b.WriteString("dmesg >/share/out/dmesg.log\n")
	return b.String()
}

func TestGuest(t *testing.T) {
	if testing.Short() {
		t.Skip("boots a qemu guest (minutes under TCG); skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Fatal("the VM tests need root (hack/vm.sh installs qemu and fetches the kernel; the guest runs as root): run as root (CI does)")
	}
	root := repoRoot(t)
	share := t.TempDir()
	if err := os.MkdirAll(filepath.Join(share, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	began := time.Now()
	// The guest (cached after the first time) and the test binaries are built side by side.
	build := exec.Command(filepath.Join(root, "hack", "vm.sh"), "build")
	var buildOut bytes.Buffer
	build.Stdout, build.Stderr = &buildOut, &buildOut
	if err := build.Start(); err != nil {
		t.Fatal(err)
	}
	buildGuestBinaries(t, root, filepath.Join(share, "bin"))
	if err := build.Wait(); err != nil {
		t.Fatalf("hack/vm.sh build: %v\n%s", err, buildOut.String())
	}
	t.Logf("guest and test binaries built in %v", time.Since(began).Round(time.Second))
	if err := os.WriteFile(filepath.Join(share, "run.sh"), []byte(runScript()), 0o755); err != nil {
		t.Fatal(err)
	}

	timeout := 60 * time.Minute
	if d, ok := t.Deadline(); ok {
		timeout = time.Until(d) - time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	console, err := os.Create(filepath.Join(share, "console.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer console.Close()
	cmd := exec.CommandContext(ctx, filepath.Join(root, "hack", "vm.sh"), "run", share)
	cmd.Env = append(os.Environ(), fmt.Sprintf("VM_TIMEOUT=%d", int(timeout.Seconds())))
	cmd.Stdout, cmd.Stderr = console, console
	cmd.WaitDelay = 10 * time.Second
	booted := time.Now()
	runErr := cmd.Run()
	t.Logf("guest ran for %v", time.Since(booted).Round(time.Second))
	logConsole := func() {
		b, _ := os.ReadFile(console.Name())
		t.Logf("guest console:\n%s", b)
		if k, err := os.ReadFile(filepath.Join(share, "out", "dmesg.log")); err == nil {
			lines := strings.Split(strings.TrimRight(string(k), "\n"), "\n")
			t.Logf("guest kernel log (last 150 lines):\n%s", strings.Join(lines[max(len(lines)-150, 0):], "\n"))
		}
	}
	if runErr != nil {
		logConsole()
		t.Fatalf("the guest did not end by itself: %v", runErr)
	}
	failed := false
	for _, s := range suites {
		t.Run(s.name, func(t *testing.T) {
			log, _ := os.ReadFile(filepath.Join(share, "out", s.name+".log"))
			rc, err := os.ReadFile(filepath.Join(share, "out", s.name+".rc"))
			defer func() {
				if t.Failed() {
					failed = true
					t.Logf("output of %s in the guest:\n%s", s.name, log)
				}
			}()
			if err != nil {
				t.Fatalf("the guest did not run suite %s: %v", s.name, err)
			}
			if code := strings.TrimSpace(string(rc)); code != "0" {
				t.Errorf("suite %s failed in the guest (exit %s)", s.name, code)
			}
			if m := regexp.MustCompile(`(?m)^\s*--- SKIP: .*$`).FindAll(log, -1); len(m) > 0 {
				t.Errorf("suite %s skipped tests in the guest: %s", s.name, bytes.Join(m, []byte("; ")))
			}
			for _, name := range s.want {
				if !regexp.MustCompile(`(?m)^--- PASS: ` + name + ` \(`).Match(log) {
					t.Errorf("%s did not pass in the guest", name)
				}
			}
			for _, m := range regexp.MustCompile(`(?m)^\s*--- PASS: .*$`).FindAll(log, -1) {
				t.Log(strings.TrimSpace(string(m)))
			}
		})
	}
	if failed {
		logConsole()
	}
}
