package routeros

import (
	"fmt"
	"math"
	"strconv"
	"strings"
)

// ParseGroupedInt parses an exact integer that RouterOS may print with digit groups separated by
// spaces ("53 687 091 200"). The parser already joins the groups; this also accepts them unjoined.
func ParseGroupedInt(s string) (int64, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if t == "" {
		return 0, fmt.Errorf("empty number")
	}
	n, err := strconv.ParseInt(t, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("bad number %q", s)
	}
	return n, nil
}

var binaryUnits = []struct {
	suffix string
	mult   float64
}{
	{"TiB", 1 << 40}, {"GiB", 1 << 30}, {"MiB", 1 << 20}, {"KiB", 1 << 10},
	{"TB", 1e12}, {"GB", 1e9}, {"MB", 1e6}, {"kB", 1e3}, {"KB", 1e3},
	{"T", 1 << 40}, {"G", 1 << 30}, {"M", 1 << 20}, {"k", 1 << 10}, {"K", 1 << 10},
	{"B", 1},
}

// ParseHumanSize parses a human readable size such as "50.0GiB" or "1024.0MiB". The result is only
// as exact as the printed figure; exact sizes come from the `size` field instead.
func ParseHumanSize(s string) (int64, error) {
	t := strings.ReplaceAll(strings.TrimSpace(s), " ", "")
	if t == "" {
		return 0, fmt.Errorf("empty size")
	}
	mult := 1.0
	for _, u := range binaryUnits {
		if strings.HasSuffix(t, u.suffix) {
			mult = u.mult
			t = strings.TrimSuffix(t, u.suffix)
			break
		}
	}
	f, err := strconv.ParseFloat(t, 64)
	if err != nil || f < 0 || math.IsInf(f, 0) || math.IsNaN(f) {
		return 0, fmt.Errorf("bad size %q", s)
	}
	v := f * mult
	if v >= math.MaxInt64 {
		return 0, fmt.Errorf("size %q out of range", s)
	}
	return int64(math.Round(v)), nil
}
