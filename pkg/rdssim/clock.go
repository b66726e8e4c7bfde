package rdssim

import (
	"fmt"
	"time"
)

// clock is the answer to `/system clock print`: the RDS's wall clock in its own time zone, which
// is the zone of its `/file` last-modified dates (the simulator's are its process's local time).
func clock(now time.Time) string {
	_, off := now.Zone()
	sign := "+"
	if off < 0 {
		sign, off = "-", -off
	}
	return renderKV([][2]string{
		{"time", now.Format("15:04:05")},
		{"date", now.Format("2006-01-02")},
		{"time-zone-autodetect", "no"},
		{"time-zone-name", now.Location().String()},
		{"gmt-offset", fmt.Sprintf("%s%02d:%02d", sign, off/3600, off%3600/60)},
		{"dst-active", "no"},
	})
}
