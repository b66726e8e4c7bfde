//go:build vmguest

package guest

import (
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"

	"github.com/srvlab/rds-csi/pkg/driver"
)

// outage is how long the export's port stays down.
const outage = 10 * time.Second

const recordSize = 4096

// writer appends numbered 4 KiB records to a file on the volume, each made durable with fsync
// before the next, and counts the records that are.
type writer struct {
	path  string
	done  atomic.Int64
	stop  chan struct{}
	ended chan struct{}
	err   error
}

func startWriter(t *testing.T, path string) *writer {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	w := &writer{path: path, stop: make(chan struct{}), ended: make(chan struct{})}
	go func() {
		defer close(w.ended)
		defer f.Close()
		buf := make([]byte, recordSize)
		for i := int64(0); ; i++ {
			select {
			case <-w.stop:
				return
			default:
			}
			record(buf, i)
			if _, err := f.Write(buf); err != nil {
				w.err = fmt.Errorf("writing record %d: %w", i, err)
				return
			}
			if err := f.Sync(); err != nil {
				w.err = fmt.Errorf("fsync after record %d: %w", i, err)
				return
			}
			w.done.Store(i + 1)
		}
	}()
	t.Cleanup(func() { w.halt() })
	return w
}

func (w *writer) halt() error {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.ended
	return w.err
}

// record fills buf with record i: its number, then a pattern derived from it.
func record(buf []byte, i int64) {
	binary.LittleEndian.PutUint64(buf, uint64(i))
	for j := 8; j < len(buf); j++ {
		buf[j] = byte(int64(j) * (i + 7))
	}
}

// checkRecords verifies that path holds at least n intact records, in order.
func checkRecords(t *testing.T, path string, n int64) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if int64(len(b)) < n*recordSize {
		t.Fatalf("%s holds %d bytes, but %d records were written and synced", path, len(b), n)
	}
	want := make([]byte, recordSize)
	for i := int64(0); i < int64(len(b))/recordSize; i++ {
		record(want, i)
		if string(b[i*recordSize:(i+1)*recordSize]) != string(want) {
			t.Fatalf("record %d of %s is damaged", i, path)
		}
	}
}

func (e *env) health(t *testing.T, v *volume) []string {
	t.Helper()
	r, err := e.node.NodeGetVolumeHealth(context.Background(), &csi.NodeGetVolumeHealthRequest{VolumeId: v.id,
		VolumePublishPath: v.target, StagingTargetPath: v.stage})
	if err != nil {
		t.Fatalf("NodeGetVolumeHealth: %v", err)
	}
	var reasons []string
	for _, s := range r.GetVolumeHealth().GetHealthStatuses() {
		reasons = append(reasons, s.Reason)
	}
	return reasons
}

func (e *env) portDown(t *testing.T, v *volume, down bool) {
	t.Helper()
	port, err := strconv.Atoi(v.pubCtx[driver.ContextNVMePort])
	if err != nil {
		t.Fatal(err)
	}
	if err := e.ts.SetNVMeTCPPortDown(port, down); err != nil {
		t.Fatal(err)
	}
	if down {
		t.Cleanup(func() { _ = e.ts.SetNVMeTCPPortDown(port, false) })
	}
}

func live(id string) bool { return slices.Contains(controllerStates(id), "live") }

// With ctrl_loss_tmo=-1 (the default), the export's port going away for 10 s while a process
// writes stalls its I/O; once the port is back the controller reconnects, the writes go on and
// nothing synced before, during or after is lost.
func TestTargetOutageReconnectForever(t *testing.T) {
	e := start(t)
	v := e.create(t, "outage-forever", 64<<20, mountCap("ext4"), nil)
	e.attach(t, v)
	w := startWriter(t, filepath.Join(v.target, "records"))
	eventually(t, "the writer got going", time.Minute, func() bool { return w.done.Load() >= 20 })

	e.portDown(t, v, true)
	eventually(t, "the controller noticed the outage", 30*time.Second, func() bool { return !live(v.id) })
	stalledAt := w.done.Load()
	if reasons := e.health(t, v); !slices.Contains(reasons, "NVMeControllerNotLive") {
		t.Errorf("during the outage NodeGetVolumeHealth reports %v, want NVMeControllerNotLive", reasons)
	}
	// The outage itself is the condition under test: it lasts its 10 s whatever happens.
	time.Sleep(outage)
	if n := w.done.Load(); n > stalledAt+1 {
		t.Fatalf("%d records were synced while the target was unreachable", n-stalledAt)
	}
	if states := controllerStates(v.id); len(states) == 0 {
		t.Fatal("with ctrl_loss_tmo=-1 the controller was removed during the outage")
	}
	e.portDown(t, v, false)
	eventually(t, "the controller reconnected", time.Minute, func() bool { return live(v.id) })
	eventually(t, "the writes resumed", time.Minute, func() bool { return w.done.Load() >= stalledAt+20 })
	if err := w.halt(); err != nil {
		t.Fatalf("the writer failed across the outage: %v", err)
	}
	if reasons := e.health(t, v); len(reasons) != 0 {
		t.Errorf("after the outage NodeGetVolumeHealth still reports %v", reasons)
	}
	n := w.done.Load()
	checkRecords(t, filepath.Join(v.target, "records"), n)
	// What the kernel acknowledged reached the RDS: it is there after a restage.
	e.detach(t, v)
	assertDisconnected(t, v.id)
	e.attach(t, v)
	checkRecords(t, filepath.Join(v.target, "records"), n)
	t.Logf("%d records written, %d of them before the outage", n, stalledAt)
}

// With a finite ctrl_loss_tmo the controller gives up during the outage: the writer's fsync fails
// and NodeGetVolumeHealth reports the volume's device gone. Once the port is back, an unstage and
// a stage bring the volume back with what was synced before the outage.
func TestTargetOutageFiniteCtrlLossTmo(t *testing.T) {
	e := start(t)
	v := e.create(t, "outage-finite", 64<<20, mountCap("ext4"),
		map[string]string{driver.ParamCtrlLossTmo: "3", driver.ParamReconnectDelay: "1"})
	e.attach(t, v)
	before := randomBytes(t, 256<<10)
	writeSynced(t, filepath.Join(v.target, "before"), before)
	w := startWriter(t, filepath.Join(v.target, "records"))
	eventually(t, "the writer got going", time.Minute, func() bool { return w.done.Load() >= 5 })

	e.portDown(t, v, true)
	eventually(t, "the controller was given up after ctrl_loss_tmo", time.Minute, func() bool {
		return len(controllerStates(v.id)) == 0
	})
	var werr error
	ended := make(chan struct{})
	go func() { werr = w.halt(); close(ended) }()
	select {
	case <-ended:
	case <-time.After(2 * time.Minute):
		t.Fatal("the writer is still blocked two minutes after the controller was given up")
	}
	if werr == nil {
		t.Fatal("writes and fsyncs went on succeeding after the controller was given up")
	}
	t.Logf("the writer saw the failure: %v", werr)
	if reasons := e.health(t, v); !slices.Contains(reasons, "DeviceNotFound") {
		t.Fatalf("NodeGetVolumeHealth reports %v after the controller was given up, want DeviceNotFound", reasons)
	}

	e.portDown(t, v, false)
	e.detach(t, v)
	assertDisconnected(t, v.id)
	e.attach(t, v)
	readEqual(t, filepath.Join(v.target, "before"), before)
	if reasons := e.health(t, v); len(reasons) != 0 {
		t.Fatalf("after the restage NodeGetVolumeHealth reports %v", reasons)
	}
}
