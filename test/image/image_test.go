// Package image checks the rds-csi container image that `make image` builds (hack/image.sh) for
// real, without a container engine: the image is pulled from the loopback registry with crane, its
// filesystem is extracted, and the binary and every tool the node service runs are run inside it
// with chroot. Needs root (debootstrap on the first run, chroot); skipped otherwise and in -short
// mode (the first build takes minutes).
package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"debug/elf"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

const (
	entrypoint = "/usr/local/bin/rds-csi"
	// The controller's user (deploy/helm/rds-csi: controller.podSecurityContext.runAsUser).
	controllerUser = "65532:65532"
)

// imageConfig is the part of the OCI image config the test reads.
type imageConfig struct {
	Architecture string `json:"architecture"`
	OS           string `json:"os"`
	Config       struct {
		User       string            `json:"User"`
		Entrypoint []string          `json:"Entrypoint"`
		Cmd        []string          `json:"Cmd"`
		Env        []string          `json:"Env"`
		Labels     map[string]string `json:"Labels"`
	} `json:"config"`
}

type built struct {
	root   string // the repository
	ref    string // 127.0.0.1:PORT/rds-csi:TAG
	crane  string
	dir    string // hack/image.sh --print-dir
	config imageConfig
	fs     string // the image's filesystem, extracted
	env    []string
}

func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	return root
}

func run(t *testing.T, dir string, name string, args ...string) []byte {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s%s", name, strings.Join(args, " "), err, out, stderr.Bytes())
	}
	return out
}

// buildImage runs hack/image.sh (which builds what is missing, always rebuilds the binary layer,
// and pushes), then pulls the image back from the registry: its config, and its filesystem
// flattened by `crane export` and extracted into a temporary directory.
func buildImage(t *testing.T) *built {
	t.Helper()
	if testing.Short() {
		t.Skip("builds the image (minutes on the first run): skipped in -short mode")
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root: debootstrap builds the base, chroot runs the image's binaries")
	}
	b := &built{root: repoRoot(t)}
	script := filepath.Join(b.root, "hack", "image.sh")
	start := time.Now()
	out := strings.TrimSpace(string(run(t, b.root, script)))
	t.Logf("hack/image.sh took %v", time.Since(start).Round(time.Second))
	b.ref = out[strings.LastIndexByte(out, '\n')+1:]
	if !strings.HasPrefix(b.ref, "127.0.0.1:") || !strings.Contains(b.ref, "/rds-csi:") {
		t.Fatalf("hack/image.sh printed %q, not an image reference on the loopback registry", out)
	}
	b.crane = strings.TrimSpace(string(run(t, b.root, script, "--print-crane")))
	b.dir = strings.TrimSpace(string(run(t, b.root, script, "--print-dir")))

	if err := json.Unmarshal(run(t, "", b.crane, "config", "--insecure", b.ref), &b.config); err != nil {
		t.Fatalf("image config: %v", err)
	}
	b.env = b.config.Config.Env

	b.fs = t.TempDir()
	export := exec.Command(b.crane, "export", "--insecure", b.ref, "-")
	untar := exec.Command("tar", "-x", "--numeric-owner", "-C", b.fs)
	pipe, err := export.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	untar.Stdin = pipe
	var exportErr, untarErr bytes.Buffer
	export.Stderr, untar.Stderr = &exportErr, &untarErr
	if err := untar.Start(); err != nil {
		t.Fatal(err)
	}
	if err := export.Run(); err != nil {
		t.Fatalf("crane export %s: %v\n%s", b.ref, err, exportErr.Bytes())
	}
	if err := untar.Wait(); err != nil {
		t.Fatalf("extracting %s: %v\n%s", b.ref, err, untarErr.Bytes())
	}
	return b
}

// chroot runs name inside the image's filesystem with the image's environment (PATH included), as
// userspec ("" for root), and returns its combined output and exit code. Like a container runtime
// (and the node plugin's host mounts), it gives the command /dev and /proc: in a mount namespace of
// its own, so nothing stays mounted when it ends.
func (b *built) chroot(t *testing.T, userspec string, name string, args ...string) (string, int) {
	t.Helper()
	argv := []string{"--mount", "--propagation", "private", "sh", "-c",
		`mount --rbind /dev "$0/dev" && mount -t proc proc "$0/proc" && exec chroot "$@"`, b.fs}
	if userspec != "" {
		argv = append(argv, "--userspec="+userspec)
	}
	argv = append(append(argv, b.fs, name), args...)
	cmd := exec.Command("unshare", argv...)
	cmd.Env = b.env
	out, err := cmd.CombinedOutput()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return string(out), ee.ExitCode()
		}
		t.Fatalf("chroot %s %s: %v", name, strings.Join(args, " "), err)
	}
	return string(out), 0
}

func TestImage(t *testing.T) {
	b := buildImage(t)

	t.Run("config", func(t *testing.T) {
		c := b.config
		if c.OS != "linux" || c.Architecture != "amd64" {
			t.Errorf("platform %s/%s, want linux/amd64", c.OS, c.Architecture)
		}
		if !slices.Equal(c.Config.Entrypoint, []string{entrypoint}) || len(c.Config.Cmd) != 0 {
			t.Errorf("entrypoint %q cmd %q, want [%s] and no cmd", c.Config.Entrypoint, c.Config.Cmd, entrypoint)
		}
		// One image for both containers: the chart sets the user per container (65532 for the
		// controller, root for the privileged node plugin), so the image must not pin root.
		if u := c.Config.User; u == "0" || u == "root" || strings.HasPrefix(u, "0:") || strings.HasPrefix(u, "root:") {
			t.Errorf("image user %q forces root", u)
		}
		path := ""
		for _, e := range c.Config.Env {
			if v, ok := strings.CutPrefix(e, "PATH="); ok {
				path = v
			}
		}
		for _, d := range []string{"/usr/local/bin", "/usr/sbin", "/sbin"} {
			if !slices.Contains(strings.Split(path, ":"), d) {
				t.Errorf("image PATH %q lacks %s (where the node's tools are)", path, d)
			}
		}
		if c.Config.Labels["org.opencontainers.image.version"] == "" || c.Config.Labels["org.opencontainers.image.revision"] == "" {
			t.Errorf("labels %v lack the version or the revision", c.Config.Labels)
		}
		var manifest struct {
			MediaType string `json:"mediaType"`
			Layers    []struct {
				MediaType string `json:"mediaType"`
			} `json:"layers"`
		}
		if err := json.Unmarshal(run(t, "", b.crane, "manifest", "--insecure", b.ref), &manifest); err != nil {
			t.Fatal(err)
		}
		if manifest.MediaType != "application/vnd.oci.image.manifest.v1+json" || len(manifest.Layers) != 2 {
			t.Errorf("manifest %+v: want an OCI manifest with 2 layers (Debian base, rds-csi)", manifest)
		}
	})

	t.Run("version", func(t *testing.T) {
		version := b.config.Config.Labels["org.opencontainers.image.version"]
		revision := b.config.Config.Labels["org.opencontainers.image.revision"]
		out, code := b.chroot(t, "", entrypoint, "--version")
		if code != 0 || strings.TrimSpace(out) != version {
			t.Errorf("rds-csi --version in the image: %q (exit %d), want the label's %q", out, code, version)
		}
		if version == "v0.1.0-dev" || !regexp.MustCompile(`^v\d+\.\d+\.\d+`).MatchString(version) {
			t.Errorf("version %q: not stamped from git", version)
		}
		// A commit without a tag prints a pseudo-version ending in the commit's 12-digit prefix.
		if pseudo := regexp.MustCompile(`-([0-9a-f]{12})(\+dirty)?$`).FindStringSubmatch(version); pseudo != nil &&
			!strings.HasPrefix(revision, pseudo[1]) {
			t.Errorf("version %q names commit %s, label revision %s", version, pseudo[1], revision)
		}
		// The commit is in the binary (go version -m reads it from the image's file).
		info := string(run(t, "", "go", "version", "-m", filepath.Join(b.fs, entrypoint)))
		if !strings.Contains(info, "vcs.revision="+revision+"\n") || !strings.Contains(info, "CGO_ENABLED=0") {
			t.Errorf("build info of the image's rds-csi lacks vcs.revision=%s or CGO_ENABLED=0:\n%s", revision, info)
		}
		// The image is of the commit checked out here.
		if _, err := os.Stat(filepath.Join(b.root, ".git")); err == nil {
			if head := strings.TrimSpace(string(run(t, b.root, "git", "rev-parse", "HEAD"))); head != revision {
				t.Errorf("image revision %s, checkout at %s", revision, head)
			}
		}
		// Static: no ELF interpreter, so the binary needs nothing from the base's libc.
		f, err := elf.Open(filepath.Join(b.fs, entrypoint))
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		for _, p := range f.Progs {
			if p.Type == elf.PT_INTERP {
				t.Errorf("rds-csi in the image is dynamically linked")
			}
		}
		// The controller runs as 65532: the binary must run as that user too.
		if out, code := b.chroot(t, controllerUser, entrypoint, "--version"); code != 0 || strings.TrimSpace(out) != version {
			t.Errorf("rds-csi --version as %s: %q (exit %d)", controllerUser, out, code)
		}
	})

	// Every tool the node service runs, through its PATH in the image: pkg/nvme (nvme, losetup for
	// the loop backend), pkg/driver (blkid) and k8s.io/mount-utils (mount, umount, blkid, fsck and
	// the fsck.ext4 it runs, mkfs.ext4, mkfs.xfs, resize2fs, xfs_growfs, blockdev).
	t.Run("tools", func(t *testing.T) {
		tools := []struct {
			name string
			args []string
			want string // in the output
			exit int
		}{
			{"nvme", []string{"version"}, "nvme version", 0},
			{"losetup", []string{"-V"}, "util-linux", 0},
			{"blkid", []string{"-V"}, "blkid from util-linux", 0},
			{"blockdev", []string{"-V"}, "util-linux", 0},
			{"mount", []string{"-V"}, "mount from util-linux", 0},
			{"umount", []string{"-V"}, "umount from util-linux", 0},
			{"fsck", []string{"--version"}, "util-linux", 0},
			{"fsck.ext4", []string{"-V"}, "e2fsck", 0},
			{"e2fsck", []string{"-V"}, "e2fsck", 0},
			{"mkfs.ext4", []string{"-V"}, "mke2fs", 0},
			{"resize2fs", nil, "resize2fs 1.", 1}, // no version flag: its usage names the version
			{"mkfs.xfs", []string{"-V"}, "mkfs.xfs version", 0},
			{"xfs_growfs", []string{"-V"}, "xfs_growfs version", 0},
		}
		for _, tool := range tools {
			out, code := b.chroot(t, "", tool.name, tool.args...)
			if code != tool.exit || !strings.Contains(out, tool.want) {
				t.Errorf("%s %s in the image: exit %d, %q; want exit %d and %q",
					tool.name, strings.Join(tool.args, " "), code, out, tool.exit, tool.want)
			} else {
				t.Logf("%s: %s", tool.name, firstLine(out))
			}
		}
	})

	// What the base adds to Debian's packages: the controller's user and /etc/mtab (the mount
	// checks of resize2fs and fsck read it).
	t.Run("base", func(t *testing.T) {
		if out, code := b.chroot(t, "", "getent", "passwd", "65532"); code != 0 || !strings.HasPrefix(out, "nonroot:x:65532:65532:") {
			t.Errorf("getent passwd 65532 in the image: %q (exit %d)", out, code)
		}
		if dst, err := os.Readlink(filepath.Join(b.fs, "etc", "mtab")); err != nil || !strings.HasSuffix(dst, "proc/self/mounts") {
			t.Errorf("/etc/mtab in the image: %q, %v; want a link to /proc/self/mounts", dst, err)
		}
	})

	// Beyond printing versions: the format, probe, check and grow path of both filesystems, on
	// files inside the image (no loop device needed).
	t.Run("filesystems", func(t *testing.T) {
		for _, tc := range []struct {
			fs   string
			size int64
			cmds [][]string
		}{
			{"ext4", 64 << 20, [][]string{
				{"mkfs.ext4", "-F", "-q", "-E", "nodiscard", "/tmp/ext4.img"},
				{"blkid", "-p", "-s", "TYPE", "-o", "value", "/tmp/ext4.img"},
				{"fsck.ext4", "-f", "-n", "/tmp/ext4.img"},
				{"GROW"},
				{"resize2fs", "/tmp/ext4.img"},
				{"e2fsck", "-f", "-n", "/tmp/ext4.img"},
			}},
			{"xfs", 320 << 20, [][]string{
				{"mkfs.xfs", "-f", "-q", "-K", "/tmp/xfs.img"},
				{"blkid", "-p", "-s", "TYPE", "-o", "value", "/tmp/xfs.img"},
				{"xfs_repair", "-n", "-f", "/tmp/xfs.img"},
			}},
		} {
			img := filepath.Join(b.fs, "tmp", tc.fs+".img")
			if err := os.MkdirAll(filepath.Dir(img), 0o1777); err != nil {
				t.Fatal(err)
			}
			if err := os.Truncate(mustCreate(t, img), tc.size); err != nil {
				t.Fatal(err)
			}
			for _, c := range tc.cmds {
				if c[0] == "GROW" {
					if err := os.Truncate(img, 2*tc.size); err != nil {
						t.Fatal(err)
					}
					continue
				}
				out, code := b.chroot(t, "", c[0], c[1:]...)
				if code != 0 {
					t.Errorf("%s in the image: exit %d\n%s", strings.Join(c, " "), code, out)
				} else if c[0] == "blkid" && strings.TrimSpace(out) != tc.fs {
					t.Errorf("blkid in the image: %q, want %s", out, tc.fs)
				}
			}
			os.Remove(img)
		}
	})

	// The OCI tarball saved beside the registry holds the same image.
	t.Run("tarball", func(t *testing.T) {
		digest := strings.TrimSpace(string(run(t, "", b.crane, "digest", "--insecure", b.ref)))
		tag := b.ref[strings.LastIndexByte(b.ref, ':')+1:]
		index := readTarFile(t, filepath.Join(b.dir, "rds-csi-"+tag+".oci.tar"), "index.json")
		if !strings.Contains(string(index), digest) {
			t.Errorf("the OCI tarball's index.json does not name %s:\n%s", digest, index)
		}
	})
}

// TestDockerfile: the Dockerfile (for a Docker engine; not buildable here) installs the same
// packages, on the same Debian suite, with the same entrypoint as the image tested above.
func TestDockerfile(t *testing.T) {
	root := repoRoot(t)
	df, err := os.ReadFile(filepath.Join(root, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	sh, err := os.ReadFile(filepath.Join(root, "hack", "image.sh"))
	if err != nil {
		t.Fatal(err)
	}
	shVar := func(name string) string {
		m := regexp.MustCompile(`(?m)^` + name + `=(\S+)$`).FindSubmatch(sh)
		if m == nil {
			t.Fatalf("hack/image.sh sets no %s", name)
		}
		return string(m[1])
	}
	pkgs := strings.Split(shVar("PACKAGES"), ",")
	m := regexp.MustCompile(`apt-get install -y --no-install-recommends ([a-z0-9 .+-]+)`).FindSubmatch(df)
	if m == nil {
		t.Fatal("Dockerfile: no apt-get install line")
	}
	dfPkgs := strings.Fields(string(m[1]))
	slices.Sort(pkgs)
	slices.Sort(dfPkgs)
	if !slices.Equal(pkgs, dfPkgs) {
		t.Errorf("Dockerfile installs %v, hack/image.sh %v", dfPkgs, pkgs)
	}
	suite := shVar("SUITE")
	for _, want := range []string{
		"ARG DEBIAN_SUITE=" + suite + "\n",
		"FROM debian:${DEBIAN_SUITE}-slim\n",
		`ENTRYPOINT ["` + entrypoint + `"]`,
		"COPY --from=build /out/rds-csi " + entrypoint + "\n",
		"CGO_ENABLED=0",
		"-buildvcs=true",
	} {
		if !bytes.Contains(df, []byte(want)) {
			t.Errorf("Dockerfile lacks %q", want)
		}
	}
	if regexp.MustCompile(`(?m)^USER\s+(0|root)\b`).Match(df) {
		t.Error("Dockerfile forces USER root")
	}
}

func mustCreate(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	return path
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(strings.TrimSpace(s), "\n")
	return line
}

func readTarFile(t *testing.T, path, name string) []byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr := tar.NewReader(bufio.NewReader(f))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			t.Fatalf("%s has no %s", path, name)
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if strings.TrimPrefix(h.Name, "./") == name {
			b, err := io.ReadAll(tr)
			if err != nil {
				t.Fatal(err)
			}
			return b
		}
	}
}
