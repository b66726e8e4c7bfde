package rds

import (
	"context"
	"path"
	"strings"
	"time"

	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/routeros"
)

// File is a file on the RDS as `/file print detail` reports it.
type File struct {
	Path string // absolute
	Size int64  // bytes, from the human-readable size (rounded by the RDS)
	// Modified is the last-modified date, the RDS's wall-clock time read as UTC: compare it with
	// Clock, never with this machine's clock. RouterOS prints no creation time; the last write
	// is never earlier, so an age from it is never too high.
	Modified time.Time
}

// ListFiles returns the files (not directories) whose name contains substr, in any directory;
// substr is a slot prefix such as "pvc-". One command.
func (s *Storage) ListFiles(ctx context.Context, substr string) ([]File, error) {
	cmd, err := routeros.FileFindByPrefix(substr)
	items, err := s.print(ctx, cmd, err)
	if err != nil {
		return nil, err
	}
	var files []File
	for _, it := range items {
		name := it.Fields["name"]
		if it.Fields["type"] == "directory" || !strings.Contains(name, substr) {
			continue
		}
		f := File{Path: "/" + strings.TrimPrefix(name, "/")}
		if sz, err := routeros.ParseHumanSize(it.Fields["size"]); err == nil {
			f.Size = sz
		}
		mod, err := routeros.ParseWallTime(it.Fields["last-modified"])
		if err != nil {
			return nil, routeros.Errorf(routeros.KindInternal, "file %s: %v", f.Path, err)
		}
		f.Modified = mod
		files = append(files, f)
	}
	return files, nil
}

// Clock returns the RDS's wall-clock time read as UTC, to compare with File.Modified.
func (s *Storage) Clock(ctx context.Context) (time.Time, error) {
	out, err := s.r.Run(ctx, routeros.ClockPrint())
	if err != nil {
		return time.Time{}, err
	}
	return routeros.ParseClock(out)
}

// RemoveFile removes a file that no disk entry uses and checks that it is gone. An absent file
// is not an error; a file that a disk or a running copy uses is refused by the RDS (KindBusy).
func (s *Storage) RemoveFile(ctx context.Context, p string) error {
	return s.removeUnusedFile(ctx, p, "Removing a file on the RDS")
}

// removeUnusedFile removes the file at p, logging why, and checks that it is gone: the RDS may
// answer a remove without removing (a file a disk or a running copy uses), so only a second look
// makes the success true.
func (s *Storage) removeUnusedFile(ctx context.Context, p, why string) error {
	exists, err := s.fileExists(ctx, p)
	if err != nil || !exists {
		return err
	}
	klog.InfoS(why, "file", p, "name", path.Base(p))
	cmd, err := routeros.FileRemove(p)
	if _, err := s.run(ctx, cmd, err); err != nil && !routeros.IsNotFound(err) {
		return err
	}
	if exists, err = s.fileExists(ctx, p); err != nil {
		return err
	}
	if exists {
		return routeros.Errorf(routeros.KindBusy, "file %s is still there after removal", p)
	}
	return nil
}
