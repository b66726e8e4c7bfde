package rdssim

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"

	"k8s.io/klog/v2"
)

// DefaultNVMetRoot is where the kernel's NVMe target (nvmet) is configured through configfs.
const DefaultNVMetRoot = "/sys/kernel/config/nvmet"

// nvmetExporter makes the kernel's NVMe/TCP target (nvmet) export what the disk table says: one
// subsystem per exported disk, named by its NQN, with namespace 1 backed by the disk's file, and
// linked into a TCP port per nvme-tcp-server-port on the export address. The driver's real node
// path (nvme connect, sysfs, disconnect) then talks to what the simulated RDS exports.
//
// The namespace is nvmet's file backend on the image file itself, not a loop device over it:
// nothing then has to be attached, tracked or detached per volume (a simulator that dies leaves no
// loop device behind), the namespace always reads what the file holds, and a resize needs only
// nvmet's revalidate_size. Buffered I/O is used because tmpfs, where the guest keeps its volumes,
// has no O_DIRECT on older kernels; a host flush still reaches the file through fsync.
//
// State lives in configfs only, so an exporter started again over the same data directory finds
// its subsystems and leaves them (and the hosts connected to them) alone: sync is idempotent. A
// subsystem is this exporter's when its namespace's file lies in the data directory, or when this
// process exported it; nothing else under nvmet is touched.
type nvmetExporter struct {
	root    string // configfs nvmet directory
	addr    string // listen address of the ports
	dataDir string
	host    func(string) string // RouterOS file path → file

	mu      sync.Mutex
	managed map[string]bool  // NQNs this process exported
	sizes   map[string]int64 // NQN → file size the namespace was last sized for
	down    map[int]bool     // TCP ports taken down by a fault
}

func newNVMetExporter(root, addr, dataDir string, host func(string) string) (*nvmetExporter, error) {
	if root == "" {
		root = DefaultNVMetRoot
	}
	if addr == "" {
		addr = "127.0.0.1"
	}
	if net.ParseIP(addr) == nil {
		return nil, fmt.Errorf("rdssim: NVMe/TCP export address %q is not an IP address", addr)
	}
	for _, d := range []string{"subsystems", "ports"} {
		if fi, err := os.Stat(filepath.Join(root, d)); err != nil || !fi.IsDir() {
			return nil, fmt.Errorf("rdssim: no NVMe target at %s (load nvmet and nvmet-tcp, mount configfs, run as root): %v", root, err)
		}
	}
	dataDir, err := filepath.Abs(dataDir)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(dataDir); err == nil {
		dataDir = r
	}
	return &nvmetExporter{root: root, addr: addr, dataDir: dataDir, host: host,
		managed: map[string]bool{}, sizes: map[string]int64{}, down: map[int]bool{}}, nil
}

func (e *nvmetExporter) subsysDir(nqn string) string {
	return filepath.Join(e.root, "subsystems", nqn)
}
func (e *nvmetExporter) nsDir(nqn string) string {
	return filepath.Join(e.subsysDir(nqn), "namespaces", "1")
}
func (e *nvmetExporter) portDir(port int) string {
	return filepath.Join(e.root, "ports", strconv.Itoa(port))
}

func readConfig(p string) (string, error) {
	b, err := os.ReadFile(p)
	return strings.TrimSpace(string(b)), err
}

// writeConfig writes one configfs attribute; the kernel's refusal (EINVAL, EBUSY) is the error.
func writeConfig(p, v string) error {
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString(v)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("writing %q to %s: %w", v, p, err)
	}
	return nil
}

// exportable says whether a disk is exported: an NQN configfs can name a directory after.
func exportable(d *Disk) bool {
	return d.NVMeExport && d.NQN != "" && !strings.ContainsAny(d.NQN, "/\x00") && d.NQN != "." && d.NQN != ".."
}

// owned says whether the subsystem of nqn is this exporter's.
func (e *nvmetExporter) owned(nqn string) bool {
	if e.managed[nqn] {
		return true
	}
	dev, err := readConfig(filepath.Join(e.nsDir(nqn), "device_path"))
	return err == nil && strings.HasPrefix(dev, e.dataDir+string(filepath.Separator))
}

// sync makes nvmet export exactly the exportable disks (and nothing of this exporter's more). It
// goes on past a failure so that one bad disk does not hold up the others, and returns them all.
func (e *nvmetExporter) sync(disks []*Disk) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	want := map[string]*Disk{}
	for _, d := range disks {
		if exportable(d) {
			want[d.NQN] = d
		}
	}
	var errs []error
	present, err := readDirNames(filepath.Join(e.root, "subsystems"))
	if err != nil {
		return err
	}
	for _, nqn := range present {
		if want[nqn] == nil && e.owned(nqn) {
			errs = append(errs, e.unexport(nqn))
		}
	}
	nqns := make([]string, 0, len(want))
	for nqn := range want {
		nqns = append(nqns, nqn)
	}
	sort.Strings(nqns)
	for _, nqn := range nqns {
		errs = append(errs, e.export(want[nqn]))
	}
	errs = append(errs, e.pruneEmptyPorts())
	return errors.Join(errs...)
}

// export creates or updates the subsystem of d and links it into its port unless that is down.
func (e *nvmetExporter) export(d *Disk) error {
	file := e.host(d.FilePath)
	sd, nd := e.subsysDir(d.NQN), e.nsDir(d.NQN)
	if err := mkdirConfig(sd); err != nil {
		return err
	}
	e.managed[d.NQN] = true
	if err := writeConfig(filepath.Join(sd, "attr_allow_any_host"), "1"); err != nil {
		return err
	}
	if err := mkdirConfig(nd); err != nil {
		return err
	}
	dev, _ := readConfig(filepath.Join(nd, "device_path"))
	enabled, _ := readConfig(filepath.Join(nd, "enable"))
	switch {
	case enabled == "1" && dev == file:
		if e.sizes[d.NQN] != d.FileSize {
			// The file grew: the namespace takes its new size and tells the hosts (an AEN), as
			// the RDS does after `/disk set file-size=`.
			if err := writeConfig(filepath.Join(nd, "revalidate_size"), "1"); err != nil {
				return err
			}
			e.sizes[d.NQN] = d.FileSize
		}
	default:
		if enabled == "1" {
			if err := writeConfig(filepath.Join(nd, "enable"), "0"); err != nil {
				return err
			}
		}
		if err := writeConfig(filepath.Join(nd, "device_path"), file); err != nil {
			return err
		}
		if err := writeConfig(filepath.Join(nd, "buffered_io"), "1"); err != nil {
			return err
		}
		if err := writeConfig(filepath.Join(nd, "enable"), "1"); err != nil {
			return err
		}
		e.sizes[d.NQN] = d.FileSize
		klog.V(2).InfoS("rdssim: NVMe/TCP export", "nqn", d.NQN, "file", file, "port", d.NVMePort)
	}
	// Links of the subsystem into other ports (the disk's port was changed) go.
	ports, err := readDirNames(filepath.Join(e.root, "ports"))
	if err != nil {
		return err
	}
	for _, p := range ports {
		link := filepath.Join(e.root, "ports", p, "subsystems", d.NQN)
		if _, err := os.Lstat(link); err != nil {
			continue
		}
		if p != strconv.Itoa(d.NVMePort) || e.down[d.NVMePort] {
			if err := os.Remove(link); err != nil {
				return fmt.Errorf("unlinking %s: %w", link, err)
			}
		}
	}
	if e.down[d.NVMePort] {
		return nil
	}
	pd, err := e.ensurePort(d.NVMePort)
	if err != nil {
		return err
	}
	link := filepath.Join(pd, "subsystems", d.NQN)
	if _, err := os.Lstat(link); err == nil {
		return nil
	}
	if err := os.Symlink(sd, link); err != nil {
		return fmt.Errorf("linking %s into port %d: %w", d.NQN, d.NVMePort, err)
	}
	return nil
}

// ensurePort makes the TCP port's configfs entry (named after the port number) on the export
// address. A port of that number on another address belongs to someone else.
func (e *nvmetExporter) ensurePort(port int) (string, error) {
	pd := e.portDir(port)
	if err := mkdirConfig(pd); err != nil {
		return "", err
	}
	family := "ipv4"
	if strings.Contains(e.addr, ":") {
		family = "ipv6"
	}
	for _, a := range [][2]string{{"addr_trtype", "tcp"}, {"addr_adrfam", family}, {"addr_traddr", e.addr}, {"addr_trsvcid", strconv.Itoa(port)}} {
		cur, err := readConfig(filepath.Join(pd, a[0]))
		if err != nil {
			return "", err
		}
		if cur == a[1] {
			continue
		}
		// Attributes can only be set while the port is disabled, that is without subsystems.
		if links, _ := readDirNames(filepath.Join(pd, "subsystems")); len(links) > 0 {
			return "", fmt.Errorf("nvmet port %d is in use with %s=%s, not %s", port, a[0], cur, a[1])
		}
		if err := writeConfig(filepath.Join(pd, a[0]), a[1]); err != nil {
			return "", err
		}
	}
	return pd, nil
}

// unexport removes a subsystem: its port links first (the target drops the hosts' controllers
// then), then its namespace.
func (e *nvmetExporter) unexport(nqn string) error {
	ports, err := readDirNames(filepath.Join(e.root, "ports"))
	if err != nil {
		return err
	}
	for _, p := range ports {
		link := filepath.Join(e.root, "ports", p, "subsystems", nqn)
		if err := os.Remove(link); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("unlinking %s: %w", link, err)
		}
	}
	nd := e.nsDir(nqn)
	if _, err := os.Stat(nd); err == nil {
		if en, _ := readConfig(filepath.Join(nd, "enable")); en == "1" {
			if err := writeConfig(filepath.Join(nd, "enable"), "0"); err != nil {
				return err
			}
		}
		if err := os.Remove(nd); err != nil {
			return fmt.Errorf("removing namespace of %s: %w", nqn, err)
		}
	}
	if err := os.Remove(e.subsysDir(nqn)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("removing subsystem %s: %w", nqn, err)
	}
	delete(e.managed, nqn)
	delete(e.sizes, nqn)
	klog.V(2).InfoS("rdssim: NVMe/TCP export removed", "nqn", nqn)
	return nil
}

// pruneEmptyPorts removes the ports on the export address that export nothing any more.
func (e *nvmetExporter) pruneEmptyPorts() error {
	ports, err := readDirNames(filepath.Join(e.root, "ports"))
	if err != nil {
		return err
	}
	for _, p := range ports {
		pd := filepath.Join(e.root, "ports", p)
		if a, _ := readConfig(filepath.Join(pd, "addr_traddr")); a != e.addr {
			continue
		}
		if links, _ := readDirNames(filepath.Join(pd, "subsystems")); len(links) > 0 {
			continue
		}
		if n, _ := strconv.Atoi(p); e.down[n] {
			continue // kept for when it comes back
		}
		if err := os.Remove(pd); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing port %s: %w", p, err)
		}
	}
	return nil
}

// unexportAll removes every subsystem of this exporter and its ports.
func (e *nvmetExporter) unexportAll() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	present, err := readDirNames(filepath.Join(e.root, "subsystems"))
	if err != nil {
		return err
	}
	var errs []error
	for _, nqn := range present {
		if e.owned(nqn) {
			errs = append(errs, e.unexport(nqn))
		}
	}
	clear(e.down)
	errs = append(errs, e.pruneEmptyPorts())
	return errors.Join(errs...)
}

func (e *nvmetExporter) setDown(port int, down bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if down {
		e.down[port] = true
	} else {
		delete(e.down, port)
	}
}

func mkdirConfig(p string) error {
	if err := os.Mkdir(p, 0o755); err != nil && !errors.Is(err, fs.ErrExist) {
		return fmt.Errorf("creating %s: %w", p, err)
	}
	return nil
}

func readDirNames(dir string) ([]string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, err
	}
	names := make([]string, len(entries))
	for i, en := range entries {
		names[i] = en.Name()
	}
	return names, nil
}

// ErrNoNVMeExport is returned by the NVMe/TCP methods of a Server started without
// Config.NVMeTCPExport.
var ErrNoNVMeExport = errors.New("rdssim: not exporting over NVMe/TCP (Config.NVMeTCPExport)")

// SetNVMeTCPPortDown takes a TCP port of the NVMe/TCP target down (every subsystem unlinked from
// it: the target stops listening and drops the hosts' controllers, which then reconnect as after
// a network outage) or brings it back. Disks keep their export settings meanwhile.
func (s *Server) SetNVMeTCPPortDown(port int, down bool) error {
	e := s.store.exporter
	if e == nil {
		return ErrNoNVMeExport
	}
	e.setDown(port, down)
	klog.InfoS("rdssim fault: NVMe/TCP port", "port", port, "down", down)
	return s.store.syncExports()
}

// UnexportNVMe removes every NVMe/TCP export of this simulator from the kernel target, as if every
// disk had nvme-tcp-export=no (the disk table is unchanged). Tests call it when they end, since a
// stopped simulator otherwise leaves its exports in place for the next one over the same data.
func (s *Server) UnexportNVMe() error {
	e := s.store.exporter
	if e == nil {
		return ErrNoNVMeExport
	}
	return e.unexportAll()
}

// syncExports applies the disk table to the NVMe/TCP target, if any.
func (st *store) syncExports() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	return st.syncExportsLocked()
}

func (st *store) syncExportsLocked() error {
	if st.exporter == nil {
		return nil
	}
	err := st.exporter.sync(st.disks)
	if err != nil {
		klog.ErrorS(err, "rdssim: NVMe/TCP target does not follow the disk table")
	}
	return err
}
