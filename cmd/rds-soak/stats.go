//go:build linux

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"sync"
	"time"

	"google.golang.org/grpc/codes"
)

// Fault kinds, as printed.
const (
	faultDrop       = "connection-cut"
	faultHang       = "hung-commands"
	faultRestart    = "rds-restart"
	faultLatency    = "latency-spike"
	faultOutOfSpace = "out-of-space"
	faultKill       = "driver-kill-9"
	faultCrash      = "driver-crash" // not injected: the driver exited by itself (also a violation)
)

var faultKinds = []string{faultDrop, faultHang, faultRestart, faultLatency, faultOutOfSpace, faultKill}

// window is the time a fault may explain failures: from injection until the fault is cleared and
// Probe answers ready again, plus a grace period (see soak.grace).
type window struct {
	kind       string
	detail     string
	start, end time.Time // end is zero while the fault lasts
}

// opCount counts the outcomes of one kind of call.
type opCount struct {
	OK      int `json:"ok"`
	Refused int `json:"refused"` // the expected refusal (a second node's publish of a held volume)
	Failed  int `json:"failed"`  // failures explained by a fault (or Aborted)
}

type stats struct {
	mu         sync.Mutex
	ops        map[string]*opCount
	faults     map[string]int
	windows    []*window
	violations map[string]int
	examples   map[string][]string
}

func newStats() *stats {
	return &stats{ops: map[string]*opCount{}, faults: map[string]int{}, violations: map[string]int{}, examples: map[string][]string{}}
}

func (s *stats) op(name string) *opCount {
	c := s.ops[name]
	if c == nil {
		c = &opCount{}
		s.ops[name] = c
	}
	return c
}

func (s *stats) count(name string, f func(*opCount)) {
	s.mu.Lock()
	defer s.mu.Unlock()
	f(s.op(name))
}

const maxExamples = 3

// violation counts one broken invariant; the first few of each kind are kept as examples.
func (s *stats) violation(kind, format string, args ...any) {
	msg := fmt.Sprintf(format, args...)
	s.mu.Lock()
	defer s.mu.Unlock()
	s.violations[kind]++
	if len(s.examples[kind]) < maxExamples {
		s.examples[kind] = append(s.examples[kind], time.Now().Format("15:04:05.000")+" "+msg)
	}
}

func (s *stats) violationCount() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for _, v := range s.violations {
		n += v
	}
	return n
}

// openWindow records a fault as it is injected.
func (s *stats) openWindow(kind, detail string) *window {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := &window{kind: kind, detail: detail, start: time.Now()}
	s.windows = append(s.windows, w)
	s.faults[kind]++
	return w
}

// closeWindow ends a fault's window at end (the recovery time plus the grace period).
func (s *stats) closeWindow(w *window, end time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w.end = end
}

// overlapping returns the windows that intersect [from, to] and whose kind passes keep.
func (s *stats) overlapping(from, to time.Time, keep func(kind string) bool) []window {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []window
	for _, w := range s.windows {
		if w.start.After(to) || (!w.end.IsZero() && w.end.Before(from)) {
			continue
		}
		if keep(w.kind) {
			out = append(out, *w)
		}
	}
	return out
}

// summary is what --summary-json writes (the Go test reads it).
type summary struct {
	Seed       int64               `json:"seed"`
	Workers    int                 `json:"workers"`
	Duration   string              `json:"duration"`
	Ops        map[string]opCount  `json:"ops"`
	Faults     map[string]int      `json:"faults"`
	Violations map[string]int      `json:"violations"`
	Examples   map[string][]string `json:"examples"`
}

func (s *soak) summary() summary {
	st := s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	out := summary{Seed: s.cfg.seed, Workers: s.cfg.workers, Duration: s.cfg.duration.String(),
		Ops: map[string]opCount{}, Faults: map[string]int{}, Violations: map[string]int{}, Examples: map[string][]string{}}
	for k, v := range st.ops {
		out.Ops[k] = *v
	}
	for k, v := range st.faults {
		out.Faults[k] = v
	}
	for k, v := range st.violations {
		out.Violations[k] = v
		out.Examples[k] = append([]string(nil), st.examples[k]...)
	}
	return out
}

func (s *soak) writeJSON(path string) error {
	b, err := json.MarshalIndent(s.summary(), "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// report prints operations by kind, faults by kind and violations by kind with examples.
func (s *soak) report(w io.Writer) {
	sum := s.summary()
	fmt.Fprintf(w, "\nrds-soak: seed %d, %d workers, %s of operations, then cleanup\n", sum.Seed, sum.Workers, sum.Duration)
	fmt.Fprintf(w, "\n%-44s %7s %8s %7s\n", "operations", "ok", "refused", "failed")
	var tok, tref, tfail int
	for _, k := range sortedKeys(sum.Ops) {
		c := sum.Ops[k]
		tok, tref, tfail = tok+c.OK, tref+c.Refused, tfail+c.Failed
		fmt.Fprintf(w, "  %-42s %7d %8d %7d\n", k, c.OK, c.Refused, c.Failed)
	}
	fmt.Fprintf(w, "  %-42s %7d %8d %7d\n", "total", tok, tref, tfail)
	fmt.Fprintf(w, "  (refused: the expected FailedPrecondition of a publish to a second node; failed: during a fault, or Aborted)\n")
	fmt.Fprintf(w, "\n%-44s %7s\n", "faults injected", "count")
	total := 0
	for _, k := range append(append([]string(nil), faultKinds...), faultCrash) {
		if n, ok := sum.Faults[k]; ok || k != faultCrash {
			fmt.Fprintf(w, "  %-42s %7d\n", k, n)
			total += n
		}
	}
	fmt.Fprintf(w, "  %-42s %7d\n", "total", total)
	nv := 0
	for _, v := range sum.Violations {
		nv += v
	}
	fmt.Fprintf(w, "\n%-44s %7s\n", "violations", "count")
	if nv == 0 {
		fmt.Fprintf(w, "  none\n")
	}
	for _, k := range sortedKeys(sum.Violations) {
		fmt.Fprintf(w, "  %-42s %7d\n", k, sum.Violations[k])
		for _, ex := range sum.Examples[k] {
			fmt.Fprintf(w, "      e.g. %s\n", oneLine(ex, 400))
		}
	}
	fmt.Fprintln(w)
}

func oneLine(s string, limit int) string {
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > limit {
		s = s[:limit] + "..."
	}
	return s
}

// codeName is a gRPC code as the CSI spec writes it.
func codeName(c codes.Code) string { return c.String() }
