package cluster

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/srvlab/rds-csi/pkg/rdssim"
)

// The StorageClasses the chart creates (its defaults).
const (
	ClassExt4     = "rds-ext4"
	ClassXFS      = "rds-xfs"
	ClassBlockRWX = "rds-block-rwx"
)

// PVCSpec describes a claim.
type PVCSpec struct {
	Name, Class string
	Size        string // e.g. "64Mi"
	Block, RWX  bool
	// DataSource: a VolumeSnapshot (snapshot.storage.k8s.io) or a PVC (clone) by name.
	SnapshotSource, PVCSource string
}

// CreatePVC creates a claim in namespace ns.
func (c *Cluster) CreatePVC(ctx context.Context, ns string, s PVCSpec) (*corev1.PersistentVolumeClaim, error) {
	pvc := &corev1.PersistentVolumeClaim{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: ns},
		Spec: corev1.PersistentVolumeClaimSpec{
			AccessModes:      []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			StorageClassName: &s.Class,
			Resources:        corev1.VolumeResourceRequirements{Requests: corev1.ResourceList{corev1.ResourceStorage: resource.MustParse(s.Size)}},
		}}
	if s.RWX {
		pvc.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	}
	if s.Block {
		m := corev1.PersistentVolumeBlock
		pvc.Spec.VolumeMode = &m
	}
	if s.SnapshotSource != "" {
		g := "snapshot.storage.k8s.io"
		pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{APIGroup: &g, Kind: "VolumeSnapshot", Name: s.SnapshotSource}
	}
	if s.PVCSource != "" {
		pvc.Spec.DataSource = &corev1.TypedLocalObjectReference{Kind: "PersistentVolumeClaim", Name: s.PVCSource}
	}
	return c.Client.CoreV1().PersistentVolumeClaims(ns).Create(ctx, pvc, metav1.CreateOptions{})
}

// WaitPVCBound waits until the claim is Bound and returns it with its PV.
func (c *Cluster) WaitPVCBound(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.PersistentVolumeClaim, *corev1.PersistentVolume, error) {
	var pvc *corev1.PersistentVolumeClaim
	err := waitFor(ctx, timeout, func() (bool, error) {
		var err error
		pvc, err = c.Client.CoreV1().PersistentVolumeClaims(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		return pvc.Status.Phase == corev1.ClaimBound, nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("PVC %s/%s not Bound: %w; events: %s", ns, name, err, c.Events(ctx, ns, name))
	}
	pv, err := c.Client.CoreV1().PersistentVolumes().Get(ctx, pvc.Spec.VolumeName, metav1.GetOptions{})
	return pvc, pv, err
}

// Events returns the messages of the events about an object, one a line.
func (c *Cluster) Events(ctx context.Context, ns, name string) string {
	evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{FieldSelector: "involvedObject.name=" + name})
	if err != nil {
		return err.Error()
	}
	var b strings.Builder
	for _, e := range evs.Items {
		fmt.Fprintf(&b, "\n  %s %s (%dx): %s", e.Type, e.Reason, e.Count, e.Message)
	}
	return b.String()
}

// PodSpec describes a test pod: it uses the rds-csi image's shell. On a filesystem volume it
// writes Token to <mount>/data unless that file exists, and is Ready only while the file holds
// Token: a Ready pod proves the data was written and read back. On a block volume it writes
// Token at the start of the device unless Keep is set, and is Ready while the device starts
// with it.
type PodSpec struct {
	Name, Claim, Node, Token string
	Block                    bool
	// Labels, e.g. for a Deployment's selector.
	Labels map[string]string
}

const mountPath = "/data"

// Pod builds the pod of a spec (not created: a Deployment may use its template).
func (c *Cluster) Pod(ns string, s PodSpec) *corev1.Pod {
	var script, probe string
	ctr := corev1.Container{Name: "app", Image: c.Image, ImagePullPolicy: corev1.PullIfNotPresent}
	if s.Block {
		dev := "/dev/xvda"
		script = fmt.Sprintf(`[ "$(head -c %d %s)" = %q ] || { printf %%s %q | dd of=%s conv=fsync 2>/dev/null; }; exec sleep infinity`, len(s.Token), dev, s.Token, s.Token, dev)
		probe = fmt.Sprintf(`[ "$(head -c %d %s)" = %q ]`, len(s.Token), dev, s.Token)
		ctr.VolumeDevices = []corev1.VolumeDevice{{Name: "vol", DevicePath: dev}}
	} else {
		f := mountPath + "/data"
		script = fmt.Sprintf(`[ -f %s ] || { echo %q > %s.tmp && sync && mv %s.tmp %s && sync; }; exec sleep infinity`, f, s.Token, f, f, f)
		probe = fmt.Sprintf(`[ "$(cat %s)" = %q ]`, f, s.Token)
		ctr.VolumeMounts = []corev1.VolumeMount{{Name: "vol", MountPath: mountPath}}
	}
	ctr.Command = []string{"/bin/sh", "-c", script}
	ctr.ReadinessProbe = &corev1.Probe{ProbeHandler: corev1.ProbeHandler{Exec: &corev1.ExecAction{Command: []string{"/bin/sh", "-c", probe}}},
		PeriodSeconds: 1, TimeoutSeconds: 5}
	grace := int64(1)
	p := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: s.Name, Namespace: ns, Labels: s.Labels},
		Spec: corev1.PodSpec{
			// Nodes here have no pod network.
			HostNetwork:                   true,
			TerminationGracePeriodSeconds: &grace,
			Containers:                    []corev1.Container{ctr},
			Volumes: []corev1.Volume{{Name: "vol", VolumeSource: corev1.VolumeSource{
				PersistentVolumeClaim: &corev1.PersistentVolumeClaimVolumeSource{ClaimName: s.Claim}}}},
		}}
	if s.Node != "" {
		p.Spec.NodeSelector = map[string]string{"kubernetes.io/hostname": s.Node}
	}
	return p
}

// CreatePod creates the pod of a spec.
func (c *Cluster) CreatePod(ctx context.Context, ns string, s PodSpec) (*corev1.Pod, error) {
	return c.Client.CoreV1().Pods(ns).Create(ctx, c.Pod(ns, s), metav1.CreateOptions{})
}

// WaitPodReady waits until the pod is Ready (its data check passes) and returns it.
func (c *Cluster) WaitPodReady(ctx context.Context, ns, name string, timeout time.Duration) (*corev1.Pod, error) {
	var p *corev1.Pod
	err := waitFor(ctx, timeout, func() (bool, error) {
		var err error
		p, err = c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return false, nil
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return true, nil
			}
		}
		return false, nil
	})
	if err != nil {
		desc := "not found"
		if p != nil {
			desc = fmt.Sprintf("phase %s on %q", p.Status.Phase, p.Spec.NodeName)
			for _, cs := range p.Status.ContainerStatuses {
				desc += "; " + stateString(cs.State)
			}
		}
		return nil, fmt.Errorf("pod %s/%s not Ready (%s): %w; events: %s", ns, name, desc, err, c.Events(ctx, ns, name))
	}
	return p, nil
}

// DeletePod deletes a pod and waits until it is gone (the kubelet unmounted its volumes).
func (c *Cluster) DeletePod(ctx context.Context, ns, name string, timeout time.Duration) error {
	if err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{}); err != nil && !apierrors.IsNotFound(err) {
		return err
	}
	return waitFor(ctx, timeout, func() (bool, error) {
		_, err := c.Client.CoreV1().Pods(ns).Get(ctx, name, metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

// ForceDeletePod deletes a pod without waiting for its kubelet (grace period 0).
func (c *Cluster) ForceDeletePod(ctx context.Context, ns, name string) error {
	zero := int64(0)
	err := c.Client.CoreV1().Pods(ns).Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: &zero})
	if apierrors.IsNotFound(err) {
		return nil
	}
	return err
}

// CreateNamespace creates a namespace for one test.
func (c *Cluster) CreateNamespace(ctx context.Context, name string) error {
	_, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: name}}, metav1.CreateOptions{})
	return err
}

// VolumeAttachments returns the attachments of a PV by node name, with their attached status.
func (c *Cluster) VolumeAttachments(ctx context.Context, pv string) (map[string]storagev1.VolumeAttachment, error) {
	vas, err := c.Client.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, err
	}
	out := map[string]storagev1.VolumeAttachment{}
	for _, va := range vas.Items {
		if va.Spec.Source.PersistentVolumeName != nil && *va.Spec.Source.PersistentVolumeName == pv {
			out[va.Spec.NodeName] = va
		}
	}
	return out, nil
}

// Disk returns the simulator's disk of a volume handle (the disk slot), if it exists.
func (c *Cluster) Disk(handle string) (rdssim.Disk, bool) {
	for _, d := range c.Sim.Disks() {
		if d.Slot == handle {
			return d, true
		}
	}
	return rdssim.Disk{}, false
}

// VolumeMounts returns the node's mounts of a PV: the kubelet's staging mount (its directory is
// named by the SHA-256 of the volume handle) and the pods' publish mounts (named by the PV).
func (n *Node) VolumeMounts(pv *corev1.PersistentVolume) ([]string, error) {
	ms, err := n.Mounts(pv.Name)
	if err != nil || pv.Spec.CSI == nil {
		return ms, err
	}
	staging, err := n.Mounts(fmt.Sprintf("%x", sha256.Sum256([]byte(pv.Spec.CSI.VolumeHandle))))
	return append(ms, staging...), err
}

// Mounts returns the mount points in the node's mount namespace under the kubelet directory whose
// path contains substr.
func (n *Node) Mounts(substr string) ([]string, error) {
	if n.anchor == nil || n.anchor.exited() {
		return nil, fmt.Errorf("node %s is off", n.Name)
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(n.anchor.cmd.Process.Pid) + "/mountinfo")
	if err != nil {
		return nil, err
	}
	var out []string
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) > 4 && strings.HasPrefix(f[4], kubeletDir+"/") && strings.Contains(f[4], substr) {
			out = append(out, f[4])
		}
	}
	return out, nil
}

// LoopFor returns the node's loop devices backed by the simulator file of a disk.
func (n *Node) LoopFor(d rdssim.Disk) []string {
	want := stateDir + "/rds-" + n.Name + "/" + strings.TrimPrefix(d.FilePath, "/")
	var out []string
	for _, dev := range n.loopDevices() {
		b, err := os.ReadFile("/sys/block/" + strings.TrimPrefix(dev, "/dev/") + "/loop/backing_file")
		if err == nil && strings.TrimSpace(string(b)) == want {
			out = append(out, dev)
		}
	}
	return out
}

// Cordon marks a node (un)schedulable, as kubectl cordon does.
func (c *Cluster) Cordon(ctx context.Context, node string, on bool) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Spec.Unschedulable = on
	_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// TaintOutOfService adds node.kubernetes.io/out-of-service=nodeshutdown:NoExecute, as an operator
// does once a node is known to be off.
func (c *Cluster) TaintOutOfService(ctx context.Context, node string) error {
	n, err := c.Client.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
	_, err = c.Client.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// nsReport describes the pods and warning events of a namespace, for failures.
func (c *Cluster) nsReport(ctx context.Context, ns string) string {
	var b strings.Builder
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s on %q: %s\n", p.Name, p.Spec.NodeName, p.Status.Phase)
	}
	evs, err := c.Client.CoreV1().Events(ns).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range evs.Items {
			if e.Type != corev1.EventTypeNormal {
				fmt.Fprintf(&b, "event %s/%s: %s %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

// ProvisionerLeader returns the node of the controller replica whose csi-provisioner holds the
// leader lease (its identity is the host name, which is the node name here).
func (c *Cluster) ProvisionerLeader(ctx context.Context) (string, error) {
	name := strings.NewReplacer(".", "-", "/", "-").Replace(Driver)
	var holder string
	err := waitFor(ctx, 2*time.Minute, func() (bool, error) {
		l, err := c.Client.CoordinationV1().Leases(Namespace).Get(ctx, name, metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil {
			return false, nil
		}
		holder = *l.Spec.HolderIdentity
		return holder != "", nil
	})
	if err != nil {
		leases, _ := c.Client.CoordinationV1().Leases(Namespace).List(ctx, metav1.ListOptions{})
		var names []string
		if leases != nil {
			for _, l := range leases.Items {
				names = append(names, l.Name)
			}
		}
		return "", fmt.Errorf("no holder of lease %s/%s (leases: %v): %w", Namespace, name, names, err)
	}
	for _, n := range c.Nodes {
		if strings.HasPrefix(holder, n.Name) {
			return n.Name, nil
		}
	}
	return "", fmt.Errorf("lease holder %q is no node", holder)
}
