package cluster

import (
	"context"
	"testing"
	"time"
)

// Scenario e, KubeVirt's live migration: an RWX block claim is used by pods on two nodes at
// once; a third node is refused with an attach error a user can read, and attaches once one of
// the two has let go.
func TestE_RWXBlockTwoNodes(t *testing.T) {
	c := cluster(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ns := "scenario-e"
	if err := c.CreateNamespace(ctx, ns); err != nil {
		t.Fatal(err)
	}
	if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: "vm", Class: ClassBlockRWX, Size: "64Mi", Block: true, RWX: true}); err != nil {
		t.Fatal(err)
	}
	token := "e-" + time.Now().Format("150405.000")
	for _, p := range []PodSpec{
		{Name: "src", Claim: "vm", Node: "node-b", Token: token, Block: true},
		{Name: "dst", Claim: "vm", Node: "node-c", Token: token, Block: true},
	} {
		if _, err := c.CreatePod(ctx, ns, p); err != nil {
			t.Fatal(err)
		}
		if _, err := c.WaitPodReady(ctx, ns, p.Name, 3*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	_, pv, err := c.WaitPVCBound(ctx, ns, "vm", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	vas, err := c.VolumeAttachments(ctx, pv.Name)
	if err != nil {
		t.Fatal(err)
	}
	if len(vas) != 2 || !vas["node-b"].Status.Attached || !vas["node-c"].Status.Attached {
		t.Fatalf("attachments of %s: %v; want node-b and node-c attached", pv.Name, vaSummary(vas))
	}

	// A third node is refused, in words.
	if _, err := c.CreatePod(ctx, ns, PodSpec{Name: "third", Claim: "vm", Node: "node-a", Token: token, Block: true}); err != nil {
		t.Fatal(err)
	}
	var msg string
	err = waitFor(ctx, 2*time.Minute, func() (bool, error) {
		vas, err := c.VolumeAttachments(ctx, pv.Name)
		if err != nil {
			return false, nil
		}
		va, ok := vas["node-a"]
		if ok && va.Status.Attached {
			return false, errorf("%s attached to a third node (node-a) while node-b and node-c hold it", pv.Name)
		}
		if ok && va.Status.AttachError != nil {
			msg = va.Status.AttachError.Message
			return true, nil
		}
		return false, nil
	})
	if err != nil {
		t.Fatalf("no attach error for the third node: %v", err)
	}
	t.Logf("attach error of the third node: %s", msg)
	if routerOSCommand.MatchString(msg) {
		t.Errorf("the attach error holds a RouterOS command line: %q", msg)
	}
	for _, want := range []string{"node-b", "node-c"} {
		if !contains(msg, want) {
			t.Errorf("the attach error does not name %s, which holds the volume: %q", want, msg)
		}
	}

	// One of the two leaves: the third attaches and reads the data.
	if err := c.DeletePod(ctx, ns, "src", 2*time.Minute); err != nil {
		t.Fatal(err)
	}
	if _, err := c.WaitPodReady(ctx, ns, "third", 3*time.Minute); err != nil {
		t.Fatal(err)
	}
	checkAttachedTo(ctx, t, c, pv.Name, "node-a", "node-c")
	for _, p := range []string{"dst", "third"} {
		if err := c.DeletePod(ctx, ns, p, 2*time.Minute); err != nil {
			t.Fatal(err)
		}
	}
	deleteClaims(ctx, t, c, ns)
}
