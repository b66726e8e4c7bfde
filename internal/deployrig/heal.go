package deployrig

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/container-storage-interface/spec/lib/go/csi"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/wait"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/k8stest"
)

// HealAttachments is the attachment-healing scenario, on the deployed controller: it decides
// attachments from the cluster; it releases by itself the volume of a deleted node and that of a
// node tainted out of service, so that each can be published elsewhere; it posts an
// AttachmentReleased event on each volume's PVC and counts the releases in its metrics; after a
// restart of the process it makes the same decisions from the VolumeAttachments. The controller
// reads the cluster with the rig's kubeconfig only, so with a ServiceAccount's token this proves
// its roles are enough. uid makes the PV names unique on a shared API server.
func HealAttachments(r *Rig, uid int) {
	t := r.T
	nodeA, nodeB, nodeC, nodeD := r.Node("a"), r.Node("b"), r.Node("c"), r.Node("d")
	for _, n := range []string{nodeA, nodeB, nodeC, nodeD} {
		r.AddNode(n)
	}
	c := r.Start()
	if log := c.Log.String(); !strings.Contains(log, "Attachment view synced") || strings.Contains(log, "in memory only") {
		t.Fatalf("controller did not run the Kubernetes-backed attachment manager:\n%s", log)
	}
	pv := fmt.Sprintf("pvc-6f0a4c1e-8d1b-4a53-9a2e-%012d", uid)
	v := r.CreateVolume(c, pv, "data")
	if err := r.Publish(c, pv, v, nodeA); err != nil {
		t.Fatal(err)
	}
	err := r.Publish(c, pv, v, nodeB)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), nodeA) {
		t.Fatalf("publish to node b while node a holds the volume: %v, want FailedPrecondition naming node a", err)
	}

	// Node a is deleted: its volume goes to node b.
	if err := r.Admin.CoreV1().Nodes().Delete(r.Ctx, nodeA, metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	r.publishOnceReleased(c, pv, v, nodeB, "after node a was deleted")
	r.waitEvent(c, "data", attachment.EventReleased, nodeA)

	// Node d, holding another volume, is tainted out of service: that volume goes to node c.
	pv2 := fmt.Sprintf("pvc-7e1b5d2f-9e2c-4b64-8b3f-%012d", uid)
	v2 := r.CreateVolume(c, pv2, "logs")
	if err := r.Publish(c, pv2, v2, nodeD); err != nil {
		t.Fatal(err)
	}
	if err := r.Publish(c, pv2, v2, nodeC); status.Code(err) != codes.FailedPrecondition {
		t.Fatalf("publish to node c while node d holds the volume: %v, want FailedPrecondition", err)
	}
	if err := k8stest.TaintOutOfService(r.Ctx, r.Admin, nodeD); err != nil {
		t.Fatal(err)
	}
	r.publishOnceReleased(c, pv2, v2, nodeC, "after node d was tainted out of service")
	r.waitEvent(c, "logs", attachment.EventReleased, nodeD)

	if m := r.Metrics(); !strings.Contains(m, `rds_csi_attachment_releases_total{reason="node_deleted"} 1`) ||
		!strings.Contains(m, `rds_csi_attachment_releases_total{reason="out_of_service"} 1`) ||
		!strings.Contains(m, "rds_csi_rds_connected 1") {
		t.Errorf("metrics lack the releases or the RDS connection:\n%s", Grep(m, "rds_csi_attachment_releases_total", "rds_csi_rds_connected"))
	}
	if log := c.Log.String(); strings.Contains(log, "forbidden") {
		t.Errorf("the controller was refused a request:\n%s", Grep(log, "forbidden"))
	}

	c.Stop(t)
	c = r.Start()
	err = r.Publish(c, pv, v, nodeC)
	if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), nodeB) {
		t.Fatalf("after a restart, publish to node c while node b holds the volume: %v, want FailedPrecondition naming node b", err)
	}
	if err := r.Publish(c, pv, v, nodeB); err != nil {
		t.Fatalf("after a restart, republish to the holder: %v", err)
	}
	for vol, want := range map[*csi.Volume]string{v: nodeB, v2: nodeC} {
		pub, err := c.Ctl.ControllerGetVolume(r.Ctx, &csi.ControllerGetVolumeRequest{VolumeId: vol.GetVolumeId()})
		if err != nil {
			t.Fatal(err)
		}
		if got := pub.GetStatus().GetPublishedNodeIds(); len(got) != 1 || got[0] != want {
			t.Errorf("published nodes of %s after the restart = %v, want [%s]", vol.GetVolumeId(), got, want)
		}
	}
	if log := c.Log.String(); strings.Contains(log, "forbidden") {
		t.Errorf("the restarted controller was refused a request:\n%s", Grep(log, "forbidden"))
	}
}

// publishOnceReleased publishes v to node until the controller stops refusing it because
// another node holds it (30 s at most).
func (r *Rig) publishOnceReleased(c *Controller, pv string, v *csi.Volume, node, when string) {
	r.T.Helper()
	err := wait.PollUntilContextTimeout(r.Ctx, 10*time.Millisecond, 30*time.Second, true, func(context.Context) (bool, error) {
		err := r.Publish(c, pv, v, node)
		if status.Code(err) == codes.FailedPrecondition {
			return false, nil
		}
		return true, err
	})
	if err != nil {
		r.T.Fatalf("publish to %s %s: %v\nlog:\n%s", node, when, err, c.Log)
	}
}

// waitEvent waits until the controller's event of reason, naming node, is stored on PVC claim.
func (r *Rig) waitEvent(c *Controller, claim, reason, node string) {
	r.T.Helper()
	sel := fields.Set{"involvedObject.kind": "PersistentVolumeClaim", "involvedObject.name": claim, "reason": reason}.AsSelector().String()
	var seen []corev1.Event
	err := wait.PollUntilContextTimeout(r.Ctx, 50*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
		list, err := r.Admin.CoreV1().Events(r.Opts.ClaimNamespace).List(ctx, metav1.ListOptions{FieldSelector: sel})
		if err != nil {
			return false, err
		}
		seen = list.Items
		for _, e := range list.Items {
			if strings.Contains(e.Message, node) && e.Source.Component == r.Opts.Driver+"/attachment" {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		r.T.Fatalf("no %s event naming %s on PVC %s/%s (events: %v): %v\nlog:\n%s", reason, node, r.Opts.ClaimNamespace, claim, seen, err, c.Log)
	}
}
