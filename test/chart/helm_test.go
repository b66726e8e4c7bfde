// Package chart checks the Helm chart deploy/helm/rds-csi with a pinned helm (hack/helm.sh):
// helm lint, what helm template renders, that deploy/kubernetes is the chart's render, and that
// every rendered object is created on a real kube-apiserver with RBAC authorization, where the
// controller's ServiceAccount can do what the driver needs and nothing it must not, and the
// rds-csi binary, with the chart's flags and a token of that ServiceAccount, heals attachments.
package chart

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime"
	utilyaml "k8s.io/apimachinery/pkg/util/yaml"
)

const (
	// EnvHelm names the variable holding the helm binary; `make test` sets it from hack/helm.sh.
	EnvHelm = "RDS_CSI_HELM"

	root       = "../.."
	chartDir   = root + "/deploy/helm/rds-csi"
	manifests  = root + "/deploy/kubernetes/rds-csi.yaml"
	manifestsV = root + "/deploy/kubernetes/values.yaml"
)

// manifestsArgs is how `make manifests` renders deploy/kubernetes/rds-csi.yaml (keep the two the
// same): release rds-csi in namespace rds-csi, with deploy/kubernetes/values.yaml.
var manifestsArgs = []string{"template", "rds-csi", chartDir, "--namespace", "rds-csi", "--values", manifestsV}

// helmBin returns the pinned helm: $RDS_CSI_HELM, or where hack/helm.sh puts it.
func helmBin(t *testing.T) string {
	t.Helper()
	if p := os.Getenv(EnvHelm); p != "" {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s=%s: %v", EnvHelm, p, err)
		}
		return p
	}
	out, err := exec.Command(root+"/hack/helm.sh", "--print-bin").Output()
	if err != nil {
		t.Fatalf("hack/helm.sh --print-bin: %v", err)
	}
	p := strings.TrimSpace(string(out))
	if _, err := os.Stat(p); err != nil {
		if testing.Short() {
			t.Skipf("helm is not built (%s): skipped in -short mode; run hack/helm.sh", p)
		}
		t.Fatalf("no helm at %s: run `make test` (or hack/helm.sh) to build the pinned helm, or set %s", p, EnvHelm)
	}
	return p
}

// helm runs the pinned helm with its own empty home (no repositories, no plugins, no cache
// shared with a user's helm) and returns stdout; stderr is in the error.
func helm(t *testing.T, args ...string) (string, error) {
	t.Helper()
	home := t.TempDir()
	cmd := exec.Command(helmBin(t), args...)
	cmd.Env = append(os.Environ(),
		"HELM_CACHE_HOME="+filepath.Join(home, "cache"),
		"HELM_CONFIG_HOME="+filepath.Join(home, "config"),
		"HELM_DATA_HOME="+filepath.Join(home, "data"),
	)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("helm %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, stdout.String(), stderr.String())
	}
	return stdout.String(), nil
}

func mustHelm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := helm(t, args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// render runs helm template for release name in namespace ns with the given --set and --values
// arguments, and returns the rendered text.
func render(t *testing.T, name, ns string, extra ...string) string {
	t.Helper()
	args := append([]string{"template", name, chartDir, "--namespace", ns}, extra...)
	return mustHelm(t, args...)
}

// objects splits a multi-document render into objects (empty documents skipped).
func objects(t *testing.T, text string) []*unstructured.Unstructured {
	t.Helper()
	dec := utilyaml.NewYAMLOrJSONDecoder(strings.NewReader(text), 4096)
	var objs []*unstructured.Unstructured
	for {
		var m map[string]any
		if err := dec.Decode(&m); err != nil {
			if errors.Is(err, io.EOF) {
				return objs
			}
			t.Fatalf("rendered YAML does not parse: %v", err)
		}
		if len(m) == 0 {
			continue
		}
		objs = append(objs, &unstructured.Unstructured{Object: m})
	}
}

// find returns the one object of kind and name, failing the test if there is not exactly one.
func find(t *testing.T, objs []*unstructured.Unstructured, kind, name string) *unstructured.Unstructured {
	t.Helper()
	var found []*unstructured.Unstructured
	for _, o := range objs {
		if o.GetKind() == kind && o.GetName() == name {
			found = append(found, o)
		}
	}
	if len(found) != 1 {
		t.Fatalf("%d objects %s/%s rendered, want 1 (rendered: %s)", len(found), kind, name, kinds(objs))
	}
	return found[0]
}

func kinds(objs []*unstructured.Unstructured) string {
	var s []string
	for _, o := range objs {
		s = append(s, o.GetKind()+"/"+o.GetName())
	}
	return strings.Join(s, ", ")
}

// typed converts a rendered object into its Go type (into must be a pointer to it), refusing
// fields the type does not have.
func typed(t *testing.T, o *unstructured.Unstructured, into any) {
	t.Helper()
	if err := runtime.DefaultUnstructuredConverter.FromUnstructuredWithValidation(o.Object, into, true); err != nil {
		t.Fatalf("%s/%s: %v", o.GetKind(), o.GetName(), err)
	}
}
