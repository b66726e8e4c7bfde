// Package soak runs the chaos soak of cmd/rds-soak for a short while, as part of `make test`
// (`make soak` runs it for 10 minutes). It needs root: real loop devices, mkfs and mounts.
package soak

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// summary is the part of rds-soak's --summary-json this test reads.
type summary struct {
	Seed int64 `json:"seed"`
	Ops  map[string]struct {
		OK      int `json:"ok"`
		Refused int `json:"refused"`
		Failed  int `json:"failed"`
	} `json:"ops"`
	Faults     map[string]int      `json:"faults"`
	Violations map[string]int      `json:"violations"`
	Examples   map[string][]string `json:"examples"`
}

// TestChaosSoak builds the driver and the soak with the race detector, runs the soak for
// RDS_SOAK_DURATION (75s by default; RDS_SOAK_SEED replays a run) and asserts that every kind of
// fault and of operation happened, and that no invariant was violated.
func TestChaosSoak(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the soak uses real loop devices, mkfs and mounts: run as root (CI does)")
	}
	duration := 75 * time.Second
	if v := os.Getenv("RDS_SOAK_DURATION"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			t.Fatalf("RDS_SOAK_DURATION: %v", err)
		}
		duration = d
	}
	seed := time.Now().UnixNano()
	if v := os.Getenv("RDS_SOAK_SEED"); v != "" {
		var err error
		if seed, err = strconv.ParseInt(v, 10, 64); err != nil {
			t.Fatalf("RDS_SOAK_SEED: %v", err)
		}
	}
	dir := t.TempDir()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	goBin := os.Getenv("GO")
	if goBin == "" {
		goBin = "go"
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration+15*time.Minute)
	defer cancel()
	for _, b := range []struct{ out, pkg string }{{"rds-csi", "./cmd/rds-csi"}, {"rds-soak", "./cmd/rds-soak"}} {
		cmd := exec.CommandContext(ctx, goBin, "build", "-race", "-o", filepath.Join(dir, b.out), b.pkg)
		cmd.Dir = root
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", b.pkg, err, out)
		}
	}

	sumFile := filepath.Join(dir, "summary.json")
	cmd := exec.CommandContext(ctx, filepath.Join(dir, "rds-soak"), "--duration", duration.String(),
		"--seed", strconv.FormatInt(seed, 10), "--driver", filepath.Join(dir, "rds-csi"), "--summary-json", sumFile)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	runErr := cmd.Run()
	t.Logf("rds-soak output (replay with RDS_SOAK_SEED=%d):\n%s", seed, out.String())
	b, err := os.ReadFile(sumFile)
	if err != nil {
		t.Fatalf("rds-soak wrote no summary (%v): %v", runErr, err)
	}
	var sum summary
	if err := json.Unmarshal(b, &sum); err != nil {
		t.Fatal(err)
	}

	for _, k := range []string{"connection-cut", "hung-commands", "rds-restart", "latency-spike", "out-of-space", "driver-kill-9"} {
		if sum.Faults[k] == 0 {
			t.Errorf("no %s fault was injected", k)
		}
	}
	for _, k := range []string{"CreateVolume", "CreateVolume (clone)", "CreateVolume (from snapshot)", "CreateSnapshot",
		"DeleteSnapshot", "DeleteVolume", "ControllerExpandVolume", "ControllerPublishVolume", "ControllerUnpublishVolume",
		"NodeStageVolume", "NodePublishVolume", "NodeUnpublishVolume", "NodeUnstageVolume", "write data", "verify data"} {
		if sum.Ops[k].OK == 0 {
			t.Errorf("no %s succeeded", k)
		}
	}
	if sum.Ops["ControllerPublishVolume (held by another node)"].Refused == 0 {
		t.Errorf("the single-node publish check never ran (no publish to a second node was refused)")
	}
	kinds := make([]string, 0, len(sum.Violations))
	for k := range sum.Violations {
		kinds = append(kinds, k)
	}
	sort.Strings(kinds)
	for _, k := range kinds {
		t.Errorf("violation %q: %d, e.g. %q", k, sum.Violations[k], sum.Examples[k])
	}
	if (runErr == nil) != (len(kinds) == 0) {
		t.Errorf("rds-soak exit status %v does not match its %d kinds of violations", runErr, len(kinds))
	}
}
