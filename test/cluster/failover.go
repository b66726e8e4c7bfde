package cluster

import (
	"context"
	"fmt"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// FailoverResult is the timeline of a node failover, from the out-of-service taint.
type FailoverResult struct {
	NotReady                             time.Duration // power off → node NotReady (before the taint; not in Total)
	Total                                time.Duration // taint → new pod Ready
	OldPodGone, OldDetached, NewAttached time.Duration
	// RDSCSI is the time spent inside rds-csi's CSI calls on the way (ControllerUnpublish of the
	// dead node, ControllerPublish, NodeStage and NodePublish on the new node), from its log.
	RDSCSI time.Duration
	Calls  []Call
}

func (r FailoverResult) String() string {
	return fmt.Sprintf("power off → NotReady %v; taint → new pod Ready %v (old pod gone %v, old attachment gone %v, new attachment attached %v); time inside rds-csi's CSI calls %v (%d calls), the rest (%v) is Kubernetes' own",
		r.NotReady.Round(time.Millisecond), r.Total.Round(time.Millisecond), r.OldPodGone.Round(time.Millisecond),
		r.OldDetached.Round(time.Millisecond), r.NewAttached.Round(time.Millisecond), r.RDSCSI.Round(time.Millisecond), len(r.Calls),
		(r.Total - r.RDSCSI).Round(time.Millisecond))
}

// NodeFailover runs the seed's scenario with a Deployment of one pod on claim name (created
// here) on node from, which then loses power; to is the node it moves to. With check set, it
// also asserts that nothing attaches the volume elsewhere before the taint.
func (c *Cluster) NodeFailover(ctx context.Context, ns, name, from, to string, check bool) (FailoverResult, error) {
	var r FailoverResult
	if _, err := c.CreatePVC(ctx, ns, PVCSpec{Name: name, Class: ClassExt4, Size: "64Mi"}); err != nil {
		return r, err
	}
	_, pv, err := c.WaitPVCBound(ctx, ns, name, 2*time.Minute)
	if err != nil {
		return r, err
	}
	// The pod starts on from: every other node is cordoned until it runs there.
	var cordoned []string
	for _, n := range c.Nodes {
		if n.Name != from && n.Name != to {
			continue
		}
		if n.Name == to {
			if err := c.Cordon(ctx, n.Name, true); err != nil {
				return r, err
			}
			cordoned = append(cordoned, n.Name)
		}
	}
	token := "d-" + time.Now().Format("150405.000")
	labels := map[string]string{"app": name}
	tmpl := c.Pod(ns, PodSpec{Name: name, Claim: name, Token: token, Labels: labels})
	tmpl.Spec.Affinity = &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
		NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
			Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{from, to}}}}}}}}
	one := int32(1)
	dep := &appsv1.Deployment{ObjectMeta: metav1.ObjectMeta{Name: name, Namespace: ns}, Spec: appsv1.DeploymentSpec{
		Replicas: &one, Selector: &metav1.LabelSelector{MatchLabels: labels},
		Strategy: appsv1.DeploymentStrategy{Type: appsv1.RecreateDeploymentStrategyType},
		Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: tmpl.Spec}}}
	if _, err := c.Client.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
		return r, err
	}
	first, err := c.waitDeploymentPodReady(ctx, ns, labels, "", 3*time.Minute)
	if err != nil {
		return r, err
	}
	if first.Spec.NodeName != from {
		return r, fmt.Errorf("pod %s runs on %s, want %s", first.Name, first.Spec.NodeName, from)
	}
	for _, n := range cordoned {
		if err := c.Cordon(ctx, n, false); err != nil {
			return r, err
		}
	}

	off := time.Now()
	c.Node(from).PowerOff()
	if err := c.WaitNodeReady(ctx, from, corev1.ConditionUnknown, 2*time.Minute); err != nil {
		return r, err
	}
	r.NotReady = time.Since(off)
	if check {
		// NotReady alone moves nothing: a node that stopped answering may still write.
		deadline := time.Now().Add(10 * time.Second)
		for time.Now().Before(deadline) {
			vas, err := c.VolumeAttachments(ctx, pv.Name)
			if err != nil {
				return r, err
			}
			for node := range vas {
				if node != from {
					return r, fmt.Errorf("volume attached to %s while %s is only NotReady (not known to be off)", node, from)
				}
			}
			time.Sleep(500 * time.Millisecond)
		}
	}

	taint := time.Now()
	if err := c.TaintOutOfService(ctx, from); err != nil {
		return r, err
	}
	// Timeline by polling every 100 ms (watches would do the same with more code).
	var done bool
	err = waitFor(ctx, 5*time.Minute, func() (bool, error) {
		now := time.Since(taint)
		if r.OldPodGone == 0 {
			if _, err := c.Client.CoreV1().Pods(ns).Get(ctx, first.Name, metav1.GetOptions{}); err != nil {
				r.OldPodGone = now
			}
		}
		vas, err := c.VolumeAttachments(ctx, pv.Name)
		if err != nil {
			return false, nil
		}
		if _, ok := vas[from]; !ok && r.OldDetached == 0 {
			r.OldDetached = now
		}
		if va, ok := vas[to]; ok && va.Status.Attached && r.NewAttached == 0 {
			r.NewAttached = now
		}
		p, err := c.readyDeploymentPod(ctx, ns, labels, first.Name)
		if err != nil {
			return false, nil
		}
		if p != nil {
			if p.Spec.NodeName != to {
				return false, fmt.Errorf("new pod on %s, want %s", p.Spec.NodeName, to)
			}
			r.Total = now
			done = true
		}
		return done, nil
	})
	if err != nil {
		return r, fmt.Errorf("after the taint: %w; timeline so far: %s\n%s", err, r, c.PodReport(ctx))
	}
	for _, call := range c.CSICalls(taint) {
		switch {
		case call.Method == "ControllerUnpublishVolume", call.Method == "ControllerPublishVolume",
			call.Node == to && (call.Method == "NodeStageVolume" || call.Method == "NodePublishVolume"):
			r.Calls = append(r.Calls, call)
			r.RDSCSI += call.Duration
		}
	}
	return r, nil
}

// readyDeploymentPod returns a Ready pod with the labels other than old, or nil.
func (c *Cluster) readyDeploymentPod(ctx context.Context, ns string, labels map[string]string, old string) (*corev1.Pod, error) {
	pods, err := c.Client.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: metav1.FormatLabelSelector(&metav1.LabelSelector{MatchLabels: labels})})
	if err != nil {
		return nil, err
	}
	for i := range pods.Items {
		p := &pods.Items[i]
		if p.Name == old || p.DeletionTimestamp != nil {
			continue
		}
		for _, cond := range p.Status.Conditions {
			if cond.Type == corev1.PodReady && cond.Status == corev1.ConditionTrue {
				return p, nil
			}
		}
	}
	return nil, nil
}

func (c *Cluster) waitDeploymentPodReady(ctx context.Context, ns string, labels map[string]string, old string, timeout time.Duration) (*corev1.Pod, error) {
	var p *corev1.Pod
	err := waitFor(ctx, timeout, func() (bool, error) {
		var err error
		p, err = c.readyDeploymentPod(ctx, ns, labels, old)
		return err == nil && p != nil, nil
	})
	if err != nil {
		return nil, fmt.Errorf("no Ready pod of %v: %w\n%s", labels, err, c.nsReport(ctx, ns))
	}
	return p, nil
}
