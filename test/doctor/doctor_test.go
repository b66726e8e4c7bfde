package doctor_test

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/srvlab/rds-csi/pkg/doctor"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/volid"
)

var (
	rwoMount = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}
	rwxBlock = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Block{Block: &csi.VolumeCapability_BlockVolume{}},
		AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_MULTI_NODE_MULTI_WRITER}}
)

// findings indexes a report by "kind volume-or-object".
func findings(r *doctor.Report) map[string]doctor.Finding {
	m := map[string]doctor.Finding{}
	for _, f := range r.Findings {
		m[string(f.Kind)+" "+f.Object] = f
	}
	return m
}

func table(t *testing.T, r *doctor.Report) string {
	var b bytes.Buffer
	if err := r.WriteTable(&b); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

// TestDoctorReportsWhatWasDoneBehindTheDriversBack: volumes made through the driver, then every
// kind of inconsistency made behind its back on the RDS and in Kubernetes; doctor reports each
// one with its next step and nothing else, and --cleanup removes exactly the orphans older than
// the minimum age, nothing that a PV, claim, VolumeAttachment or snapshot content names.
func TestDoctorReportsWhatWasDoneBehindTheDriversBack(t *testing.T) {
	e := newEnv(t)
	for _, n := range []string{"a", "b", "c", "d", "e"} {
		e.must(e.rig.AddNode(e.ctx, n))
	}
	if r := e.look(); len(r.Findings) != 0 || r.ExitCode() != doctor.ExitOK {
		t.Fatalf("a fresh cluster has findings:\n%s", table(t, r))
	}

	// Volumes through the driver.
	ok := e.volume(rwoMount, nil)
	e.must(e.rig.Publish(e.ctx, ok, "a"))
	noDisk := e.volume(rwoMount, nil)
	noEntry := e.volume(rwoMount, nil)
	noFile := e.volume(rwoMount, nil)
	unexported := e.volume(rwoMount, nil)
	small := e.volume(rwoMount, nil)
	big := e.volume(rwoMount, nil)
	onNotReady := e.volume(rwoMount, nil)
	e.must(e.rig.Publish(e.ctx, onNotReady, "b"))
	onDeleted := e.volume(rwoMount, nil)
	e.must(e.rig.Publish(e.ctx, onDeleted, "c"))
	migrating := e.volume(rwxBlock, map[string]string{"migrationTimeout": "1s"})
	e.must(e.rig.Publish(e.ctx, migrating, "d"))
	e.must(e.rig.Publish(e.ctx, migrating, "e"))

	// Behind the driver's back, on the RDS.
	e.must(e.st.DeleteDisk(e.ctx, noDisk.ID, ""))
	e.ros(fmt.Sprintf(`/disk remove [find slot="%s"]`, noEntry.ID))
	e.must(os.Remove(e.sim.HostPath(e.filePath(noFile.ID))))
	e.ros(fmt.Sprintf(`/disk set [find slot="%s"] nvme-tcp-export=no`, unexported.ID))
	e.ros(fmt.Sprintf(`/disk set [find slot="%s"] file-size=%d`, big.ID, 2<<20))
	oldDisk := e.disk("pvc-"+newUUID(), 2*time.Hour)
	youngDisk := e.disk("pvc-"+newUUID(), 0)
	oldFile := e.file("pvc-"+newUUID()+".img", 3*time.Hour)
	youngFile := e.file("pvc-"+newUUID()+".img", time.Minute)
	snapPrefix, _ := volid.SnapshotIDPrefix("snapshot-" + newUUID())
	orphanSnapID, _ := volid.SnapshotID(snapPrefix, time.Now().Add(-2*time.Hour), ok.ID)
	orphanSnap := e.disk(orphanSnapID, 2*time.Hour)
	// Named in Kubernetes, old: never removed.
	provisioning := e.disk(e.claim("being-provisioned"), 2*time.Hour)
	keptSnapPrefix, _ := volid.SnapshotIDPrefix("snapshot-" + newUUID())
	keptSnapID, _ := volid.SnapshotID(keptSnapPrefix, time.Now().Add(-2*time.Hour), ok.ID)
	keptSnap := e.disk(keptSnapID, 2*time.Hour)
	e.content("content-kept", keptSnap.Slot, newUUID())
	takingUID := newUUID()
	takingPrefix, _ := volid.SnapshotIDPrefix("snapshot-" + takingUID)
	takingID, _ := volid.SnapshotID(takingPrefix, time.Now(), ok.ID)
	taking := e.file(takingID+".img", 2*time.Hour)
	e.content("content-taking", "", takingUID)
	missingSnapID, _ := volid.SnapshotID(keptSnapPrefix, time.Now().Add(-time.Hour), ok.ID)
	e.content("content-gone", missingSnapID, newUUID())
	vaOnly := e.disk("pvc-"+newUUID(), 2*time.Hour)
	e.va(vaOnly.Slot, e.rig.NodeName("a"))

	// Behind its back, in Kubernetes.
	pv, err := e.cs.CoreV1().PersistentVolumes().Get(e.ctx, small.PV, metav1.GetOptions{})
	e.must(err)
	pv.Spec.Capacity[corev1.ResourceStorage] = resource.MustParse("2Mi")
	_, err = e.cs.CoreV1().PersistentVolumes().Update(e.ctx, pv, metav1.UpdateOptions{})
	e.must(err)
	e.must(k8stest.SetReady(e.ctx, e.cs, e.rig.NodeName("b"), corev1.ConditionUnknown))
	e.must(e.cs.CoreV1().Nodes().Delete(e.ctx, e.rig.NodeName("c"), metav1.DeleteOptions{}))
	time.Sleep(2100 * time.Millisecond) // the dual attachment outlives its 1s migration timeout

	r := e.look()
	t.Logf("doctor's table:\n%s", table(t, r))
	got := findings(r)
	want := map[string]bool{ // key → needs action
		"pv-disk-missing pv " + noDisk.PV:                                      true,
		"pv-disk-missing pv " + noEntry.PV:                                     true,
		"pv-file-missing pv " + noFile.PV:                                      true,
		"not-exported pv " + unexported.PV:                                     true,
		"size-mismatch pv " + small.PV:                                         true,
		"size-mismatch pv " + big.PV:                                           false,
		"holder-not-ready volumeattachment " + vaName(e, onNotReady.ID, "b"):   true,
		"holder-node-deleted volumeattachment " + vaName(e, onDeleted.ID, "c"): false,
		"migration-overdue volume " + migrating.ID:                             true,
		"orphan-disk disk " + oldDisk.Slot:                                     true,
		"orphan-disk disk " + youngDisk.Slot:                                   false,
		"orphan-disk disk " + orphanSnap.Slot:                                  true,
		"orphan-file file " + oldFile:                                          true,
		"orphan-file file " + youngFile:                                        false,
		"orphan-file file " + taking:                                           false,
		"snapshot-disk-missing volumesnapshotcontent content-gone":             true,
	}
	for k, need := range want {
		f, found := got[k]
		if !found {
			t.Errorf("missing finding %q", k)
			continue
		}
		if f.NeedsAction != need {
			t.Errorf("%s: needsAction = %t, want %t", k, f.NeedsAction, need)
		}
		if f.Action == "" || f.Detail == "" {
			t.Errorf("%s: no detail or next step: %+v", k, f)
		}
	}
	for k := range got {
		if _, expected := want[k]; !expected {
			t.Errorf("unexpected finding %q: %+v", k, got[k])
		}
	}
	if a := got["holder-not-ready volumeattachment "+vaName(e, onNotReady.ID, "b")].Action; !strings.Contains(a,
		"kubectl taint nodes "+e.rig.NodeName("b")+" node.kubernetes.io/out-of-service=nodeshutdown:NoExecute") {
		t.Errorf("NotReady holder: next step %q lacks the taint command", a)
	}
	if a := got["pv-disk-missing pv "+noEntry.PV]; !strings.Contains(a.Detail, "still there") || !strings.Contains(a.Action, "/disk add") {
		t.Errorf("PV whose entry alone is gone: %+v", a)
	}
	if r.ExitCode() != doctor.ExitNeedAction {
		t.Errorf("exit code %d, want %d", r.ExitCode(), doctor.ExitNeedAction)
	}

	removable := []string{}
	for _, f := range r.Findings {
		if f.Removable != nil {
			removable = append(removable, f.Removable.String())
		}
	}
	slices.Sort(removable)
	wantRemovable := []string{
		fmt.Sprintf("disk %s (file %s)", oldDisk.Slot, oldDisk.FilePath),
		fmt.Sprintf("disk %s (file %s)", orphanSnap.Slot, orphanSnap.FilePath),
		"file " + oldFile,
	}
	slices.Sort(wantRemovable)
	if !slices.Equal(removable, wantRemovable) {
		t.Fatalf("removable: %q, want %q", removable, wantRemovable)
	}

	// Dry run: nothing goes.
	dry := e.look()
	var log []string
	doctor.Cleanup(e.ctx, e.src(), e.st, e.cfg, dry, false, func(s string) { log = append(log, s) })
	if len(dry.Cleanup) != 3 || !e.hasDisk(oldDisk.Slot) || !e.hasDisk(orphanSnap.Slot) || !e.hasFile(oldFile) {
		t.Fatalf("dry run: %+v (log %q)", dry.Cleanup, log)
	}
	for _, s := range dry.Cleanup {
		if s.Result != "would remove" {
			t.Fatalf("dry run step %+v", s)
		}
	}

	// For real: exactly the old orphans go; everything named, and the young, stay.
	run := e.look()
	log = nil
	doctor.Cleanup(e.ctx, e.src(), e.st, e.cfg, run, true, func(s string) { log = append(log, s) })
	t.Logf("cleanup log:\n%s\n%s", strings.Join(log, "\n"), table(t, run))
	for _, s := range run.Cleanup {
		if s.Result != "removed" {
			t.Errorf("cleanup step %+v", s)
		}
	}
	if e.hasDisk(oldDisk.Slot) || e.hasFile(oldDisk.FilePath) || e.hasDisk(orphanSnap.Slot) || e.hasFile(orphanSnap.FilePath) || e.hasFile(oldFile) {
		t.Error("an old orphan is still there after the cleanup")
	}
	for _, slot := range []string{ok.ID, noFile.ID, unexported.ID, small.ID, big.ID, onNotReady.ID, onDeleted.ID, migrating.ID,
		youngDisk.Slot, provisioning.Slot, keptSnap.Slot, vaOnly.Slot} {
		if !e.hasDisk(slot) {
			t.Errorf("disk %s was removed", slot)
		}
	}
	for _, p := range []string{youngFile, taking, e.filePath(ok.ID), noEntryFile(e, noEntry.ID)} {
		if !e.hasFile(p) {
			t.Errorf("file %s was removed", p)
		}
	}
	if run.ExitCode() != doctor.ExitNeedAction { // the PVs' problems remain
		t.Errorf("exit code after cleanup %d", run.ExitCode())
	}
	after := e.look()
	for _, f := range after.Findings {
		if f.Removable != nil {
			t.Errorf("still removable after the cleanup: %+v", f)
		}
	}
}

func noEntryFile(e *env, slot string) string { return volid.FilePath(volDir, slot) }

func vaName(e *env, handle, node string) string {
	return e.rig.Attacher().VAName(handle, e.rig.NodeName(node))
}

// TestCleanupChecksAgainBeforeEachRemoval: an orphan that a claim names between the look and its
// removal, or whose file is written meanwhile, stays.
func TestCleanupChecksAgainBeforeEachRemoval(t *testing.T) {
	e := newEnv(t)
	claimed := e.disk("pvc-"+newUUID(), 2*time.Hour)
	written := e.disk("pvc-"+newUUID(), 2*time.Hour)
	gone := e.disk("pvc-"+newUUID(), 2*time.Hour)
	r := e.look()
	if n := len(r.Findings); n != 3 {
		t.Fatalf("%d findings, want 3 orphans:\n%s", n, table(t, r))
	}
	// After the look: a PV for one, a write to another.
	e.must(k8stest.CreatePV(e.ctx, e.cs, e.rig.Driver, claimed.Slot, &csi.Volume{VolumeId: claimed.Slot, CapacityBytes: claimed.Size}, false, nil))
	t.Cleanup(func() {
		_ = e.cs.CoreV1().PersistentVolumes().Delete(context.Background(), claimed.Slot, metav1.DeleteOptions{})
	})
	e.age(written.FilePath, 0)
	doctor.Cleanup(e.ctx, e.src(), e.st, e.cfg, r, true, nil)
	res := map[string]string{}
	for _, s := range r.Cleanup {
		res[s.Target.Slot] = s.Result
	}
	if res[claimed.Slot] != "skipped" || res[written.Slot] != "skipped" || res[gone.Slot] != "removed" {
		t.Fatalf("cleanup: %+v", r.Cleanup)
	}
	if !e.hasDisk(claimed.Slot) || !e.hasDisk(written.Slot) || e.hasDisk(gone.Slot) {
		t.Fatal("the re-check did not keep what it found named or young")
	}
}

// TestCannotLookIsNeverMissing: with the RDS down, or the API server unreachable, doctor says it
// could not look (exit status 2) and reports nothing missing; a cleanup removes nothing.
func TestCannotLookIsNeverMissing(t *testing.T) {
	e := newEnv(t)
	v := e.volume(rwoMount, nil)
	old := e.disk("pvc-"+newUUID(), 2*time.Hour)

	e.sim.Restart(time.Hour)
	r := doctor.Look(e.ctx, e.src(), e.cfg)
	doctor.Cleanup(e.ctx, e.src(), e.st, e.cfg, r, true, nil)
	if r.Error == "" || len(r.Findings) != 0 || len(r.Cleanup) != 0 || r.ExitCode() != doctor.ExitCannotLook {
		t.Fatalf("RDS down: %+v", r)
	}
	if !strings.Contains(table(t, r), "COULD NOT LOOK") {
		t.Fatalf("table:\n%s", table(t, r))
	}
	t.Logf("RDS down:\n%s", table(t, r))
	e.sim.Restart(0)
	e.must(e.sim.WaitListening(e.ctx))

	bad := kubernetes.NewForConfigOrDie(&rest.Config{Host: "https://127.0.0.1:1", Timeout: 2 * time.Second})
	src := e.src()
	src.Kube = bad
	r = doctor.Look(e.ctx, src, e.cfg)
	if r.Error == "" || len(r.Findings) != 0 || r.ExitCode() != doctor.ExitCannotLook {
		t.Fatalf("API server unreachable: %+v", r)
	}
	t.Logf("API server unreachable:\n%s", table(t, r))
	if !e.hasDisk(v.ID) || !e.hasDisk(old.Slot) {
		t.Fatal("something was removed while doctor could not look")
	}
	if r := e.look(); len(r.Findings) != 1 || r.Findings[0].Volume != old.Slot {
		t.Fatalf("after recovery:\n%s", table(t, r))
	}
}
