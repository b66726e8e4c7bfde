package routeros

import (
	"testing"
	"time"
)

func TestParseClock(t *testing.T) {
	want := time.Date(2025, 11, 11, 16, 47, 7, 0, time.UTC)
	for _, out := range []string{
		"                  time: 16:47:07\n                  date: 2025-11-11\n  time-zone-autodetect: yes\n        time-zone-name: Europe/Riga\n            gmt-offset: +02:00\n",
		"  time: 16:47:07\r\n  date: nov/11/2025\r\n",
	} {
		got, err := ParseClock(out)
		if err != nil || !got.Equal(want) {
			t.Errorf("ParseClock(%q) = %v, %v; want %v", out, got, err, want)
		}
	}
	if _, err := ParseClock("uptime: 1d\n"); err == nil {
		t.Error("ParseClock accepted output without a date")
	}
	if got, err := ParseWallTime("2025-11-11 16:47:07"); err != nil || !got.Equal(want) {
		t.Errorf("ParseWallTime = %v, %v", got, err)
	}
	if _, err := ParseWallTime("yesterday"); err == nil {
		t.Error("ParseWallTime accepted a word")
	}
}
