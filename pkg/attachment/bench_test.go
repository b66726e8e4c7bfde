package attachment

import (
	"context"
	"testing"
)

func TestBenchPassCounts(t *testing.T) {
	r, err := BenchPass(context.Background(), PassBenchConfig{VolumeAttachments: 2000, Nodes: 200})
	if err != nil {
		t.Fatal(err)
	}
	f := r.First.Result
	// 2 of 200 nodes deleted, 2 out of service, 2 NotReady; 10 attachments per node; 1% disks
	// missing; 10 orphan exports.
	if len(f.Released) != 40 || f.NotReadyHolders != 20 || f.MissingDiskVolumes != 20 || f.OrphanExportDisks != 10 || f.Attachments != 1960 {
		t.Fatalf("first pass: released %d, notReady %d, missing %d, orphans %d, attachments %d",
			len(f.Released), f.NotReadyHolders, f.MissingDiskVolumes, f.OrphanExportDisks, f.Attachments)
	}
	if r.First.GETs != 2 || r.First.Events != 40+20+20 {
		t.Fatalf("first pass: %v, want 2 GETs (the deleted nodes) and 80 events", r.First)
	}
	if r.Steady.APICalls != 0 || r.Steady.Result.Attachments != 1960 {
		t.Fatalf("steady pass: %v, attachments %d", r.Steady, r.Steady.Result.Attachments)
	}
}

// BenchmarkReconcilePass: one steady pass over 10,000 VolumeAttachments on 1,000 nodes.
func BenchmarkReconcilePass(b *testing.B) {
	pb, err := newPassBench(PassBenchConfig{})
	if err != nil {
		b.Fatal(err)
	}
	defer pb.m.Stop()
	pb.m.Reconcile(context.Background())
	b.ResetTimer()
	for b.Loop() {
		pb.m.Reconcile(context.Background())
	}
}
