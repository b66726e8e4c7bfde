//go:build linux

// Command rds-soak is the chaos soak of `make soak`: several workers make random CSI calls through
// the gRPC API of the real rds-csi binary (controller and node, loop devices over the simulator's
// files, real mkfs and mounts) while a fault driver cuts connections, hangs commands, restarts the
// RDS, adds latency, fills the pool and kill -9s the driver. Invariants are checked throughout and
// every violation is counted by kind; the exit status is non-zero on any violation.
//
// Everything random comes from --seed, which is printed, so a failing run can be replayed (the
// interleaving of the workers is up to the scheduler, so a replay is similar, not identical).
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"
)

type config struct {
	duration     time.Duration
	workers      int
	seed         int64
	driverBin    string
	workDir      string
	keep         bool
	opTimeout    time.Duration
	rdsTimeout   time.Duration
	faultEvery   time.Duration
	maxVolumes   int
	maxSnapshots int
	maxStaged    int
	summaryJSON  string
	noFaults     bool
}

func main() {
	var c config
	flag.DurationVar(&c.duration, "duration", 10*time.Minute, "how long workers start new operations (cleanup and checks come after)")
	flag.IntVar(&c.workers, "workers", 4, "concurrent workers making CSI calls")
	flag.Int64Var(&c.seed, "seed", 0, "random seed (0: from the clock); printed, so a run can be replayed")
	flag.StringVar(&c.driverBin, "driver", "", "rds-csi binary (default: built with `go build` into the work directory)")
	flag.StringVar(&c.workDir, "work-dir", "", "directory for the simulator data, mounts and logs (default: a new temporary directory)")
	flag.BoolVar(&c.keep, "keep", false, "keep the work directory (it is always kept when a violation was found)")
	flag.DurationVar(&c.opTimeout, "op-timeout", 30*time.Second, "deadline of one CSI call")
	flag.DurationVar(&c.rdsTimeout, "rds-command-timeout", 5*time.Second, "the driver's --rds-command-timeout (hung commands are abandoned after it)")
	flag.DurationVar(&c.faultEvery, "fault-every", 0, "mean calm time between two faults (default: duration/40, between 1s and 10s)")
	flag.IntVar(&c.maxVolumes, "max-volumes", 10, "most volumes existing at once")
	flag.IntVar(&c.maxSnapshots, "max-snapshots", 6, "most snapshots existing at once")
	flag.IntVar(&c.maxStaged, "max-staged", 4, "most volumes staged at once (each is a loop device and a mount)")
	flag.StringVar(&c.summaryJSON, "summary-json", "", "also write the figures as JSON to this file")
	flag.BoolVar(&c.noFaults, "no-faults", false, "inject no faults (a baseline: any failure at all is then a violation)")
	flag.Parse()
	if c.seed == 0 {
		c.seed = time.Now().UnixNano()
	}
	if c.workers < 1 || c.duration <= 0 || c.maxVolumes < 2 || c.maxStaged < 1 {
		fmt.Fprintln(os.Stderr, "rds-soak: --workers and --max-staged must be at least 1, --max-volumes at least 2, --duration positive")
		os.Exit(2)
	}
	if c.faultEvery <= 0 {
		c.faultEvery = min(max(c.duration/40, time.Second), 10*time.Second)
	}
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "rds-soak: needs root (loop devices, mkfs, mounts)")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	violations, err := run(ctx, &c)
	if err != nil {
		fmt.Fprintf(os.Stderr, "rds-soak: %v (seed %d)\n", err, c.seed)
		os.Exit(2)
	}
	if violations > 0 {
		fmt.Printf("rds-soak: FAILED with %d violations (replay with --seed=%d)\n", violations, c.seed)
		os.Exit(1)
	}
	fmt.Printf("rds-soak: PASSED (seed %d)\n", c.seed)
}

// run sets up the simulator and the driver, runs the workers and the fault driver for the
// duration, cleans up, checks what is left on the RDS and prints the figures. It returns the
// number of violations; an error means the soak itself could not run.
func run(ctx context.Context, c *config) (int, error) {
	s, err := newSoak(ctx, c)
	if err != nil {
		return 0, err
	}
	fmt.Printf("rds-soak: seed %d, %d workers, duration %v, fault every ~%v, work directory %s\n",
		c.seed, c.workers, c.duration, c.faultEvery, s.env.dir)
	defer s.close()
	if !s.ext4OnlineGrow {
		fmt.Println("rds-soak: no CAP_SYS_RESOURCE here, so a mounted ext4 cannot grow: only xfs volumes are expanded")
	}
	if err := s.env.awaitReady(ctx, time.Minute); err != nil {
		return 0, fmt.Errorf("driver never became ready: %w", err)
	}
	s.soak(ctx)
	s.cleanup(ctx)
	s.checkLeftovers()
	s.report(os.Stdout)
	if c.summaryJSON != "" {
		if err := s.writeJSON(c.summaryJSON); err != nil {
			return 0, err
		}
	}
	return s.stats.violationCount(), nil
}
