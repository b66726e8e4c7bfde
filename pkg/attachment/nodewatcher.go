package attachment

import (
	corev1 "k8s.io/api/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// NodeWatcher turns node informer events into reconcile triggers: a node going Ready→NotReady, a
// node deleted (tombstones included), and the out-of-service taint appearing. NotReady→NotReady
// and other updates (heartbeats, labels) trigger nothing.
type NodeWatcher struct {
	trigger func(reason string)
}

var _ cache.ResourceEventHandler = (*NodeWatcher)(nil)

// NewNodeWatcher returns a handler for a node informer; trigger must not block
// (Reconciler.Trigger does not).
func NewNodeWatcher(trigger func(reason string)) *NodeWatcher {
	return &NodeWatcher{trigger: trigger}
}

// OnAdd implements cache.ResourceEventHandler: a node that appears already out of service (not
// in the initial list, which the start-up pass covers) triggers a pass.
func (w *NodeWatcher) OnAdd(obj any, isInInitialList bool) {
	n, ok := obj.(*corev1.Node)
	if !ok || isInInitialList || !outOfService(n) {
		return
	}
	klog.InfoS("Node added with the out-of-service taint", "node", n.Name)
	w.trigger(ReasonNodeOutOfService)
}

// OnUpdate implements cache.ResourceEventHandler.
func (w *NodeWatcher) OnUpdate(oldObj, newObj any) {
	prev, ok1 := oldObj.(*corev1.Node)
	cur, ok2 := newObj.(*corev1.Node)
	if !ok1 || !ok2 {
		return
	}
	if !outOfService(prev) && outOfService(cur) {
		klog.InfoS("Node tainted out-of-service: its attachments will be released", "node", cur.Name)
		w.trigger(ReasonNodeOutOfService)
	}
	if nodeReady(prev) && !nodeReady(cur) {
		klog.InfoS("Node went NotReady", "node", cur.Name)
		w.trigger(ReasonNodeNotReady)
	}
}

// OnDelete implements cache.ResourceEventHandler, including cache.DeletedFinalStateUnknown
// tombstones for deletions the watch missed.
func (w *NodeWatcher) OnDelete(obj any) {
	name := ""
	switch o := obj.(type) {
	case *corev1.Node:
		name = o.Name
	case cache.DeletedFinalStateUnknown:
		n, ok := o.Obj.(*corev1.Node)
		if !ok {
			klog.ErrorS(nil, "Tombstone without a node in the node informer; ignored", "key", o.Key)
			return
		}
		name = n.Name
	default:
		klog.ErrorS(nil, "Unexpected object deleted in the node informer; ignored", "type", typeName(obj))
		return
	}
	klog.InfoS("Node deleted: its attachments will be released", "node", name)
	w.trigger(ReasonNodeDeleted)
}

// nodeReady reports whether the node's Ready condition is True.
func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// outOfService reports whether the node carries the out-of-service taint (any value, NoExecute
// or NoSchedule, as Kubernetes' non-graceful shutdown handling does).
func outOfService(n *corev1.Node) bool {
	for _, t := range n.Spec.Taints {
		if t.Key == OutOfServiceTaint {
			return true
		}
	}
	return false
}
