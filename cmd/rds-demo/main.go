// Command rds-demo is `make demo`: it starts the RDS simulator and the rds-csi driver as real
// processes, then drives a full volume lifecycle through the CSI gRPC API (create, publish,
// stage, write, expand, snapshot, restore, read back, tear down), printing each step with its
// duration and a final verdict. When kube-apiserver and etcd have been built (make k8s-bins), a
// second phase runs the controller with --kubeconfig and shows attachments healing by themselves. It cleans up after itself, also when a step fails.
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

func main() {
	var cfg demoConfig
	flag.StringVar(&cfg.driverBin, "driver", "bin/rds-csi", "rds-csi binary")
	flag.StringVar(&cfg.simBin, "simulator", "bin/rdssim", "rdssim binary")
	flag.BoolVar(&cfg.keep, "keep", false, "leave the work directory behind for inspection")
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Fprintln(os.Stderr, "rds-demo needs root: the node service formats and mounts loop devices")
		os.Exit(2)
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()

	start := time.Now()
	d := &demo{cfg: cfg}
	err := d.run(ctx)
	d.cleanup()
	fmt.Println()
	if err != nil {
		fmt.Printf("VERDICT: FAIL after %s: %v\n", time.Since(start).Round(time.Millisecond), err)
		os.Exit(1)
	}
	fmt.Printf("VERDICT: PASS, %d steps in %s\n", d.steps, time.Since(start).Round(time.Millisecond))
}
