package doctor_test

import (
	"context"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"

	"github.com/srvlab/rds-csi/pkg/doctor"
	"github.com/srvlab/rds-csi/pkg/k8stest"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// TestRunbookScenarios plays the outages of docs/runbook.md and checks what doctor says in each,
// before and after the operator's step. Run with -v to see the tables the runbook quotes.
func TestRunbookScenarios(t *testing.T) {
	expect := func(t *testing.T, e *env, r *doctor.Report, code int, kinds ...doctor.Kind) {
		t.Helper()
		t.Logf("rds-csi doctor:\n%s", table(t, r))
		if r.ExitCode() != code {
			t.Errorf("exit status %d, want %d", r.ExitCode(), code)
		}
		if len(r.Findings) != len(kinds) {
			t.Fatalf("%d findings, want %v", len(r.Findings), kinds)
		}
		for i, k := range kinds {
			if r.Findings[i].Kind != k {
				t.Errorf("finding %d is %s, want %s", i, r.Findings[i].Kind, k)
			}
		}
	}

	t.Run("RDS crash", func(t *testing.T) {
		e := newEnv(t)
		e.must(e.rig.AddNode(e.ctx, "a"))
		v := e.volume(rwoMount, nil)
		e.must(e.rig.Publish(e.ctx, v, "a"))
		// A snapshot was being taken when the RDS went down: its copy is cut, the file stays.
		uid := newUUID()
		prefix, _ := volid.SnapshotIDPrefix("snapshot-" + uid)
		id, _ := volid.SnapshotID(prefix, time.Now(), v.ID)
		e.file(id+".img", 0)
		e.content("content-"+uid[:8], "", uid)

		e.sim.Restart(time.Hour)
		expect(t, e, doctor.Look(e.ctx, e.src(), e.cfg), doctor.ExitCannotLook)

		e.sim.Restart(0)
		e.must(e.sim.WaitListening(e.ctx))
		expect(t, e, e.look(), doctor.ExitOK, doctor.OrphanFile)
	})

	t.Run("node crash", func(t *testing.T) {
		e := newEnv(t)
		e.must(e.rig.AddNode(e.ctx, "a"))
		e.must(e.rig.AddNode(e.ctx, "b"))
		v := e.volume(rwoMount, nil)
		e.must(e.rig.Publish(e.ctx, v, "a"))
		e.must(k8stest.SetReady(e.ctx, e.cs, e.rig.NodeName("a"), corev1.ConditionUnknown))
		expect(t, e, e.look(), doctor.ExitNeedAction, doctor.HolderNotReady)

		// The operator knows the node is off, and taints it as doctor says.
		e.must(k8stest.TaintOutOfService(e.ctx, e.cs, e.rig.NodeName("a")))
		expect(t, e, e.look(), doctor.ExitOK, doctor.HolderOutOfService)
	})

	t.Run("controller crash", func(t *testing.T) {
		e := newEnv(t)
		// CreateVolume made the disk; the controller died before the provisioner heard of it,
		// and the claim was deleted meanwhile: nothing names the disk any more.
		e.rig.M.Stop()
		slot := "pvc-" + newUUID()
		d := e.disk(slot, 0)
		expect(t, e, e.look(), doctor.ExitOK, doctor.OrphanDisk) // young: maybe still being made
		e.age(d.FilePath, 2*time.Hour)
		r := e.look()
		expect(t, e, r, doctor.ExitNeedAction, doctor.OrphanDisk)
		doctor.Cleanup(e.ctx, e.src(), e.st, e.cfg, r, true, nil)
		t.Logf("after rds-csi doctor --cleanup --yes:\n%s", table(t, r))
		if r.ExitCode() != doctor.ExitOK || e.hasDisk(slot) {
			t.Fatalf("cleanup: %+v", r.Cleanup)
		}
	})

	t.Run("network partition", func(t *testing.T) {
		e := newEnv(t)
		e.must(e.rig.AddNode(e.ctx, "a"))
		v := e.volume(rwoMount, nil)
		e.must(e.rig.Publish(e.ctx, v, "a"))
		// Between the nodes and the RDS only: the controller still reaches both sides.
		expect(t, e, e.look(), doctor.ExitOK)

		// Between the controller (and doctor) and the RDS: packets vanish.
		client, err := rds.NewClient(rds.Config{Address: e.sim.Addr(), User: e.sim.User, Signer: e.sim.Signer, HostKey: e.sim.HostKey,
			CommandTimeout: 2 * time.Second, DialTimeout: 2 * time.Second})
		e.must(err)
		defer client.Close()
		src := e.src()
		src.RDS = rds.NewStorage(client)
		e.sim.SetSilent(true)
		ctx, cancel := context.WithTimeout(e.ctx, 10*time.Second)
		defer cancel()
		expect(t, e, doctor.Look(ctx, src, e.cfg), doctor.ExitCannotLook)
		e.sim.SetSilent(false)
	})
}
