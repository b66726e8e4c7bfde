package attachment

import (
	"slices"
	"testing"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/cache"
)

type nodeOpt func(*corev1.Node)

func ready(s corev1.ConditionStatus) nodeOpt {
	return func(n *corev1.Node) {
		n.Status.Conditions = append(n.Status.Conditions, corev1.NodeCondition{Type: corev1.NodeReady, Status: s})
	}
}

func tainted(key string, effect corev1.TaintEffect) nodeOpt {
	return func(n *corev1.Node) {
		n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: key, Value: "nodeshutdown", Effect: effect})
	}
}

func labeled(k, v string) nodeOpt {
	return func(n *corev1.Node) {
		if n.Labels == nil {
			n.Labels = map[string]string{}
		}
		n.Labels[k] = v
	}
}

func mkNode(name string, opts ...nodeOpt) *corev1.Node {
	n := &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name}}
	for _, o := range opts {
		o(n)
	}
	return n
}

func watch(t *testing.T) (*NodeWatcher, *[]string) {
	t.Helper()
	var got []string
	return NewNodeWatcher(func(r string) { got = append(got, r) }), &got
}

func TestNodeWatcherUpdates(t *testing.T) {
	const oos = OutOfServiceTaint
	cases := []struct {
		name     string
		old, cur *corev1.Node
		want     []string
	}{
		{"Ready to NotReady", mkNode("a", ready("True")), mkNode("a", ready("False")), []string{ReasonNodeNotReady}},
		{"Ready to Unknown", mkNode("a", ready("True")), mkNode("a", ready("Unknown")), []string{ReasonNodeNotReady}},
		{"Ready to no condition", mkNode("a", ready("True")), mkNode("a"), []string{ReasonNodeNotReady}},
		{"NotReady to NotReady", mkNode("a", ready("False")), mkNode("a", ready("False")), nil},
		{"Unknown to NotReady", mkNode("a", ready("Unknown")), mkNode("a", ready("False")), nil},
		{"NotReady to Ready", mkNode("a", ready("False")), mkNode("a", ready("True")), nil},
		{"Ready heartbeat", mkNode("a", ready("True")), mkNode("a", ready("True")), nil},
		{"label change", mkNode("a", ready("True")), mkNode("a", ready("True"), labeled("x", "y")), nil},
		{"unrelated taint", mkNode("a", ready("False")), mkNode("a", ready("False"), tainted("node.kubernetes.io/unreachable", "NoExecute")), nil},
		{"out-of-service NoExecute appears", mkNode("a", ready("False")), mkNode("a", ready("False"), tainted(oos, "NoExecute")), []string{ReasonNodeOutOfService}},
		{"out-of-service NoSchedule appears", mkNode("a", ready("False")), mkNode("a", ready("False"), tainted(oos, "NoSchedule")), []string{ReasonNodeOutOfService}},
		{"out-of-service stays", mkNode("a", ready("False"), tainted(oos, "NoExecute")), mkNode("a", ready("False"), tainted(oos, "NoExecute"), labeled("x", "y")), nil},
		{"out-of-service removed", mkNode("a", ready("False"), tainted(oos, "NoExecute")), mkNode("a", ready("False")), nil},
		{"taint and NotReady at once", mkNode("a", ready("True")), mkNode("a", ready("False"), tainted(oos, "NoExecute")), []string{ReasonNodeOutOfService, ReasonNodeNotReady}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, got := watch(t)
			w.OnUpdate(tc.old, tc.cur)
			if !slices.Equal(*got, tc.want) {
				t.Fatalf("triggers = %v, want %v", *got, tc.want)
			}
		})
	}
}

func TestNodeWatcherDeletes(t *testing.T) {
	cases := []struct {
		name string
		obj  any
		want []string
	}{
		{"node", mkNode("a", ready("True")), []string{ReasonNodeDeleted}},
		{"NotReady node", mkNode("a", ready("False")), []string{ReasonNodeDeleted}},
		{"tombstone with node", cache.DeletedFinalStateUnknown{Key: "a", Obj: mkNode("a")}, []string{ReasonNodeDeleted}},
		{"tombstone with something else", cache.DeletedFinalStateUnknown{Key: "x", Obj: &storagev1.VolumeAttachment{}}, nil},
		{"tombstone with nil", cache.DeletedFinalStateUnknown{Key: "x"}, nil},
		{"not a node", &corev1.Pod{}, nil},
		{"nil", nil, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, got := watch(t)
			w.OnDelete(tc.obj)
			if !slices.Equal(*got, tc.want) {
				t.Fatalf("triggers = %v, want %v", *got, tc.want)
			}
		})
	}
}

func TestNodeWatcherAdds(t *testing.T) {
	cases := []struct {
		name    string
		node    *corev1.Node
		initial bool
		want    []string
	}{
		{"ready node", mkNode("a", ready("True")), false, nil},
		{"out-of-service node, initial list", mkNode("a", tainted(OutOfServiceTaint, "NoExecute")), true, nil},
		{"out-of-service node, later", mkNode("a", tainted(OutOfServiceTaint, "NoExecute")), false, []string{ReasonNodeOutOfService}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			w, got := watch(t)
			w.OnAdd(tc.node, tc.initial)
			if !slices.Equal(*got, tc.want) {
				t.Fatalf("triggers = %v, want %v", *got, tc.want)
			}
		})
	}
}

func TestNodeWatcherIgnoresForeignObjects(t *testing.T) {
	w, got := watch(t)
	w.OnUpdate(&corev1.Pod{}, mkNode("a"))
	w.OnUpdate(mkNode("a", ready("True")), "not a node")
	w.OnAdd(&corev1.Pod{}, false)
	if len(*got) != 0 {
		t.Fatalf("triggers = %v, want none", *got)
	}
}
