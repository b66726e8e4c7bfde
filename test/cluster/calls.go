package cluster

import (
	"bufio"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Call is one CSI call rds-csi served, read back from its log (the test install runs it with
// --v=4, where every call is logged with its duration).
type Call struct {
	Node     string // node whose kubelet runs the pod that served it
	Method   string // e.g. NodeStageVolume
	At       time.Time
	Duration time.Duration
	Failed   bool
}

var (
	callRE  = regexp.MustCompile(`"CSI call( failed)?".*method="/csi\.v1\.[A-Za-z]+/([A-Za-z]+)".*duration="([^"]+)"`)
	klogRE  = regexp.MustCompile(`^[IWEF](\d{4} \d{2}:\d{2}:\d{2}\.\d{6})`)
	criLine = regexp.MustCompile(`^\S+ (stdout|stderr) [FP] `)
)

// CSICalls returns the CSI calls rds-csi logged since a time, on every node (dead ones too:
// their logs stay on disk), in no particular order.
func (c *Cluster) CSICalls(since time.Time) []Call {
	var out []Call
	for _, n := range c.Nodes {
		files, _ := filepath.Glob(filepath.Join(n.dir, "logs", Namespace+"_*", "rds-csi", "*.log"))
		for _, f := range files {
			out = append(out, readCalls(f, n.Name, since)...)
		}
	}
	return out
}

func readCalls(path, node string, since time.Time) []Call {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []Call
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	year := time.Now().Year()
	for sc.Scan() {
		line := criLine.ReplaceAllString(sc.Text(), "")
		m := callRE.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		h := klogRE.FindStringSubmatch(line)
		if h == nil {
			continue
		}
		at, err := time.ParseInLocation("2006 0102 15:04:05.000000", strconv.Itoa(year)+" "+h[1], time.Local)
		if err != nil || at.Before(since) {
			continue
		}
		d, err := time.ParseDuration(m[3])
		if err != nil {
			continue
		}
		out = append(out, Call{Node: node, Method: m[2], At: at, Duration: d, Failed: m[1] != ""})
	}
	return out
}

// ContainerLog returns the last lines of a container's log in the install's pods, every node.
func (c *Cluster) ContainerLog(container string, lines int) string {
	var b strings.Builder
	for _, n := range c.Nodes {
		files, _ := filepath.Glob(filepath.Join(n.dir, "logs", Namespace+"_*", container, "*.log"))
		for _, f := range files {
			b.WriteString("== " + n.Name + " " + f + "\n" + tail(f, lines) + "\n")
		}
	}
	return b.String()
}
