package chart

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/srvlab/rds-csi/internal/deployrig"
	"github.com/srvlab/rds-csi/pkg/k8stest"
)

// The controller runs as in its pod: the rds-csi container's flags from the chart's Deployment,
// and the credentials of the chart's controller ServiceAccount (a token from the TokenRequest API,
// in a kubeconfig instead of the in-cluster files), on an API server that authorizes with RBAC and
// holds only the chart's RBAC (helm template, objects created as rendered). The attachment-healing
// scenario of test/deploy passes with it, events included, so the chart's ClusterRoles are enough
// for the driver; with the same token, what the roles must not allow is refused with 403.
func TestControllerHealsWithChartServiceAccount(t *testing.T) {
	helmBin(t)
	cfg := startRBACServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(admin.Discovery()))
	if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "rds-csi"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}

	all := objects(t, mustHelm(t, manifestsArgs...))
	var install []*unstructured.Unstructured
	for _, o := range all {
		switch o.GetKind() {
		case "ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding", "CSIDriver":
			install = append(install, o)
		}
	}
	createAll(ctx, t, dyn, mapper, install)
	if t.Failed() {
		t.FailNow()
	}

	var dep appsv1.Deployment
	typed(t, find(t, all, "Deployment", "rds-csi-controller"), &dep)
	var args []string
	for _, c := range dep.Spec.Template.Spec.Containers {
		if c.Name == "rds-csi" {
			args = c.Args
		}
	}
	driver := ""
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--driver-name="); ok {
			driver = v
		}
	}
	if driver == "" {
		t.Fatalf("the chart's rds-csi container has no --driver-name: %q", args)
	}
	sa := dep.Spec.Template.Spec.ServiceAccountName

	t.Run("controller ServiceAccount", func(t *testing.T) {
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := k8stest.WriteKubeconfig(tokenConfig(ctx, t, cfg, admin, "rds-csi", sa), kubeconfig); err != nil {
			t.Fatal(err)
		}
		r := deployrig.New(t, cfg, deployrig.Options{Driver: driver, Kubeconfig: kubeconfig, Args: args, Prefix: "sa-", ClaimNamespace: "apps"})
		deployrig.HealAttachments(r, 1)
		if !t.Failed() {
			refusedToController(ctx, t, admin, kubeconfig, r.Node("b"))
		}
	})
	// The driver's own ClusterRole is enough, without what the sidecars' roles add (the controller
	// ServiceAccount holds both, so the run above cannot tell).
	t.Run("driver ClusterRole alone", func(t *testing.T) {
		if _, err := admin.CoreV1().ServiceAccounts("rds-csi").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "driver-only"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "driver-only"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: find(t, all, "ClusterRole", "rds-csi-driver").GetName()},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "driver-only", Namespace: "rds-csi"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		kubeconfig := filepath.Join(t.TempDir(), "kubeconfig")
		if err := k8stest.WriteKubeconfig(tokenConfig(ctx, t, cfg, admin, "rds-csi", "driver-only"), kubeconfig); err != nil {
			t.Fatal(err)
		}
		// Another driver name, so that this controller does not see the attachments left by the
		// run above.
		r := deployrig.New(t, cfg, deployrig.Options{Driver: "driver-only." + driver, Kubeconfig: kubeconfig, Args: args, Prefix: "do-", ClaimNamespace: "apps"})
		deployrig.HealAttachments(r, 2)
	})
}

// refusedToController checks that the credentials of the controller's kubeconfig are refused, with
// 403, what the chart's roles must not allow.
func refusedToController(ctx context.Context, t *testing.T, admin kubernetes.Interface, kubeconfig, node string) {
	saCfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		t.Fatal(err)
	}
	token := kubernetes.NewForConfigOrDie(saCfg)
	if _, err := admin.CoreV1().Secrets("apps").Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"},
		StringData: map[string]string{"password": "x"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	_, err = token.CoreV1().Secrets("apps").Get(ctx, "other", metav1.GetOptions{})
	forbidden(t, "the controller's token: read a Secret in another namespace", err)
	_, err = token.CoreV1().Secrets("kube-system").List(ctx, metav1.ListOptions{})
	forbidden(t, "the controller's token: list Secrets in kube-system", err)
	err = token.CoreV1().Nodes().Delete(ctx, node, metav1.DeleteOptions{})
	forbidden(t, "the controller's token: delete a Node", err)
	if _, err := admin.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{}); err != nil {
		t.Errorf("node %s after the refused delete: %v", node, err)
	}
	_, err = token.CoreV1().Nodes().Patch(ctx, node, types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	forbidden(t, "the controller's token: cordon a Node", err)
}
