package doctor

import (
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
)

// WriteJSON writes the report as one JSON document.
func (r *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(r)
}

// WriteTable writes the report for people: what was looked at, a table of the findings, then
// each finding's detail and next step, then the cleanup steps.
func (r *Report) WriteTable(w io.Writer) error {
	b := &strings.Builder{}
	fmt.Fprintf(b, "rds-csi doctor, driver %s, %s\n", r.Driver, r.Time.Format("2006-01-02 15:04:05 MST"))
	if r.Error != "" {
		fmt.Fprintf(b, "\nCOULD NOT LOOK: %s\nNothing is known about the volumes: this is not an all-clear. Fix access and run doctor again (exit status %d).\n", r.Error, ExitCannotLook)
		_, err := io.WriteString(w, b.String())
		return err
	}
	c := r.Counts
	snap := fmt.Sprintf("%d VolumeSnapshotContents", c.VolumeSnapshotContents)
	if !c.SnapshotsInstalled {
		snap = "no snapshot CRDs"
	}
	fmt.Fprintf(b, "looked at: RDS %d disks, %d files; of the driver %d PersistentVolumes, %d VolumeAttachments, %s; %d claims, %d nodes\n\n",
		c.Disks, c.Files, c.PersistentVolumes, c.VolumeAttachments, snap, c.Claims, c.Nodes)
	if len(r.Findings) == 0 {
		fmt.Fprintf(b, "Nothing out of line.\n")
	} else {
		removed := map[Target]bool{}
		for _, c := range r.Cleanup {
			removed[c.Target] = c.Result == "removed"
		}
		tw := tabwriter.NewWriter(b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "#\tNEEDS ACTION\tKIND\tOBJECT\tNODE\tAGE")
		for i, f := range r.Findings {
			need := "no"
			switch {
			case f.Removable != nil && removed[*f.Removable]:
				need = "removed"
			case f.NeedsAction:
				need = "yes"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\n", i+1, need, f.Kind, f.Object, dash(f.Node), dash(f.Age))
		}
		_ = tw.Flush()
		fmt.Fprintln(b)
		for i, f := range r.Findings {
			fmt.Fprintf(b, "%d. %s %s\n   %s\n   next: %s\n", i+1, f.Kind, f.Object, f.Detail, f.Action)
		}
	}
	if len(r.Cleanup) > 0 {
		fmt.Fprintf(b, "\ncleanup (min age %s):\n", r.MinAge)
		for _, s := range r.Cleanup {
			line := fmt.Sprintf("  %s %s", s.Result, s.Target)
			if s.Reason != "" {
				line += ": " + s.Reason
			}
			fmt.Fprintln(b, line)
		}
	}
	switch r.ExitCode() {
	case ExitOK:
		fmt.Fprintf(b, "\nNothing needs action (exit status %d).\n", ExitOK)
	default:
		fmt.Fprintf(b, "\nSomething needs action (exit status %d).\n", ExitNeedAction)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
