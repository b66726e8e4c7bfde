package rdssim

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
)

// stateDir holds the simulator's own files inside DataDir; it is hidden from
// `/file print`.
const stateDir = ".rdssim"

const (
	poolName    = "storage-pool"
	nqnPrefix   = "nqn.2000-02.com.mikrotik:"
	defaultPort = 4420
)

// Disk is one file-backed disk entry, as returned by Server.Disks and
// GET /state.
type Disk struct {
	Slot          string `json:"slot"`
	FilePath      string `json:"filePath"`
	FileSize      int64  `json:"fileSize"`
	NVMeExport    bool   `json:"nvmeTcpExport"`
	NVMePort      int    `json:"nvmeTcpServerPort"`
	NQN           string `json:"nvmeTcpServerNqn"`
	AllowHostName string `json:"nvmeTcpServerAllowHostName"`
}

type persisted struct {
	Version int    `json:"version"`
	Disks   []Disk `json:"disks"`
}

// store is the disk table plus the backing files under dir. All methods
// that touch state take mu.
type store struct {
	mu       sync.Mutex
	dir      string
	poolSize int64
	disks    []*Disk
	copying  map[string]bool // file paths being written by a copy
	exporter *nvmetExporter  // nil unless Config.NVMeTCPExport: the kernel target follows the table
}

func openStore(dir string, poolSize int64) (*store, error) {
	if err := os.MkdirAll(filepath.Join(dir, stateDir), 0o755); err != nil {
		return nil, err
	}
	stale, _ := filepath.Glob(filepath.Join(dir, stateDir, copyImagePrefix+"*"))
	for _, f := range stale {
		_ = os.Remove(f) // images of copies that stopped with the previous run
	}
	st := &store{dir: dir, poolSize: poolSize, copying: map[string]bool{}}
	if err := st.load(); err != nil {
		return nil, err
	}
	return st, nil
}

func (st *store) statePath() string { return filepath.Join(st.dir, stateDir, "state.json") }

// load replaces the in-memory table with the persisted one.
func (st *store) load() error {
	st.mu.Lock()
	defer st.mu.Unlock()
	b, err := os.ReadFile(st.statePath())
	if errors.Is(err, fs.ErrNotExist) {
		st.disks = nil
		return nil
	}
	if err != nil {
		return err
	}
	var p persisted
	if err := json.Unmarshal(b, &p); err != nil {
		return fmt.Errorf("rdssim: corrupt state file %s: %w", st.statePath(), err)
	}
	st.disks = make([]*Disk, len(p.Disks))
	for i := range p.Disks {
		st.disks[i] = &p.Disks[i]
	}
	return nil
}

// saveLocked writes the table atomically (temp file, fsync, rename).
func (st *store) saveLocked() error {
	p := persisted{Version: 1, Disks: make([]Disk, len(st.disks))}
	for i, d := range st.disks {
		p.Disks[i] = *d
	}
	b, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(st.statePath()), "state-*.tmp")
	if err != nil {
		return err
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), st.statePath())
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	// The table is saved; an export that fails is logged and seen by the host that connects.
	_ = st.syncExportsLocked()
	return nil
}

func (st *store) snapshot() []Disk {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]Disk, len(st.disks))
	for i, d := range st.disks {
		out[i] = *d
	}
	return out
}

// hostPath maps a RouterOS path (with or without leading slash) to the
// backing path under the data dir.
func (st *store) hostPath(p string) string {
	return filepath.Join(st.dir, filepath.FromSlash(strings.TrimPrefix(p, "/")))
}

// validFilePath accepts clean absolute paths that stay inside the data dir
// and outside the simulator's own state directory.
func validFilePath(p string) bool {
	if !strings.HasPrefix(p, "/") || p == "/" || path.Clean(p) != p || strings.ContainsRune(p, 0) {
		return false
	}
	first := strings.SplitN(strings.TrimPrefix(p, "/"), "/", 2)[0]
	return first != stateDir && !strings.Contains(p, "\\")
}

// usedLocked is the sum of the logical sizes of every .img file in the pool,
// disk entry or not (orphaned files still take space).
func (st *store) usedLocked() (int64, error) {
	var used int64
	err := filepath.WalkDir(st.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && p == filepath.Join(st.dir, stateDir) {
			return filepath.SkipDir
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), ".img") {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			used += fi.Size()
		}
		return nil
	})
	return used, err
}

// checkSpaceLocked fails with "not enough space" if grow more bytes do not fit.
func (st *store) checkSpaceLocked(grow int64, outOfSpace bool) error {
	if grow <= 0 {
		return nil
	}
	if outOfSpace {
		return errNoSpace
	}
	used, err := st.usedLocked()
	if err != nil {
		return failure(err.Error())
	}
	if grow > st.poolSize-used {
		return errNoSpace
	}
	return nil
}

// diskItem is a file disk as the RDS prints it. The fields are grouped a line each as in the
// RDS's own output (see the disk-detail samples in pkg/routeros/testdata), so that the two can be
// compared line by line.
func (st *store) diskItem(d *Disk) item {
	return item{
		plain("type", "file"), quoted("slot", d.Slot), quoted("slot-default", ""), quoted("parent", ""), plain("fs", "-"),
		quoted("model", d.FilePath),
		grouped("size", d.FileSize), plain("mount-filesystem", "yes"), plain("mount-read-only", "no"),
		plain("compress", "no"), plain("sector-size", "512"), plain("raid-master", "none"),
		plain("nvme-tcp-export", yesNo(d.NVMeExport)), plain("nvme-tcp-server-port", strconv.Itoa(d.NVMePort)),
		quoted("nvme-tcp-server-nqn", d.NQN),
		quoted("nvme-tcp-server-allow-host-name", d.AllowHostName), plain("iscsi-export", "no"),
		plain("nfs-sharing", "no"), plain("smb-sharing", "no"), plain("media-sharing", "no"),
		plain("media-interface", "none"), plain("swap", "no"),
		plain("file-path", d.FilePath),
		human("file-size", d.FileSize), plain("file-offset", "0"),
	}
}

func (st *store) poolItemLocked() (item, error) {
	used, err := st.usedLocked()
	if err != nil {
		return nil, failure(err.Error())
	}
	free := max(st.poolSize-used, 0)
	use := int64(0)
	if st.poolSize > 0 {
		use = (min(used, st.poolSize)*100 + st.poolSize/2) / st.poolSize
	}
	return item{
		plain("slot", poolName),
		plain("type", "partition"),
		plain("mount-point", poolName),
		plain("file-system", "btrfs"),
		grouped("size", st.poolSize),
		grouped("free", free),
		plain("use", strconv.FormatInt(use, 10)+"%"),
	}, nil
}

func matchAll(conds []cond, it item) bool {
	for _, c := range conds {
		if !c.match(it) {
			return false
		}
	}
	return true
}

// selectLocked returns the file disks a selector designates (a bare name is
// a slot name).
func (st *store) selectLocked(sel *selector) []*Disk {
	var out []*Disk
	for _, d := range st.disks {
		if sel.find && matchAll(sel.conds, st.diskItem(d)) || !sel.find && d.Slot == sel.name {
			out = append(out, d)
		}
	}
	return out
}

func (st *store) diskByFileLocked(p string) *Disk {
	for _, d := range st.disks {
		if d.FilePath == p {
			return d
		}
	}
	return nil
}

// fileEntry is one /file item: a directory or file under the data dir.
type fileEntry struct {
	name  string // no leading slash
	isDir bool
	info  fs.FileInfo
}

func (st *store) filesLocked() ([]fileEntry, error) {
	var out []fileEntry
	err := filepath.WalkDir(st.dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == st.dir {
			return nil
		}
		if d.IsDir() && p == filepath.Join(st.dir, stateDir) {
			return filepath.SkipDir
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(st.dir, p)
		if err != nil {
			return err
		}
		out = append(out, fileEntry{name: filepath.ToSlash(rel), isDir: d.IsDir(), info: fi})
		return nil
	})
	return out, err
}

func fileItem(e fileEntry) item {
	ts := e.info.ModTime().Format("2006-01-02 15:04:05")
	if e.isDir {
		return item{plain("name", e.name), plain("type", "directory"), plain("last-modified", ts)}
	}
	typ := "file"
	if ext := path.Ext(e.name); ext != "" {
		typ = ext + " file"
	}
	return item{plain("name", e.name), plain("type", typ), human("size", e.info.Size()),
		plain("last-modified", ts)}
}
