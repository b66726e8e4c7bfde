// Command rds-bench measures rds-csi against the built-in simulator. Every figure is printed
// beside a baseline measured in the same run, as a ratio, because the machines are shared and
// absolute numbers drift.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"k8s.io/klog/v2"
)

type benchOptions struct {
	duration time.Duration
	only     string
}

func main() {
	klog.InitFlags(nil)
	_ = flag.Set("v", "0")
	_ = flag.Set("logtostderr", "false")
	_ = flag.Set("stderrthreshold", "FATAL")
	var o benchOptions
	flag.DurationVar(&o.duration, "duration", 2*time.Second, "how long each throughput measurement runs")
	flag.StringVar(&o.only, "only", "", "comma-separated sections to run (rds, controller, node, attach, cluster, vm); empty runs all")
	flag.Parse()

	fmt.Printf("rds-bench on %s/%s, %d CPUs (%s), %s\n\n", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), cpuModel(), time.Now().UTC().Format(time.RFC3339))
	ctx := context.Background()
	sections := []struct {
		name string
		run  func(context.Context, benchOptions) error
	}{
		{"rds", benchRDS},
		{"controller", benchController},
		{"attach", benchAttach},
		{"node", benchNode},
		{"cluster", benchCluster},
		{"vm", benchVM},
	}
	failed := false
	for _, s := range sections {
		if o.only != "" && !strings.Contains(","+o.only+",", ","+s.name+",") {
			continue
		}
		if err := s.run(ctx, o); err != nil {
			fmt.Fprintf(os.Stderr, "section %s failed: %v\n", s.name, err)
			failed = true
		}
		fmt.Println()
	}
	if failed {
		os.Exit(1)
	}
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(line, "model name") {
			if i := strings.IndexByte(line, ':'); i >= 0 {
				return strings.TrimSpace(line[i+1:])
			}
		}
	}
	return "unknown CPU"
}

// latencies summarises a set of durations.
type latencies []time.Duration

func (l latencies) pct(p float64) time.Duration {
	if len(l) == 0 {
		return 0
	}
	s := append(latencies(nil), l...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	idx := int(p/100*float64(len(s)-1) + 0.5)
	return s[idx]
}

func ms(d time.Duration) string { return fmt.Sprintf("%.2fms", float64(d)/float64(time.Millisecond)) }

func ratio(a, b float64) string {
	if b == 0 {
		return "n/a"
	}
	return fmt.Sprintf("%.2fx", a/b)
}
