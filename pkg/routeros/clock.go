package routeros

import (
	"fmt"
	"strings"
	"time"
)

// ClockPrint reads the RDS's wall clock: `/system clock print`.
func ClockPrint() Command { return Command{line: "/system clock print"} }

// ParseClock reads the answer of ClockPrint ("time: 16:47:07" and "date: 2025-11-11" or
// "date: nov/11/2025" lines) as a wall-clock time, returned in UTC without any zone conversion:
// it compares with ParseWallTime's dates of the same RDS, whatever its zone.
func ParseClock(out string) (time.Time, error) {
	kv := map[string]string{}
	for _, line := range strings.FieldsFunc(out, func(r rune) bool { return r == '\n' || r == '\r' }) {
		k, v, ok := strings.Cut(line, ":")
		if ok {
			kv[strings.TrimSpace(k)] = strings.TrimSpace(v)
		}
	}
	if kv["date"] == "" || kv["time"] == "" {
		return time.Time{}, Errorf(KindInternal, "no date and time in the RDS clock output %q", truncate(out))
	}
	return ParseWallTime(kv["date"] + " " + kv["time"])
}

// ParseWallTime reads a RouterOS date and time ("2025-11-11 16:47:07" or "nov/11/2025
// 16:47:07"), the RDS's local time, into a time in UTC without zone conversion.
func ParseWallTime(s string) (time.Time, error) {
	s = strings.TrimSpace(s)
	for _, layout := range []string{"2006-01-02 15:04:05", "Jan/02/2006 15:04:05"} {
		if t, err := time.Parse(layout, normalizeMonth(s)); err == nil {
			return t, nil
		}
	}
	return time.Time{}, Errorf(KindInternal, "unreadable RDS date %q", truncate(s))
}

// normalizeMonth capitalises a leading month abbreviation ("nov/11/2025" → "Nov/11/2025").
func normalizeMonth(s string) string {
	if len(s) > 3 && s[3] == '/' && s[0] >= 'a' && s[0] <= 'z' {
		return strings.ToUpper(s[:1]) + s[1:]
	}
	return s
}

func truncate(s string) string {
	if len(s) > 200 {
		return fmt.Sprintf("%s...", s[:200])
	}
	return s
}
