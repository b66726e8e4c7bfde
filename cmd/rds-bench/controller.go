package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials/insecure"

	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/routeros"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// csiController is the controller service over a real gRPC unix socket.
type csiController struct {
	csi.ControllerClient
	conn   *grpc.ClientConn
	cancel context.CancelFunc
	dir    string
}

func startController(backend rds.Backend) (*csiController, error) {
	d, err := driver.New(driver.Options{Controller: true, NodeID: "bench-node", DefaultParams: driver.Defaults{NVMeAddress: "127.0.0.1"}}, backend, nil, nil)
	if err != nil {
		return nil, err
	}
	dir, err := os.MkdirTemp("", "rds-bench-csi-")
	if err != nil {
		return nil, err
	}
	sock := filepath.Join(dir, "csi.sock")
	lis, err := net.Listen("unix", sock)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	go func() { _ = d.ServeListener(ctx, lis) }()
	conn, err := grpc.NewClient("unix://"+sock, grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		cancel()
		return nil, err
	}
	return &csiController{ControllerClient: csi.NewControllerClient(conn), conn: conn, cancel: cancel, dir: dir}, nil
}

func (c *csiController) close() {
	_ = c.conn.Close()
	c.cancel()
	_ = os.RemoveAll(c.dir)
}

var volCap = &csi.VolumeCapability{AccessType: &csi.VolumeCapability_Mount{Mount: &csi.VolumeCapability_MountVolume{}},
	AccessMode: &csi.VolumeCapability_AccessMode{Mode: csi.VolumeCapability_AccessMode_SINGLE_NODE_WRITER}}

func benchController(ctx context.Context, o benchOptions) error {
	s, err := startSim()
	if err != nil {
		return err
	}
	defer s.close()
	client, err := s.newClient(16)
	if err != nil {
		return err
	}
	defer client.Close()
	st := rds.NewStorage(client)
	ctl, err := startController(st)
	if err != nil {
		return err
	}
	defer ctl.close()

	const n = 100
	var create, del, rawCreate, rawDel latencies
	for i := 0; i < n; i++ {
		t := time.Now()
		resp, err := ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("bench-%d", i),
			VolumeCapabilities: []*csi.VolumeCapability{volCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
		if err != nil {
			return err
		}
		create = append(create, time.Since(t))
		t = time.Now()
		if _, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: resp.Volume.VolumeId}); err != nil {
			return err
		}
		del = append(del, time.Since(t))

		// The same RouterOS commands the driver issues, straight through the client.
		slot := fmt.Sprintf("pvc-raw-%d", i)
		path := "/storage-pool/kubernetes-volumes/" + slot + ".img"
		add, _ := routeros.DiskAdd(routeros.DiskSpec{Slot: slot, FilePath: path, Size: 1 << 30, Export: true, Port: 4420, NQN: volid.NQN(slot)})
		get, _ := routeros.DiskPrint(slot)
		rm, _ := routeros.DiskRemove(slot)
		frm, _ := routeros.FileRemove(path)
		fget, _ := routeros.FilePrint(path)
		t = time.Now()
		for _, c := range []routeros.Command{add, get} {
			if _, err := client.Run(ctx, c); err != nil {
				return err
			}
		}
		rawCreate = append(rawCreate, time.Since(t))
		t = time.Now()
		for _, c := range []routeros.Command{get, rm, frm, fget} {
			if _, err := client.Run(ctx, c); err != nil {
				return err
			}
		}
		rawDel = append(rawDel, time.Since(t))
	}
	fmt.Println("== CSI controller over gRPC vs the raw RouterOS commands it issues (baseline), 100 volumes of 1 GiB")
	fmt.Printf("%-14s %10s %10s | %10s %10s | %s\n", "operation", "CSI p50", "CSI p99", "raw p50", "raw p99", "overhead (p50 CSI/raw)")
	fmt.Printf("%-14s %10s %10s | %10s %10s | %s\n", "CreateVolume", ms(create.pct(50)), ms(create.pct(99)), ms(rawCreate.pct(50)), ms(rawCreate.pct(99)),
		ratio(float64(create.pct(50)), float64(rawCreate.pct(50))))
	fmt.Printf("%-14s %10s %10s | %10s %10s | %s\n", "DeleteVolume", ms(del.pct(50)), ms(del.pct(99)), ms(rawDel.pct(50)), ms(rawDel.pct(99)),
		ratio(float64(del.pct(50)), float64(rawDel.pct(50))))

	fmt.Println("\nCreateVolume throughput (each volume deleted outside the timing; the simulator applies disk changes")
	fmt.Println("one at a time and rescans its pool on each, so it bounds the gain from concurrency):")
	var seq atomic.Int64
	var base float64
	for _, conc := range []int{1, 16} {
		var ids []string
		idsCh := make(chan string, 1<<16)
		lat, _, err := runLoad(conc, o.duration, func() error {
			resp, err := ctl.CreateVolume(ctx, &csi.CreateVolumeRequest{Name: fmt.Sprintf("tp-%d", seq.Add(1)),
				VolumeCapabilities: []*csi.VolumeCapability{volCap}, CapacityRange: &csi.CapacityRange{RequiredBytes: 1 << 30}})
			if err == nil {
				idsCh <- resp.Volume.VolumeId
			}
			return err
		})
		if err != nil {
			return err
		}
		close(idsCh)
		for id := range idsCh {
			ids = append(ids, id)
		}
		rate := float64(len(lat)) / o.duration.Seconds()
		if conc == 1 {
			base = rate
		}
		fmt.Printf("  %2d concurrent: %7.1f volumes/s, p50 %s, p99 %s, speed-up vs 1 concurrent %s\n", conc, rate, ms(lat.pct(50)), ms(lat.pct(99)), ratio(rate, base))
		for _, id := range ids {
			if _, err := ctl.DeleteVolume(ctx, &csi.DeleteVolumeRequest{VolumeId: id}); err != nil {
				return err
			}
		}
	}
	return nil
}
