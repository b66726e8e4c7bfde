package rdssim

import (
	"strings"
	"testing"
	"time"
)

func TestClockPrint(t *testing.T) {
	c, err := parse("/system clock print")
	if err != nil || c.kind != cmdClockPrint {
		t.Fatalf("parse: %v, %+v", err, c)
	}
	out := clock(time.Date(2025, 11, 11, 16, 47, 7, 0, time.UTC))
	for _, want := range []string{"time: 16:47:07\n", "date: 2025-11-11\n"} {
		if !strings.Contains(out, want) {
			t.Fatalf("clock output %q lacks %q", out, want)
		}
	}
}
