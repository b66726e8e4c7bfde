//go:build linux

package main

import (
	"context"
	"fmt"
	"os/exec"
	"strings"
	"syscall"
	"time"
)

// cleanup clears every fault and, with the workers stopped, brings everything down through the CSI
// API as a CO would: pending creates are repeated until they succeed, then volumes are unstaged,
// unpublished and deleted, and snapshots deleted. Each round retries what failed; rounds are
// bounded in number and time. Failures now are judged as always (no fault is active, so they are
// violations once the last fault's grace period is over).
func (s *soak) cleanup(ctx context.Context) {
	fmt.Println("rds-soak: operations over; clearing faults and cleaning up through the CSI API")
	s.env.sim.ResetFaults()
	wctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	if err := s.env.sim.WaitListening(wctx); err != nil {
		s.stats.violation("soak error", "simulator not listening for cleanup: %v", err)
	}
	cancel()
	s.restartMu.Lock()
	if !s.env.drv.running() {
		s.epoch.Add(1)
		if err := s.env.drv.start(); err != nil {
			s.stats.violation("soak error", "starting the driver for cleanup: %v", err)
		}
	}
	s.restartMu.Unlock()
	if err := s.env.awaitReady(context.Background(), time.Minute); err != nil {
		s.stats.violation("no recovery for cleanup", "driver not ready: %v", err)
	}
	deadline := time.Now().Add(5 * time.Minute)
	left := 0
	for round := 0; round < 40 && time.Now().Before(deadline); round++ {
		if left = s.cleanupRound(); left == 0 {
			return
		}
		time.Sleep(250 * time.Millisecond) // a retry pause between rounds, as a CO's backoff
	}
	var names []string
	s.m.do(func() {
		for _, v := range s.m.vols {
			names = append(names, fmt.Sprintf("volume %s (%s, state %d, node %d, holders %v, maybe %v)", v.name, v.id, v.state, v.node, v.holders, v.maybe))
		}
		for _, sn := range s.m.snaps {
			names = append(names, fmt.Sprintf("snapshot %s (%s, state %d)", sn.name, sn.id, sn.state))
		}
	})
	s.stats.violation("cleanup never finished", "%d objects left after 40 rounds or 5 minutes: %s", left, strings.Join(names, "; "))
}

// cleanupRound makes one pass and returns how many volumes and snapshots are still there.
func (s *soak) cleanupRound() int {
	var vols []*vol
	var snaps []*snap
	s.m.do(func() {
		vols = append(vols, s.m.vols...)
		snaps = append(snaps, s.m.snaps...)
	})
	for _, v := range vols {
		if v.state == pending {
			s.createVolume(v, "CreateVolume (repeated)")
		}
	}
	for _, sn := range snaps {
		if sn.state == pending {
			s.createSnapshot(sn, "CreateSnapshot (repeated)")
		}
	}
	for _, v := range vols {
		pins := 0
		s.m.do(func() { pins = v.pins })
		if v.state != pending && pins == 0 {
			s.teardownAndDelete(v)
		}
	}
	for _, sn := range snaps {
		pins := 0
		s.m.do(func() { pins = sn.pins })
		if sn.state != pending && pins == 0 {
			s.deleteSnapshot(sn)
		}
	}
	n := 0
	s.m.do(func() { n = len(s.m.vols) + len(s.m.snaps) })
	return n
}

// checkLeftovers: after the cleanup the RDS holds no disk and no file, and this machine no mount
// and no loop device of the soak. What is found is reported, then removed so that the machine is
// left clean (mounts and loop devices only; the RDS data goes with the work directory).
func (s *soak) checkLeftovers() {
	for _, d := range s.env.sim.Disks() {
		if s.startDisks[d.Slot] {
			continue
		}
		s.stats.violation("left on RDS after cleanup: disk", "disk %s (file %s, %d bytes)", d.Slot, d.FilePath, d.FileSize)
	}
	for _, f := range s.files() {
		if s.startFiles[f] {
			continue
		}
		s.stats.violation("left on RDS after cleanup: file", "file %s", f)
	}
	mounts := mountsUnder(s.env.dir)
	for i := len(mounts) - 1; i >= 0; i-- {
		s.stats.violation("left on node after cleanup: mount", "%s", mounts[i])
		_ = syscall.Unmount(mounts[i], syscall.MNT_DETACH)
	}
	for _, d := range s.loopDevices("") {
		s.stats.violation("left on node after cleanup: loop device", "%s", d)
		_ = exec.Command("losetup", "-d", strings.SplitN(d, "=", 2)[0]).Run()
	}
}
