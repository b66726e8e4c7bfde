package driver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"k8s.io/klog/v2"
)

// A format interrupted half-way (the node plugin killed during mkfs) leaves a device that is
// neither blank nor a filesystem, so the blank check refuses it forever, and the volume can never
// be staged. The format journal tells that case apart from a device holding unknown data: before
// mkfs starts on a device proven blank, a record for the volume is written (and synced) in the
// node's state directory, and it is removed once the filesystem exists. A record found later
// proves that the only writer since the device was last seen blank was this node's own mkfs, so
// formatting it again destroys nothing. Without a state directory there is no journal, and an
// interrupted format needs an operator.
type formatJournal struct{ dir string }

func (j formatJournal) path(volID string) string { return filepath.Join(j.dir, "formatting", volID) }

// begin records that volID on dev is about to be formatted; the record is on disk on return.
func (j formatJournal) begin(volID, dev string) error {
	if j.dir == "" {
		return nil
	}
	p := j.path(volID)
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = fmt.Fprintf(f, "device=%s\nstarted=%s\n", dev, time.Now().UTC().Format(time.RFC3339))
	if serr := f.Sync(); err == nil {
		err = serr
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

// interrupted reports whether a format of volID by this node began and never finished.
func (j formatJournal) interrupted(volID string) (bool, time.Time) {
	if j.dir == "" {
		return false, time.Time{}
	}
	fi, err := os.Stat(j.path(volID))
	if err != nil {
		return false, time.Time{}
	}
	return true, fi.ModTime()
}

// done forgets the record of volID: its filesystem exists.
func (j formatJournal) done(volID string) {
	if j.dir == "" {
		return
	}
	if err := os.Remove(j.path(volID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		klog.ErrorS(err, "Cannot remove the format record; a later stage finds the filesystem and removes it again", "volume", volID)
	}
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
