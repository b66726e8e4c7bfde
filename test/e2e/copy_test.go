package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// A 64 MiB copy takes 3 s on this simulated RDS: three times the client's command deadline and
// six times each CSI call's deadline. Snapshot, restore and clone are retried as a CO retries them.
func TestSlowCopiesAreMadeOnceAndLeaveNothing(t *testing.T) {
	const volSize = 64 << 20
	e := startTuned(t, func(ts *rdssim.TestServer) {
		ts.SetCopyModel(time.Duration(3*float64(time.Second)*float64(1<<30)/volSize), false)
	}, func(c *rds.Config) { c.CommandTimeout = time.Second })
	vol := e.create(t, "copy-source", nil)
	payload := []byte("written before the snapshot\n")
	if err := os.WriteFile(e.ts.HostPath("/storage-pool/kubernetes-volumes/"+vol.VolumeId+".img"), payload, 0); err != nil {
		t.Fatal(err)
	}

	var snapID string
	retry(t, "CreateSnapshot", func(ctx context.Context) error {
		r, err := e.ctl.CreateSnapshot(ctx, &csi.CreateSnapshotRequest{Name: "slow-snap", SourceVolumeId: vol.VolumeId})
		if err == nil {
			if !r.Snapshot.ReadyToUse {
				t.Fatal("snapshot not ready")
			}
			snapID = r.Snapshot.SnapshotId
		}
		return err
	})
	wantCopies(t, e.ts, 1)
	var restoredID, cloneID string
	retry(t, "CreateVolume from the snapshot", func(ctx context.Context) error {
		r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "slow-restore", VolumeCapabilities: []*csi.VolumeCapability{fsCap},
			CapacityRange: &csi.CapacityRange{RequiredBytes: volSize}, VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Snapshot{
				Snapshot: &csi.VolumeContentSource_SnapshotSource{SnapshotId: snapID}}}})
		if err == nil {
			restoredID = r.Volume.VolumeId
		}
		return err
	})
	wantCopies(t, e.ts, 2)
	retry(t, "CreateVolume as a clone", func(ctx context.Context) error {
		r, err := e.ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: "slow-clone", VolumeCapabilities: []*csi.VolumeCapability{fsCap},
			CapacityRange: &csi.CapacityRange{RequiredBytes: volSize}, VolumeContentSource: &csi.VolumeContentSource{Type: &csi.VolumeContentSource_Volume{
				Volume: &csi.VolumeContentSource_VolumeSource{VolumeId: vol.VolumeId}}}})
		if err == nil {
			cloneID = r.Volume.VolumeId
		}
		return err
	})
	wantCopies(t, e.ts, 3)
	for _, id := range []string{restoredID, cloneID} {
		got, err := os.ReadFile(e.ts.HostPath("/storage-pool/kubernetes-volumes/" + id + ".img"))
		if err != nil || !strings.HasPrefix(string(got), string(payload)) {
			t.Fatalf("volume %s does not hold the source's data (%v)", id, err)
		}
	}

	retry(t, "DeleteSnapshot", func(ctx context.Context) error {
		_, err := e.ctl.DeleteSnapshot(ctx, &csi.DeleteSnapshotRequest{SnapshotId: snapID})
		return err
	})
	for _, id := range []string{restoredID, cloneID, vol.VolumeId} {
		retry(t, "DeleteVolume", func(ctx context.Context) error {
			_, err := e.ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id})
			return err
		})
	}
	if d := e.ts.Disks(); len(d) != 0 {
		t.Fatalf("disks left on the RDS: %+v", d)
	}
	var files []string
	_ = filepath.WalkDir(e.ts.DataDir(), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".img") {
			files = append(files, p)
		}
		return err
	})
	if len(files) != 0 {
		t.Fatalf("files left on the RDS: %v", files)
	}
}

// retry calls op with a 500 ms deadline, as a CO's sidecar would with a short timeout, until it
// succeeds; meanwhile only "try again" answers are allowed.
func retry(t *testing.T, what string, op func(context.Context) error) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
		err := op(ctx)
		cancel()
		if err == nil {
			return
		}
		switch status.Code(err) {
		case codes.DeadlineExceeded, codes.Aborted, codes.Unavailable:
		default:
			t.Fatalf("%s: %v, want success or a retryable code", what, err)
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s never succeeded: %v", what, err)
		}
		time.Sleep(50 * time.Millisecond) // the CO's retry interval
	}
}

func wantCopies(t *testing.T, ts *rdssim.TestServer, want int) {
	t.Helper()
	n := 0
	for _, c := range ts.Commands() {
		if strings.Contains(c, "copy-from=") {
			n++
		}
	}
	if n != want {
		t.Fatalf("the RDS received %d copy commands, want %d", n, want)
	}
}
