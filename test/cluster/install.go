package cluster

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/client-go/dynamic"
)

// ChartDir is the chart, relative to this package's directory (tests run there); callers from
// elsewhere set RDS_CSI_CHART.
const defaultChartDir = "../../deploy/helm/rds-csi"

var crdGVR = schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}

// install creates the snapshot CRDs and starts the snapshot-controller (both outside the chart,
// as in a real cluster), creates the Secret of the RDS key, and installs the chart.
func (c *Cluster) install(ctx context.Context, extra []string, snapshots bool) error {
	if snapshots {
		if err := c.installSnapshots(ctx); err != nil {
			return err
		}
	}
	return c.installChart(ctx, extra)
}

// installSnapshots creates the snapshot CRDs and starts the snapshot-controller.
func (c *Cluster) installSnapshots(ctx context.Context) error {
	dyn, err := dynamic.NewForConfig(c.Config)
	if err != nil {
		return err
	}
	crds, _ := filepath.Glob(filepath.Join(c.bins.cluster, "snapshot-crds", "*.yaml"))
	if len(crds) == 0 {
		return fmt.Errorf("no snapshot CRDs in %s", c.bins.cluster)
	}
	var names []string
	for _, f := range crds {
		b, err := os.ReadFile(f)
		if err != nil {
			return err
		}
		dec := utilyaml.NewYAMLOrJSONDecoder(bytes.NewReader(b), 4096)
		for {
			var u unstructured.Unstructured
			if err := dec.Decode(&u.Object); err != nil {
				if errors.Is(err, io.EOF) {
					break
				}
				return fmt.Errorf("%s: %w", f, err)
			}
			if len(u.Object) == 0 {
				continue
			}
			if _, err := dyn.Resource(crdGVR).Create(ctx, &u, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
				return fmt.Errorf("creating CRD %s: %w", u.GetName(), err)
			}
			names = append(names, u.GetName())
		}
	}
	for _, name := range names {
		if err := waitFor(ctx, time.Minute, func() (bool, error) {
			u, err := dyn.Resource(crdGVR).Get(ctx, name, metav1.GetOptions{})
			if err != nil {
				return false, nil
			}
			conds, _, _ := unstructured.NestedSlice(u.Object, "status", "conditions")
			for _, ci := range conds {
				if m, ok := ci.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		}); err != nil {
			return fmt.Errorf("CRD %s not established: %w", name, err)
		}
	}
	return c.spawn("snapshot-controller", filepath.Join(c.bins.cluster, "snapshot-controller"),
		"--kubeconfig="+c.Kubeconfig, "--leader-election=false", "--v=2")
}

func (c *Cluster) installChart(ctx context.Context, extra []string) error {

	if _, err := c.Client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: Namespace}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return err
	}
	sec := &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "rds-csi-rds", Namespace: Namespace},
		Data: map[string][]byte{"ssh-privatekey": c.simKeys.privatePEM, "host-key": []byte(c.simKeys.hostKey)}}
	if _, err := c.Client.CoreV1().Secrets(Namespace).Create(ctx, sec, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("creating the RDS Secret: %w", err)
	}
	values := filepath.Join(c.Dir, "values.yaml")
	if err := os.WriteFile(values, []byte(c.values()), 0o600); err != nil {
		return err
	}
	chart := os.Getenv("RDS_CSI_CHART")
	if chart == "" {
		chart = defaultChartDir
	}
	args := []string{"install", Release, chart, "--namespace", Namespace, "--kubeconfig", c.Kubeconfig, "--values", values}
	for _, s := range extra {
		args = append(args, "--set", s)
	}
	cmd := exec.CommandContext(ctx, c.bins.helm, args...)
	cmd.Env = append(os.Environ(), "HELM_CACHE_HOME="+filepath.Join(c.Dir, "helm"), "HELM_CONFIG_HOME="+filepath.Join(c.Dir, "helm"), "HELM_DATA_HOME="+filepath.Join(c.Dir, "helm"))
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("helm install: %w: %s", err, out)
	}
	return c.WaitDriver(ctx, 5*time.Minute)
}

// values are the chart values of the test install: the images of the loopback registry, the
// simulator as the RDS, controller pods on the host network (nodes here have no pod network)
// told where the API server is, and the node plugin on the loop backend (no NVMe/TCP here).
func (c *Cluster) values() string {
	reg := c.Image[:strings.LastIndex(c.Image, "/")]
	repo, tag, _ := strings.Cut(c.Image[strings.LastIndex(c.Image, "/")+1:], ":")
	_, port, _ := strings.Cut(strings.TrimPrefix(c.Config.Host, "https://"), ":")
	sidecar := func(name string) string { return strconv.Quote(reg + "/sig-storage/" + name) }
	return fmt.Sprintf(`image:
  repository: %q
  tag: %q
rds:
  address: %q
  existingSecret: rds-csi-rds
controller:
  hostNetwork: true
  nodeSelector:
    %s: "true"
  # Every CSI call logged with its duration (the figures read them).
  extraArgs:
    - --v=4
  extraEnv:
    - name: KUBERNETES_SERVICE_HOST
      value: %q
    - name: KUBERNETES_SERVICE_PORT
      value: %q
node:
  extraArgs:
    - --nvme-backend=loop
    - %s
    - --v=4
sidecars:
  provisioner:
    image:
      repository: %s
  attacher:
    image:
      repository: %s
  resizer:
    image:
      repository: %s
  snapshotter:
    image:
      repository: %s
snapshots:
  volumeSnapshotClass:
    create: true
`, reg+"/"+repo, tag, c.Sim.Addr(), ControllerLabel, HubIP, port, LoopRootArg,
		sidecar("csi-provisioner"), sidecar("csi-attacher"), sidecar("csi-resizer"), sidecar("csi-snapshotter"))
}

// WaitDriver waits until the controller Deployment has its replicas ready, the node plugin runs
// on every live node, and every live node's CSINode lists the driver (the kubelet registered it).
func (c *Cluster) WaitDriver(ctx context.Context, timeout time.Duration) error {
	last := ""
	err := waitFor(ctx, timeout, func() (bool, error) {
		d, err := c.Client.AppsV1().Deployments(Namespace).Get(ctx, Release+"-controller", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if d.Status.ReadyReplicas < 1 || d.Status.ReadyReplicas < *d.Spec.Replicas {
			last = fmt.Sprintf("controller: %d of %d replicas ready", d.Status.ReadyReplicas, *d.Spec.Replicas)
			return false, nil
		}
		ds, err := c.Client.AppsV1().DaemonSets(Namespace).Get(ctx, Release+"-node", metav1.GetOptions{})
		if err != nil {
			last = err.Error()
			return false, nil
		}
		if ds.Status.NumberReady < int32(len(c.Nodes)) {
			last = fmt.Sprintf("node plugin: %d of %d ready", ds.Status.NumberReady, len(c.Nodes))
			return false, nil
		}
		for _, n := range c.Nodes {
			cn, err := c.Client.StorageV1().CSINodes().Get(ctx, n.Name, metav1.GetOptions{})
			if err != nil {
				last = "CSINode " + n.Name + ": " + err.Error()
				return false, nil
			}
			found := false
			for _, d := range cn.Spec.Drivers {
				found = found || d.Name == Driver
			}
			if !found {
				last = "CSINode " + n.Name + " does not list " + Driver
				return false, nil
			}
		}
		return true, nil
	})
	if err != nil {
		return fmt.Errorf("rds-csi not ready (%s): %w\n%s", last, err, c.PodReport(ctx))
	}
	return nil
}

// PodReport describes every pod of the install and the events of the namespace, for failures.
func (c *Cluster) PodReport(ctx context.Context) string {
	var b strings.Builder
	pods, err := c.Client.CoreV1().Pods(Namespace).List(ctx, metav1.ListOptions{})
	if err != nil {
		return err.Error()
	}
	for _, p := range pods.Items {
		fmt.Fprintf(&b, "pod %s on %s: %s\n", p.Name, p.Spec.NodeName, p.Status.Phase)
		for _, cs := range p.Status.ContainerStatuses {
			fmt.Fprintf(&b, "  %s ready=%v restarts=%d %s\n", cs.Name, cs.Ready, cs.RestartCount, stateString(cs.State))
		}
	}
	evs, err := c.Client.CoreV1().Events(Namespace).List(ctx, metav1.ListOptions{})
	if err == nil {
		for _, e := range evs.Items {
			if e.Type != corev1.EventTypeNormal {
				fmt.Fprintf(&b, "event %s/%s: %s %s\n", e.InvolvedObject.Kind, e.InvolvedObject.Name, e.Reason, e.Message)
			}
		}
	}
	return b.String()
}

func stateString(s corev1.ContainerState) string {
	switch {
	case s.Running != nil:
		return "running"
	case s.Waiting != nil:
		return "waiting: " + s.Waiting.Reason + " " + s.Waiting.Message
	case s.Terminated != nil:
		return fmt.Sprintf("terminated: %s (exit %d) %s", s.Terminated.Reason, s.Terminated.ExitCode, s.Terminated.Message)
	}
	return "unknown"
}
