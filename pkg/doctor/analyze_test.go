package doctor

import (
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/srvlab/rds-csi/pkg/rds"
)

const drv = "rds.test"

func pv(name, handle string, size string) corev1.PersistentVolume {
	return corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		Capacity:               corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(size)},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{Driver: drv, VolumeHandle: handle}}}}
}

// Ages come from the RDS's own clock against its own file dates, whatever the zone of either
// machine: an RDS whose wall clock is 9 hours behind this machine's does not make a new file old.
// A disk that any driver's PV names is no orphan.
func TestOrphanAgeIsByTheRDSClock(t *testing.T) {
	rdsNow := time.Date(2025, 11, 11, 7, 0, 0, 0, time.UTC) // the RDS's wall clock
	inv := &Inventory{
		Now:    rdsNow.Add(9 * time.Hour),
		RDSNow: rdsNow,
		Disks: []rds.Disk{
			{Slot: "pvc-new", FilePath: "/p/pvc-new.img", Size: 1 << 20, Exported: true},
			{Slot: "pvc-old", FilePath: "/p/pvc-old.img", Size: 1 << 20, Exported: true},
			{Slot: "pvc-used", FilePath: "/p/pvc-used.img", Size: 1 << 20, Exported: true},
			{Slot: "pvc-other", FilePath: "/p/pvc-other.img", Size: 1 << 20, Exported: true},
		},
		Files: []rds.File{
			{Path: "/p/pvc-new.img", Modified: rdsNow.Add(-time.Minute)},
			{Path: "/p/pvc-old.img", Modified: rdsNow.Add(-61 * time.Minute)},
			{Path: "/p/pvc-used.img", Modified: rdsNow.Add(-48 * time.Hour)},
			{Path: "/p/pvc-other.img", Modified: rdsNow.Add(-48 * time.Hour)},
			{Path: "/p/pvc-stray.img", Modified: rdsNow.Add(-48 * time.Hour)},
			{Path: "/p/not-ours.img", Modified: rdsNow.Add(-48 * time.Hour)},
		},
		PVs: []corev1.PersistentVolume{pv("used", "pvc-used", "1Mi"), pv("other", "pvc-other", "1Mi")},
	}
	inv.PVs[1].Spec.CSI.Driver = "another.install" // another driver's PV keeps its disk too
	r := Analyze(inv, Config{DriverName: drv})
	got := map[string]Finding{}
	for _, f := range r.Findings {
		got[f.Object] = f
	}
	if f := got["disk pvc-new"]; f.Removable != nil || f.NeedsAction || !strings.Contains(f.Action, "none yet") {
		t.Errorf("a disk a minute old: %+v", f)
	}
	if f := got["disk pvc-old"]; f.Removable == nil || !f.NeedsAction {
		t.Errorf("a disk 61 minutes old: %+v", f)
	}
	if f := got["file /p/pvc-stray.img"]; f.Removable == nil || f.Removable.Disk {
		t.Errorf("a stray file: %+v", f)
	}
	if len(r.Findings) != 3 || r.ExitCode() != ExitNeedAction {
		t.Errorf("findings %+v, exit %d", r.Findings, r.ExitCode())
	}
	// Once the removable ones are removed, nothing needs action.
	for _, f := range r.Findings {
		if f.Removable != nil {
			r.Cleanup = append(r.Cleanup, Removal{Target: *f.Removable, Result: "removed"})
		}
	}
	if r.ExitCode() != ExitOK {
		t.Errorf("exit after cleanup %d", r.ExitCode())
	}
	if (&Report{Error: "x"}).ExitCode() != ExitCannotLook {
		t.Error("a report that could not look is not exit 2")
	}
}
