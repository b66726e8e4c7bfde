package chart

import (
	"encoding/base64"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
)

const (
	testHostKey = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHRlc3QtaG9zdC1rZXktb2YtdGhlLXJkcw=="
	testSSHKey  = "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAAtest-only-not-a-real-key\n-----END OPENSSH PRIVATE KEY-----\n"
)

// secretFiles writes the test SSH key and host key to files, for --set-file (how the README
// tells users to pass them), and returns the arguments.
func secretFiles(t *testing.T) []string {
	t.Helper()
	dir := t.TempDir()
	key, host := filepath.Join(dir, "id_ed25519"), filepath.Join(dir, "host_key.pub")
	if err := os.WriteFile(key, []byte(testSSHKey), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(host, []byte(testHostKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return []string{"--set", "rds.secret.create=true", "--set-file", "rds.secret.sshPrivateKey=" + key, "--set-file", "rds.secret.hostKey=" + host}
}

// sidecarValues switch the node plugin and the liveness checks to the upstream sidecars.
var sidecarValues = []string{"--set", "node.selfRegistration=false", "--set", "healthProbe.builtin=false"}

func TestLint(t *testing.T) {
	mustHelm(t, "lint", "--strict", chartDir, "--values", manifestsV)
	mustHelm(t, append([]string{"lint", "--strict", chartDir, "--set", "rds.address=10.0.0.1:22",
		"--set", "snapshots.volumeSnapshotClass.create=true", "--set", "serviceMonitor.enabled=true"},
		append(secretFiles(t), sidecarValues...)...)...)
}

// The chart refuses, at lint and at install, values that would give a driver that cannot work or
// an SSH key outside a Secret; each message names what to set.
func TestRefusedValues(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"no RDS address", []string{"--set", "rds.existingSecret=s"}, "address"},
		{"no Secret", []string{"--set", "rds.address=10.0.0.1:22"}, "existingSecret"},
		{"address without port", []string{"--set", "rds.address=10.0.0.1", "--set", "rds.existingSecret=s"}, "address"},
		{"chart Secret without host key", []string{"--set", "rds.address=10.0.0.1:22", "--set", "rds.secret.create=true",
			"--set", "rds.secret.sshPrivateKey=k"}, "hostKey"},
		{"typo in a StorageClass parameter", []string{"--values", manifestsV, "--set", "storageClasses.ext4.parameters.volumPath=/p"}, "volumPath"},
		{"unknown value", []string{"--values", manifestsV, "--set", "controller.replicaCount=3"}, "replicaCount"},
		{"unsupported filesystem", []string{"--values", manifestsV, "--set", "defaultFsType=btrfs"}, "defaultFsType"},
		{"bad duration", []string{"--values", manifestsV, "--set", "sidecars.provisioner.timeout=5 minutes"}, "timeout"},
		{"ServiceMonitor without metrics", []string{"--values", manifestsV, "--set", "serviceMonitor.enabled=true",
			"--set", "controller.metrics.enabled=false"}, "metrics"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := helm(t, append([]string{"template", "x", chartDir}, tc.args...)...)
			if err == nil {
				t.Fatalf("helm template accepted %v", tc.args)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error does not name %q:\n%v", tc.want, err)
			}
			if _, err := helm(t, append([]string{"lint", chartDir}, tc.args...)...); err == nil {
				t.Fatalf("helm lint accepted %v", tc.args)
			}
		})
	}
}

// deploy/kubernetes/rds-csi.yaml is what `make manifests` renders from the chart, byte for byte.
func TestManifestsAreTheChartsRender(t *testing.T) {
	want := mustHelm(t, manifestsArgs...)
	got, err := os.ReadFile(manifests)
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != want {
		t.Fatalf("deploy/kubernetes/rds-csi.yaml differs from the chart's render: run `make manifests` and commit it\n%s", firstDiff(string(got), want))
	}
}

func firstDiff(got, want string) string {
	g, w := strings.Split(got, "\n"), strings.Split(want, "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		var gl, wl string
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if gl != wl {
			return "line " + strconv.Itoa(i+1) + ":\n  file:  " + gl + "\n  chart: " + wl
		}
	}
	return ""
}

func container(t *testing.T, spec corev1.PodSpec, name string) corev1.Container {
	t.Helper()
	for _, c := range spec.Containers {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("no container %s", name)
	return corev1.Container{}
}

func hasContainer(spec corev1.PodSpec, name string) bool {
	return slices.ContainsFunc(spec.Containers, func(c corev1.Container) bool { return c.Name == name })
}

func requireArgs(t *testing.T, c corev1.Container, want ...string) {
	t.Helper()
	for _, a := range want {
		if !slices.Contains(c.Args, a) {
			t.Errorf("container %s: no arg %s in %v", c.Name, a, c.Args)
		}
	}
}

func argWithPrefix(c corev1.Container, prefix string) (string, bool) {
	for _, a := range c.Args {
		if strings.HasPrefix(a, prefix) {
			return a, true
		}
	}
	return "", false
}

// The default render (the plain manifests) has what the driver and issue 11 ask for.
func TestDefaultRender(t *testing.T) {
	objs := objects(t, mustHelm(t, manifestsArgs...))

	var drv storagev1.CSIDriver
	typed(t, find(t, objs, "CSIDriver", "rds.csi.srvlab.io"), &drv)
	if !*drv.Spec.AttachRequired || *drv.Spec.PodInfoOnMount || *drv.Spec.FSGroupPolicy != storagev1.FileFSGroupPolicy ||
		!slices.Equal(drv.Spec.VolumeLifecycleModes, []storagev1.VolumeLifecycleMode{storagev1.VolumeLifecyclePersistent}) {
		t.Errorf("CSIDriver spec: %+v", drv.Spec)
	}

	var dep appsv1.Deployment
	typed(t, find(t, objs, "Deployment", "rds-csi-controller"), &dep)
	if *dep.Spec.Replicas != 2 {
		t.Errorf("controller replicas %d, want 2", *dep.Spec.Replicas)
	}
	pod := dep.Spec.Template.Spec
	if pod.ServiceAccountName != "rds-csi-controller" || pod.PriorityClassName != "system-cluster-critical" {
		t.Errorf("controller pod: serviceAccount %q priorityClass %q", pod.ServiceAccountName, pod.PriorityClassName)
	}
	images := map[string]string{
		"csi-provisioner": "registry.k8s.io/sig-storage/csi-provisioner:v6.4.0",
		"csi-attacher":    "registry.k8s.io/sig-storage/csi-attacher:v4.13.0",
		"csi-resizer":     "registry.k8s.io/sig-storage/csi-resizer:v2.3.0",
		"csi-snapshotter": "registry.k8s.io/sig-storage/csi-snapshotter:v8.7.0",
	}
	for name, image := range images {
		c := container(t, pod, name)
		if c.Image != image {
			t.Errorf("%s image %s, want %s", name, c.Image, image)
		}
		requireArgs(t, c, "--csi-address=/csi/csi.sock", "--leader-election=true", "--leader-election-namespace=rds-csi",
			"--retry-interval-start=1s", "--retry-interval-max=5s")
	}
	requireArgs(t, container(t, pod, "csi-provisioner"), "--timeout=5m", "--extra-create-metadata=true",
		"--default-fstype=ext4", "--feature-gates=Topology=false")
	requireArgs(t, container(t, pod, "csi-snapshotter"), "--timeout=5m", "--extra-create-metadata=true")
	requireArgs(t, container(t, pod, "csi-resizer"), "--handle-volume-inuse-error=false")

	ctrl := container(t, pod, "rds-csi")
	if ctrl.Image != "ghcr.io/srvlab/rds-csi:v0.1.0" {
		t.Errorf("driver image %s", ctrl.Image)
	}
	requireArgs(t, ctrl, "--mode=controller", "--endpoint=unix:///csi/csi.sock", "--driver-name=rds.csi.srvlab.io",
		"--rds-address=rds.example.internal:22", "--rds-key-file=/etc/rds-csi/secret/ssh-privatekey",
		"--rds-host-key=$(RDS_HOST_KEY)", "--metrics-address=:9809", "--health-address=:9808", "--default-fs-type=ext4")
	if a, ok := argWithPrefix(ctrl, "--kubeconfig"); ok {
		t.Errorf("controller has %s: it must use the in-cluster config", a)
	}
	// The SSH key is a file from the Secret and the host key an environment variable from it.
	if len(ctrl.Env) != 1 || ctrl.Env[0].ValueFrom == nil || ctrl.Env[0].ValueFrom.SecretKeyRef == nil ||
		ctrl.Env[0].ValueFrom.SecretKeyRef.Name != "rds-csi-rds" || ctrl.Env[0].ValueFrom.SecretKeyRef.Key != "host-key" {
		t.Errorf("controller env: %+v", ctrl.Env)
	}
	var secretVol bool
	for _, v := range pod.Volumes {
		if v.Secret != nil && v.Secret.SecretName == "rds-csi-rds" {
			secretVol = true
		}
	}
	if !secretVol {
		t.Error("controller pod does not mount Secret rds-csi-rds")
	}
	if ctrl.LivenessProbe == nil || ctrl.LivenessProbe.HTTPGet == nil || ctrl.LivenessProbe.HTTPGet.Path != "/healthz" ||
		ctrl.LivenessProbe.HTTPGet.Port.IntValue() != 9808 {
		t.Errorf("controller liveness probe: %+v", ctrl.LivenessProbe)
	}
	for _, c := range pod.Containers {
		if c.SecurityContext == nil || c.SecurityContext.AllowPrivilegeEscalation == nil || *c.SecurityContext.AllowPrivilegeEscalation ||
			c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged {
			t.Errorf("controller container %s may escalate privileges", c.Name)
		}
	}
	if pod.SecurityContext == nil || pod.SecurityContext.RunAsNonRoot == nil || !*pod.SecurityContext.RunAsNonRoot {
		t.Error("controller pod does not run as non-root")
	}

	var ds appsv1.DaemonSet
	typed(t, find(t, objs, "DaemonSet", "rds-csi-node"), &ds)
	npod := ds.Spec.Template.Spec
	if !npod.HostNetwork || npod.PriorityClassName != "system-node-critical" {
		t.Errorf("node pod: hostNetwork %v priorityClass %q", npod.HostNetwork, npod.PriorityClassName)
	}
	if len(npod.Tolerations) != 1 || npod.Tolerations[0].Operator != corev1.TolerationOpExists || npod.Tolerations[0].Key != "" {
		t.Errorf("node pod does not tolerate everything: %+v", npod.Tolerations)
	}
	if hasContainer(npod, "node-driver-registrar") || hasContainer(npod, "liveness-probe") || len(npod.Containers) != 1 {
		t.Errorf("default node pod has sidecars: %d containers", len(npod.Containers))
	}
	node := container(t, npod, "rds-csi")
	if node.SecurityContext == nil || node.SecurityContext.Privileged == nil || !*node.SecurityContext.Privileged {
		t.Error("node plugin is not privileged")
	}
	requireArgs(t, node, "--mode=node", "--node-id=$(NODE_NAME)", "--endpoint=unix:///var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock",
		"--kubelet-dir=/var/lib/kubelet", "--health-address=:9818", "--node-state-dir=/var/lib/rds-csi")
	if node.LivenessProbe == nil || node.LivenessProbe.HTTPGet == nil || node.LivenessProbe.HTTPGet.Port.IntValue() != 9818 {
		t.Errorf("node liveness probe: %+v", node.LivenessProbe)
	}
	mounts := map[string]corev1.VolumeMount{}
	for _, m := range node.VolumeMounts {
		mounts[m.MountPath] = m
	}
	hostPaths := map[string]string{}
	for _, v := range npod.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	for path, wantHost := range map[string]string{"/var/lib/kubelet": "/var/lib/kubelet", "/dev": "/dev", "/sys": "/sys",
		"/etc/nvme": "/etc/nvme", "/var/lib/rds-csi": "/var/lib/rds-csi"} {
		m, ok := mounts[path]
		if !ok {
			t.Errorf("node plugin does not mount %s", path)
			continue
		}
		if hostPaths[m.Name] != wantHost {
			t.Errorf("node mount %s comes from host path %q, want %s", path, hostPaths[m.Name], wantHost)
		}
	}
	if p := mounts["/var/lib/kubelet"].MountPropagation; p == nil || *p != corev1.MountPropagationBidirectional {
		t.Errorf("kubelet dir propagation %v, want Bidirectional", p)
	}
	if npod.AutomountServiceAccountToken == nil || *npod.AutomountServiceAccountToken {
		t.Error("node pod mounts a ServiceAccount token it has no use for")
	}

	scs := map[string]storagev1.StorageClass{}
	for _, o := range objs {
		if o.GetKind() == "StorageClass" {
			var sc storagev1.StorageClass
			typed(t, o, &sc)
			scs[sc.Name] = sc
		}
	}
	if len(scs) != 3 {
		t.Fatalf("StorageClasses %v, want rds-ext4, rds-xfs, rds-block-rwx", scs)
	}
	for name, want := range map[string]map[string]string{
		"rds-ext4":      {"csi.storage.k8s.io/fstype": "ext4"},
		"rds-xfs":       {"csi.storage.k8s.io/fstype": "xfs"},
		"rds-block-rwx": {"migrationTimeout": "5m"},
	} {
		sc := scs[name]
		if sc.Provisioner != "rds.csi.srvlab.io" || !equalMaps(sc.Parameters, want) || !*sc.AllowVolumeExpansion {
			t.Errorf("StorageClass %s: provisioner %s parameters %v", name, sc.Provisioner, sc.Parameters)
		}
		isDefault := sc.Annotations["storageclass.kubernetes.io/is-default-class"] == "true"
		if isDefault != (name == "rds-ext4") {
			t.Errorf("StorageClass %s default=%v", name, isDefault)
		}
	}
	find(t, objs, "PodDisruptionBudget", "rds-csi-controller")
	for _, o := range objs {
		switch o.GetKind() {
		case "VolumeSnapshotClass", "ServiceMonitor", "Secret":
			t.Errorf("default render has %s/%s (needs a value to turn it on)", o.GetKind(), o.GetName())
		}
	}
}

func equalMaps(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// With the upstream sidecars, the node-driver-registrar registers the kubelet's path of the
// socket and the livenessprobe serves /healthz; rds-csi gets neither flag.
func TestSidecarRender(t *testing.T) {
	objs := objects(t, render(t, "rds-csi", "rds-csi", append([]string{"--values", manifestsV}, sidecarValues...)...))
	var ds appsv1.DaemonSet
	typed(t, find(t, objs, "DaemonSet", "rds-csi-node"), &ds)
	npod := ds.Spec.Template.Spec
	reg := container(t, npod, "node-driver-registrar")
	requireArgs(t, reg, "--csi-address=/csi/csi.sock", "--kubelet-registration-path=/var/lib/kubelet/plugins/rds.csi.srvlab.io/csi.sock")
	requireArgs(t, container(t, npod, "liveness-probe"), "--csi-address=/csi/csi.sock", "--http-endpoint=:9818")
	node := container(t, npod, "rds-csi")
	for _, flag := range []string{"--kubelet-dir", "--health-address"} {
		if a, ok := argWithPrefix(node, flag); ok {
			t.Errorf("node plugin has %s with the sidecars", a)
		}
	}
	if node.LivenessProbe == nil || node.LivenessProbe.HTTPGet.Port.IntValue() != 9818 {
		t.Errorf("node liveness probe %+v", node.LivenessProbe)
	}
	var dep appsv1.Deployment
	typed(t, find(t, objs, "Deployment", "rds-csi-controller"), &dep)
	requireArgs(t, container(t, dep.Spec.Template.Spec, "liveness-probe"), "--http-endpoint=:9808")
	if a, ok := argWithPrefix(container(t, dep.Spec.Template.Spec, "rds-csi"), "--health-address"); ok {
		t.Errorf("controller has %s with the livenessprobe sidecar", a)
	}
}

// A chart-made Secret holds the key base64-encoded; the key never appears in clear anywhere in
// the render, and nothing but the Secret holds it.
func TestSecretIsNeverAPlainValue(t *testing.T) {
	text := render(t, "rds-csi", "rds-csi", append([]string{"--set", "rds.address=10.0.0.1:22"}, secretFiles(t)...)...)
	if strings.Contains(text, "test-only-not-a-real-key") || strings.Contains(text, "BEGIN OPENSSH") {
		t.Fatal("the SSH key appears in clear in the render")
	}
	enc := base64.StdEncoding.EncodeToString([]byte(testSSHKey))
	objs := objects(t, text)
	for _, o := range objs {
		b, _ := o.MarshalJSON()
		if strings.Contains(string(b), enc) && o.GetKind() != "Secret" {
			t.Errorf("%s/%s holds the SSH key", o.GetKind(), o.GetName())
		}
	}
	var s corev1.Secret
	typed(t, find(t, objs, "Secret", "rds-csi-rds"), &s)
	if string(s.Data["ssh-privatekey"]) != testSSHKey || string(s.Data["host-key"]) != testHostKey {
		t.Errorf("Secret data: %q", s.Data)
	}
	var dep appsv1.Deployment
	typed(t, find(t, objs, "Deployment", "rds-csi-controller"), &dep)
	if dep.Spec.Template.Annotations["checksum/secret"] == "" {
		t.Error("a changed chart-made Secret does not restart the controller")
	}
}

// Every value of values.yaml is in the README's table of values, and every value the README's
// table names exists: the two cannot drift apart.
func TestReadmeDocumentsEveryValue(t *testing.T) {
	vb, err := os.ReadFile(chartDir + "/values.yaml")
	if err != nil {
		t.Fatal(err)
	}
	values := objects(t, string(vb))[0].Object
	rb, err := os.ReadFile(chartDir + "/README.md")
	if err != nil {
		t.Fatal(err)
	}
	documented := map[string]bool{}
	for _, line := range strings.Split(string(rb), "\n") {
		if strings.HasPrefix(line, "| `") {
			documented[strings.SplitN(line, "`", 3)[1]] = true
		}
	}
	// Maps whose keys are the user's (labels, Kubernetes objects, StorageClass parameters) are
	// documented as one value.
	opaque := map[string]bool{"resources": true, "nodeSelector": true, "tolerations": true, "affinity": true,
		"podAnnotations": true, "podLabels": true, "podSecurityContext": true, "annotations": true, "labels": true,
		"parameters": true, "updateStrategy": true, "extraArgs": true}
	var walk func(prefix string, m map[string]any)
	walk = func(prefix string, m map[string]any) {
		for k, v := range m {
			key := prefix + k
			if strings.HasPrefix(key, "storageClasses.") {
				if prefix == "storageClasses." {
					if !documented[key+".*"] {
						t.Errorf("README does not document %s.*", key)
					}
					for field := range v.(map[string]any) {
						if !documented["storageClasses.<class>."+field] {
							t.Errorf("README does not document storageClasses.<class>.%s", field)
						}
					}
				} else {
					walk(key+".", v.(map[string]any))
				}
				continue
			}
			if sub, ok := v.(map[string]any); ok && len(sub) > 0 && !opaque[k] {
				walk(key+".", sub)
				continue
			}
			if !documented[key] {
				t.Errorf("README does not document value %s", key)
			}
			delete(documented, key)
		}
	}
	walk("", values)
	for key := range documented {
		if !strings.HasPrefix(key, "storageClasses.") {
			t.Errorf("README documents %s, which values.yaml does not have", key)
		}
	}
}
