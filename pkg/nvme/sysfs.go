package nvme

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
)

var (
	ctrlRE = regexp.MustCompile(`^nvme([0-9]+)$`)
	// A namespace block device. Multipath path devices nvmeXcYnZ are hidden and never match.
	nsRE = regexp.MustCompile(`^nvme[0-9]+n([0-9]+)$`)
)

// subsystemView is what sysfs says about one NQN.
type subsystemView struct {
	controllers map[string]string // controller (nvmeX) → state ("live", "connecting", ...)
	namespaces  []namespace
}

type namespace struct {
	name string // nvmeXnY
	nsid int
	live bool // a multipath head, or a namespace of a live controller
}

// nvmeSysfs reads NVMe subsystems, controllers and namespaces under a sysfs root. Both layouts are
// handled: native multipath (namespace heads under /sys/class/nvme-subsystem/nvme-subsysN) and
// multipath off (namespaces under /sys/class/nvme/nvmeX).
type nvmeSysfs struct{ root string }

func readAttr(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	return strings.TrimSpace(string(b)), nil
}

// readDirNames lists a directory; a missing one is empty. Symlinks (sysfs is full of them) are
// listed like directories.
func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names, nil
}

func (s nvmeSysfs) view(nqn string) (*subsystemView, error) {
	v := &subsystemView{controllers: map[string]string{}}
	seen := map[string]bool{}
	addNS := func(dir, name string, live bool) {
		if seen[name] {
			return
		}
		seen[name] = true
		m := nsRE.FindStringSubmatch(name)
		nsid, _ := strconv.Atoi(m[1])
		if a, err := readAttr(filepath.Join(dir, name, "nsid")); err == nil {
			if n, err := strconv.Atoi(a); err == nil {
				nsid = n
			}
		}
		v.namespaces = append(v.namespaces, namespace{name: name, nsid: nsid, live: live})
	}

	subsysDir := filepath.Join(s.root, "class", "nvme-subsystem")
	subsystems, err := readDirNames(subsysDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", subsysDir, err)
	}
	for _, sub := range subsystems {
		dir := filepath.Join(subsysDir, sub)
		if got, err := readAttr(filepath.Join(dir, "subsysnqn")); err != nil || got != nqn {
			continue // another subsystem, or one going away under our feet
		}
		names, err := readDirNames(dir)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dir, err)
		}
		for _, n := range names {
			switch {
			case ctrlRE.MatchString(n):
				v.controllers[n] = ""
			case nsRE.MatchString(n):
				addNS(dir, n, true)
			}
		}
	}

	ctrlDir := filepath.Join(s.root, "class", "nvme")
	ctrls, err := readDirNames(ctrlDir)
	if err != nil {
		return nil, fmt.Errorf("reading %s: %w", ctrlDir, err)
	}
	for _, c := range ctrls {
		if !ctrlRE.MatchString(c) {
			continue
		}
		dir := filepath.Join(ctrlDir, c)
		_, listed := v.controllers[c]
		if !listed {
			if got, err := readAttr(filepath.Join(dir, "subsysnqn")); err != nil || got != nqn {
				continue
			}
		}
		state, err := readAttr(filepath.Join(dir, "state"))
		if err != nil {
			state = "unknown"
		}
		v.controllers[c] = state
		names, err := readDirNames(dir)
		if err != nil {
			return nil, fmt.Errorf("reading %s: %w", dir, err)
		}
		for _, n := range names {
			if nsRE.MatchString(n) {
				addNS(dir, n, state == "live")
			}
		}
	}
	for c, st := range v.controllers {
		if st == "" {
			v.controllers[c] = "unknown" // listed in the subsystem, gone from /sys/class/nvme
		}
	}
	sort.Slice(v.namespaces, func(i, j int) bool {
		a, b := v.namespaces[i], v.namespaces[j]
		if a.live != b.live {
			return a.live
		}
		if a.nsid != b.nsid {
			return a.nsid < b.nsid
		}
		return a.name < b.name
	})
	return v, nil
}

// namespace returns the block device name of the NQN's namespace (the lowest namespace ID,
// preferring a live path), or ErrNotConnected.
func (v *subsystemView) namespace(nqn string) (string, error) {
	if len(v.namespaces) == 0 {
		if len(v.controllers) > 0 {
			return "", fmt.Errorf("%w: %s has controllers %s but no namespace yet", ErrNotConnected, nqn, v.describeControllers())
		}
		return "", fmt.Errorf("%w: %s", ErrNotConnected, nqn)
	}
	return v.namespaces[0].name, nil
}

func (v *subsystemView) describeControllers() string {
	names := make([]string, 0, len(v.controllers))
	for c, st := range v.controllers {
		names = append(names, c+"="+st)
	}
	sort.Strings(names)
	return strings.Join(names, ",")
}

func (v *subsystemView) controllerNames() []string {
	names := make([]string, 0, len(v.controllers))
	for c := range v.controllers {
		names = append(names, c)
	}
	sort.Strings(names)
	return names
}

func (v *subsystemView) anyLive() bool {
	for _, st := range v.controllers {
		if st == "live" {
			return true
		}
	}
	return false
}
