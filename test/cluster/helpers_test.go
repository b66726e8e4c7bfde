package cluster

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

const corev1ReclaimDelete = corev1.PersistentVolumeReclaimDelete

type storagev1VA = storagev1.VolumeAttachment

func hasSuffixIn(list []string, suffix string) bool {
	for _, s := range list {
		if strings.HasSuffix(s, suffix) {
			return true
		}
	}
	return false
}

// checkAttached asserts that the PV's only VolumeAttachment is on node and attached.
func checkAttached(ctx context.Context, t *testing.T, c *Cluster, pv, node string) {
	t.Helper()
	vas, err := c.VolumeAttachments(ctx, pv)
	if err != nil {
		t.Fatal(err)
	}
	va, ok := vas[node]
	if !ok || !va.Status.Attached || len(vas) != 1 {
		t.Errorf("VolumeAttachments of %s: %v; want one, attached, on %s", pv, vaSummary(vas), node)
	}
}

// checkDetached waits until the PV has no VolumeAttachment, then asserts the node holds no mount
// and no loop device of it.
func checkDetached(ctx context.Context, t *testing.T, c *Cluster, pv *corev1.PersistentVolume, node string, disk rdssim.Disk) {
	t.Helper()
	var last map[string]string
	err := waitFor(ctx, 2*time.Minute, func() (bool, error) {
		vas, err := c.VolumeAttachments(ctx, pv.Name)
		if err != nil {
			return false, err
		}
		last = vaSummary(vas)
		return len(vas) == 0, nil
	})
	if err != nil {
		t.Fatalf("%s still has VolumeAttachments %v after its pod went: %v", pv.Name, last, err)
	}
	n := c.Node(node)
	if m, err := n.VolumeMounts(pv); err != nil || len(m) != 0 {
		t.Errorf("on %s after detach, mounts of %s: %v (%v); want none", node, pv.Name, m, err)
	}
	if l := n.LoopFor(disk); len(l) != 0 {
		t.Errorf("on %s after detach, loop devices of %s: %v; want none", node, disk.FilePath, l)
	}
	if _, ok := c.Disk(disk.Slot); !ok {
		t.Errorf("disk %s is gone from the RDS after a detach; it must stay", disk.Slot)
	}
}

func vaSummary(vas map[string]storagev1VA) map[string]string {
	out := map[string]string{}
	for n, va := range vas {
		s := "attached=" + boolString(va.Status.Attached)
		if va.Status.AttachError != nil {
			s += " error=" + va.Status.AttachError.Message
		}
		if va.DeletionTimestamp != nil {
			s += " deleting"
		}
		out[n] = s
	}
	return out
}

func boolString(b bool) string {
	if b {
		return "true"
	}
	return "false"
}

func contains(s, sub string) bool { return strings.Contains(s, sub) }

func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }

// checkAttachedTo waits until the PV is attached to exactly these nodes.
func checkAttachedTo(ctx context.Context, t *testing.T, c *Cluster, pv string, nodes ...string) {
	t.Helper()
	var last map[string]string
	err := waitFor(ctx, time.Minute, func() (bool, error) {
		vas, err := c.VolumeAttachments(ctx, pv)
		if err != nil {
			return false, nil
		}
		last = vaSummary(vas)
		ok := len(vas) == len(nodes)
		for _, n := range nodes {
			ok = ok && vas[n].Status.Attached
		}
		return ok, nil
	})
	if err != nil {
		t.Errorf("attachments of %s: %v; want %v attached: %v", pv, last, nodes, err)
	}
}
