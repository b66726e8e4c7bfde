package doctor

import (
	"context"
	"fmt"

	"k8s.io/klog/v2"
)

// Look lists everything once and applies the rules. A failed listing gives a report whose Error
// says what could not be listed, and no findings.
func Look(ctx context.Context, src Sources, cfg Config) *Report {
	cfg.defaults()
	inv, err := Collect(ctx, src, cfg.Now)
	if err != nil {
		return &Report{Time: cfg.Now().UTC(), Driver: cfg.DriverName, MinAge: cfg.MinAge.String(), Findings: []Finding{}, Error: err.Error()}
	}
	return Analyze(inv, cfg)
}

// Cleanup removes the orphans of r that are old enough (Finding.Removable), and records each
// step in r.Cleanup. Without yes it removes nothing and records what it would remove. Right
// before each removal it looks again, everything, and removes the orphan only if it is still
// one, still old enough, and the same (a disk still on the same file): a claim, VolumeAttachment
// or snapshot content made meanwhile, or a write to the file, keeps it. A failed look stops the
// cleanup. log is told every step.
func Cleanup(ctx context.Context, src Sources, rm Remover, cfg Config, r *Report, yes bool, log func(string)) {
	cfg.defaults()
	if log == nil {
		log = func(string) {}
	}
	step := func(t Target, result, reason string) {
		r.Cleanup = append(r.Cleanup, Removal{Target: t, Result: result, Reason: reason})
		msg := fmt.Sprintf("%s %s", result, t)
		if reason != "" {
			msg += ": " + reason
		}
		log(msg)
		klog.InfoS("doctor cleanup", "target", t.String(), "result", result, "reason", reason)
	}
	for _, f := range r.Findings {
		t := f.Removable
		if t == nil {
			continue
		}
		if !yes {
			step(*t, "would remove", fmt.Sprintf("%s old, nothing names it (dry run: add --yes to remove)", fmtAge(t.Age)))
			continue
		}
		again := Look(ctx, src, cfg)
		if again.Error != "" {
			step(*t, "failed", "re-check before removal: "+again.Error)
			return
		}
		now, ok := stillRemovable(again, *t)
		if !ok {
			step(*t, "skipped", "the re-check found it no longer an orphan older than --min-age")
			continue
		}
		var err error
		if now.Disk {
			err = rm.DeleteDisk(ctx, now.Slot, now.Path)
		} else {
			err = rm.RemoveFile(ctx, now.Path)
		}
		if err != nil {
			step(*t, "failed", err.Error())
			continue
		}
		step(*t, "removed", fmt.Sprintf("%s old, nothing named it", fmtAge(now.Age)))
	}
}

// stillRemovable finds t among the removable orphans of a fresh report.
func stillRemovable(r *Report, t Target) (Target, bool) {
	for _, f := range r.Findings {
		if n := f.Removable; n != nil && n.Disk == t.Disk && n.Slot == t.Slot && n.Path == t.Path {
			return *n, true
		}
	}
	return Target{}, false
}
