package chart

import (
	"context"
	"os"
	"testing"
	"time"

	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	coordinationv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/client-go/tools/cache"
	"k8s.io/utils/ptr"
)

// Minimal CRDs for the two optional kinds whose CRDs a bare API server lacks. The
// VolumeSnapshotClass one checks the fields the chart sets the way the upstream CRD does.
const (
	snapshotClassCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: volumesnapshotclasses.snapshot.storage.k8s.io
  annotations:
    api-approved.kubernetes.io: "https://github.com/kubernetes-csi/external-snapshotter/pull/814"
spec:
  group: snapshot.storage.k8s.io
  scope: Cluster
  names: {kind: VolumeSnapshotClass, listKind: VolumeSnapshotClassList, plural: volumesnapshotclasses, singular: volumesnapshotclass}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          required: [driver, deletionPolicy]
          properties:
            apiVersion: {type: string}
            kind: {type: string}
            metadata: {type: object}
            driver: {type: string}
            deletionPolicy: {type: string, enum: [Delete, Retain]}
            parameters: {type: object, additionalProperties: {type: string}}
`
	serviceMonitorCRD = `
apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: servicemonitors.monitoring.coreos.com
spec:
  group: monitoring.coreos.com
  scope: Namespaced
  names: {kind: ServiceMonitor, listKind: ServiceMonitorList, plural: servicemonitors, singular: servicemonitor}
  versions:
    - name: v1
      served: true
      storage: true
      schema:
        openAPIV3Schema:
          type: object
          properties:
            spec:
              type: object
              required: [selector, endpoints]
              x-kubernetes-preserve-unknown-fields: true
`
)

// Every object the chart renders is created (not dry-run, with strict field validation) on a
// real kube-apiserver that authorizes with RBAC: the plain manifests, and a second release with
// every optional part on (chart-made Secret, upstream node sidecars, VolumeSnapshotClass,
// ServiceMonitor). Then the controller's ServiceAccount, through a token from the TokenRequest
// API, does what rds-csi and its sidecars need, and is refused what it must not do.
func TestObjectsOnRealAPIServer(t *testing.T) {
	helmBin(t)
	cfg := startRBACServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	admin := kubernetes.NewForConfigOrDie(cfg)
	dyn := dynamic.NewForConfigOrDie(cfg)
	mapper := restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(admin.Discovery()))

	for _, ns := range []string{"rds-csi", "rds-csi-extras", "apps"} {
		if _, err := admin.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	createCRDs(ctx, t, dyn, snapshotClassCRD, serviceMonitorCRD)
	mapper.Reset()

	// The plain manifests, as `kubectl create -f deploy/kubernetes/rds-csi.yaml` would, after the
	// user created the Secret they name.
	if _, err := admin.CoreV1().Secrets("rds-csi").Create(ctx, &corev1.Secret{
		ObjectMeta: metav1.ObjectMeta{Name: "rds-csi-rds"},
		StringData: map[string]string{"ssh-privatekey": testSSHKey, "host-key": testHostKey},
	}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(manifests)
	if err != nil {
		t.Fatal(err)
	}
	plain := objects(t, string(text))
	createAll(ctx, t, dyn, mapper, plain)

	extrasArgs := []string{"--set", "rds.address=10.0.0.1:22", "--set", "driverName=extras.rds.csi.srvlab.io",
		"--set", "storageClasses.ext4.name=extras-ext4", "--set", "storageClasses.ext4.isDefault=false",
		"--set", "storageClasses.xfs.name=extras-xfs", "--set", "storageClasses.kubevirt.name=extras-block-rwx",
		"--set", "snapshots.volumeSnapshotClass.create=true", "--set", "snapshots.volumeSnapshotClass.name=extras",
		"--set", "serviceMonitor.enabled=true"}
	extrasArgs = append(append(extrasArgs, secretFiles(t)...), sidecarValues...)
	extras := objects(t, render(t, "rds-csi-extras", "rds-csi-extras", extrasArgs...))
	for _, kind := range []string{"Secret", "VolumeSnapshotClass", "ServiceMonitor"} {
		if !hasKind(extras, kind) {
			t.Fatalf("the extras render has no %s", kind)
		}
	}
	createAll(ctx, t, dyn, mapper, extras)

	// The server kept what the chart says (a sample: the node plugin's propagation and privileges).
	if ds, err := admin.AppsV1().DaemonSets("rds-csi").Get(ctx, "rds-csi-node", metav1.GetOptions{}); err != nil {
		t.Error(err)
	} else if c := ds.Spec.Template.Spec.Containers[0]; !*c.SecurityContext.Privileged || c.VolumeMounts[0].MountPropagation == nil ||
		*c.VolumeMounts[0].MountPropagation != corev1.MountPropagationBidirectional {
		t.Errorf("stored node plugin: privileged %v, %s propagation %v", *c.SecurityContext.Privileged, c.VolumeMounts[0].MountPath, c.VolumeMounts[0].MountPropagation)
	}

	t.Run("controller ServiceAccount does what the driver needs", func(t *testing.T) {
		sa := kubernetes.NewForConfigOrDie(tokenConfig(ctx, t, cfg, admin, "rds-csi", "rds-csi-controller"))
		driverNeeds(ctx, t, admin, sa)
	})
	// The driver's own ClusterRole is enough for it, without what the sidecars' roles add.
	t.Run("driver ClusterRole alone does what the driver needs", func(t *testing.T) {
		if _, err := admin.CoreV1().ServiceAccounts("rds-csi").Create(ctx, &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "driver-only"}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		if _, err := admin.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "driver-only"},
			RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "rds-csi-driver"},
			Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "driver-only", Namespace: "rds-csi"}}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		sa := kubernetes.NewForConfigOrDie(tokenConfig(ctx, t, cfg, admin, "rds-csi", "driver-only"))
		driverNeeds(ctx, t, admin, sa)
	})
	t.Run("controller ServiceAccount has what each sidecar documents", func(t *testing.T) {
		sa := kubernetes.NewForConfigOrDie(tokenConfig(ctx, t, cfg, admin, "rds-csi", "rds-csi-controller"))
		leaderElection(ctx, t, sa)
		sidecarNeeds(ctx, t, sa)
	})
	t.Run("controller ServiceAccount is refused the rest", func(t *testing.T) {
		sa := kubernetes.NewForConfigOrDie(tokenConfig(ctx, t, cfg, admin, "rds-csi", "rds-csi-controller"))
		refused(ctx, t, admin, sa)
	})
	t.Run("node ServiceAccount has no API access", func(t *testing.T) {
		sa := kubernetes.NewForConfigOrDie(tokenConfig(ctx, t, cfg, admin, "rds-csi", "rds-csi-node"))
		_, err := sa.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
		forbidden(t, "node: list persistentvolumes", err)
		_, err = sa.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{})
		forbidden(t, "node: get nodes", err)
	})
}

func hasKind(objs []*unstructured.Unstructured, kind string) bool {
	for _, o := range objs {
		if o.GetKind() == kind {
			return true
		}
	}
	return false
}

func createCRDs(ctx context.Context, t *testing.T, dyn dynamic.Interface, docs ...string) {
	t.Helper()
	gvr := schema.GroupVersionResource{Group: "apiextensions.k8s.io", Version: "v1", Resource: "customresourcedefinitions"}
	for _, d := range docs {
		crd := objects(t, d)[0]
		if _, err := dyn.Resource(gvr).Create(ctx, crd, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		err := wait.PollUntilContextTimeout(ctx, 100*time.Millisecond, 30*time.Second, true, func(ctx context.Context) (bool, error) {
			got, err := dyn.Resource(gvr).Get(ctx, crd.GetName(), metav1.GetOptions{})
			if err != nil {
				return false, err
			}
			conds, _, _ := unstructured.NestedSlice(got.Object, "status", "conditions")
			for _, c := range conds {
				if m, ok := c.(map[string]any); ok && m["type"] == "Established" && m["status"] == "True" {
					return true, nil
				}
			}
			return false, nil
		})
		if err != nil {
			t.Fatalf("CRD %s not established: %v", crd.GetName(), err)
		}
	}
}

// createAll creates each object for real, with strict field validation (an unknown or duplicated
// field is an error, not a warning), then reads it back. Namespaced objects must name their
// namespace, so that the plain manifests land where the chart put them.
func createAll(ctx context.Context, t *testing.T, dyn dynamic.Interface, mapper meta.RESTMapper, objs []*unstructured.Unstructured) {
	t.Helper()
	for _, o := range objs {
		gvk := o.GroupVersionKind()
		m, err := mapper.RESTMapping(gvk.GroupKind(), gvk.Version)
		if err != nil {
			t.Fatalf("%s %s: %v", gvk, o.GetName(), err)
		}
		var ri dynamic.ResourceInterface = dyn.Resource(m.Resource)
		if m.Scope.Name() == meta.RESTScopeNameNamespace {
			if o.GetNamespace() == "" {
				t.Errorf("%s/%s has no namespace", o.GetKind(), o.GetName())
				continue
			}
			ri = dyn.Resource(m.Resource).Namespace(o.GetNamespace())
		} else if o.GetNamespace() != "" {
			t.Errorf("cluster-scoped %s/%s has namespace %s", o.GetKind(), o.GetName(), o.GetNamespace())
		}
		created, err := ri.Create(ctx, o, metav1.CreateOptions{FieldValidation: "Strict"})
		if err != nil {
			t.Errorf("creating %s/%s: %v", o.GetKind(), o.GetName(), err)
			continue
		}
		got, err := ri.Get(ctx, o.GetName(), metav1.GetOptions{})
		if err != nil || got.GetUID() != created.GetUID() {
			t.Errorf("%s/%s not stored: %v", o.GetKind(), o.GetName(), err)
		}
	}
}

// tokenConfig returns a config that authenticates as ServiceAccount ns/name with a token from
// the TokenRequest API, as the kubelet gives one to the pod.
func tokenConfig(ctx context.Context, t *testing.T, cfg *rest.Config, admin kubernetes.Interface, ns, name string) *rest.Config {
	t.Helper()
	tr, err := admin.CoreV1().ServiceAccounts(ns).CreateToken(ctx, name, &authenticationv1.TokenRequest{
		Spec: authenticationv1.TokenRequestSpec{ExpirationSeconds: ptr.To[int64](3600)},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("TokenRequest for %s/%s: %v", ns, name, err)
	}
	c := rest.AnonymousClientConfig(cfg)
	c.BearerToken = tr.Status.Token
	// Who are we? The API server must see the ServiceAccount, not the admin.
	review, err := kubernetes.NewForConfigOrDie(c).AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if want := "system:serviceaccount:" + ns + ":" + name; review.Status.UserInfo.Username != want {
		t.Fatalf("token authenticates as %q, want %q", review.Status.UserInfo.Username, want)
	}
	return c
}

// driverNeeds makes, as the ServiceAccount, the calls rds-csi --mode controller makes: informers
// on VolumeAttachments, PVs and Nodes that sync and then see new objects (list and watch), a
// node get, and an event on a PVC created and patched (aggregation).
func driverNeeds(ctx context.Context, t *testing.T, admin, sa kubernetes.Interface) {
	factory := informers.NewSharedInformerFactory(sa, 0)
	vas := factory.Storage().V1().VolumeAttachments().Informer()
	pvs := factory.Core().V1().PersistentVolumes().Informer()
	nodes := factory.Core().V1().Nodes().Informer()
	stop := make(chan struct{})
	defer func() {
		close(stop)
		factory.Shutdown() // waits for the informers, which stop with stop
	}()
	factory.Start(stop)
	syncCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if !cache.WaitForCacheSync(syncCtx.Done(), vas.HasSynced, pvs.HasSynced, nodes.HasSynced) {
		t.Fatal("informers on VolumeAttachments, PVs and Nodes did not sync with the ServiceAccount's token")
	}

	if _, err := admin.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: "n1"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: "pvc-0b6e5f0e-2f4b-4a8b-9a55-5f1c0a7e1d01"},
		Spec: corev1.PersistentVolumeSpec{
			Capacity:    corev1.ResourceList{corev1.ResourceStorage: resource.MustParse("1Gi")},
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: "rds.csi.srvlab.io", VolumeHandle: "pvc-0b6e5f0e-2f4b-4a8b-9a55-5f1c0a7e1d01"}},
		},
	}
	if _, err := admin.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-va-1"},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "rds.csi.srvlab.io", NodeName: "n1",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To(pv.Name)}},
	}
	if _, err := admin.StorageV1().VolumeAttachments().Create(ctx, va, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
	err := wait.PollUntilContextTimeout(ctx, 50*time.Millisecond, 20*time.Second, true, func(context.Context) (bool, error) {
		_, n, _ := nodes.GetStore().GetByKey("n1")
		_, p, _ := pvs.GetStore().GetByKey(pv.Name)
		_, v, _ := vas.GetStore().GetByKey(va.Name)
		return n && p && v, nil
	})
	if err != nil {
		t.Fatal("the ServiceAccount's watches did not deliver a new Node, PV and VolumeAttachment")
	}
	if _, err := sa.CoreV1().Nodes().Get(ctx, "n1", metav1.GetOptions{}); err != nil {
		t.Errorf("get node: %v", err)
	}

	ev := &corev1.Event{
		ObjectMeta:     metav1.ObjectMeta{GenerateName: "data.", Namespace: "apps"},
		InvolvedObject: corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "apps", Name: "data", APIVersion: "v1"},
		Reason:         "AttachedToNotReadyNode", Message: "test", Type: corev1.EventTypeWarning, Count: 1,
		Source: corev1.EventSource{Component: "rds-csi"}, FirstTimestamp: metav1.Now(), LastTimestamp: metav1.Now(),
	}
	if created, err := sa.CoreV1().Events("apps").Create(ctx, ev, metav1.CreateOptions{}); err != nil {
		t.Errorf("create event: %v", err)
	} else if _, err := sa.CoreV1().Events("apps").Patch(ctx, created.Name, types.StrategicMergePatchType, []byte(`{"count":2}`), metav1.PatchOptions{}); err != nil {
		t.Errorf("patch event: %v", err)
	}
}

// leaderElection makes, as the ServiceAccount, what the sidecars' leader election does: a Lease
// in the release namespace, created and renewed.
func leaderElection(ctx context.Context, t *testing.T, sa kubernetes.Interface) {

	lease := &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "external-attacher-leader-rds-csi-srvlab-io"},
		Spec: coordinationv1.LeaseSpec{HolderIdentity: ptr.To("rds-csi-controller-0")}}
	got, err := sa.CoordinationV1().Leases("rds-csi").Create(ctx, lease, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("create lease: %v", err)
	}
	got.Spec.RenewTime = &metav1.MicroTime{Time: time.Now()}
	if _, err := sa.CoordinationV1().Leases("rds-csi").Update(ctx, got, metav1.UpdateOptions{}); err != nil {
		t.Errorf("renew lease: %v", err)
	}
}

type access struct {
	verb, group, resource, subresource, namespace string
}

func (a access) String() string {
	s := a.verb + " " + a.resource
	if a.subresource != "" {
		s += "/" + a.subresource
	}
	if a.group != "" {
		s += "." + a.group
	}
	if a.namespace != "" {
		s += " in " + a.namespace
	}
	return s
}

func can(ctx context.Context, t *testing.T, sa kubernetes.Interface, a access) bool {
	t.Helper()
	r, err := sa.AuthorizationV1().SelfSubjectAccessReviews().Create(ctx, &authorizationv1.SelfSubjectAccessReview{
		Spec: authorizationv1.SelfSubjectAccessReviewSpec{ResourceAttributes: &authorizationv1.ResourceAttributes{
			Verb: a.verb, Group: a.group, Resource: a.resource, Subresource: a.subresource, Namespace: a.namespace}},
	}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return r.Status.Allowed
}

// sidecarNeeds asks the API server (SelfSubjectAccessReview) about every permission the
// sidecars' deploy/kubernetes/rbac.yaml lists for the way the chart runs them.
func sidecarNeeds(ctx context.Context, t *testing.T, sa kubernetes.Interface) {
	var needs []access
	add := func(group, resource, sub, ns string, verbs ...string) {
		for _, v := range verbs {
			needs = append(needs, access{v, group, resource, sub, ns})
		}
	}
	// external-provisioner v6.4.0 (deleting the PV of a deleted volume is its job).
	add("", "persistentvolumes", "", "", "get", "list", "watch", "create", "patch", "delete")
	add("", "persistentvolumeclaims", "", "apps", "get", "list", "watch", "update")
	add("storage.k8s.io", "storageclasses", "", "", "get", "list", "watch")
	add("", "events", "", "apps", "list", "watch", "create", "update", "patch")
	add("snapshot.storage.k8s.io", "volumesnapshots", "", "apps", "get", "list", "watch", "update")
	add("snapshot.storage.k8s.io", "volumesnapshotcontents", "", "", "get", "list")
	add("storage.k8s.io", "csinodes", "", "", "get", "list", "watch")
	add("", "nodes", "", "", "get", "list", "watch")
	add("storage.k8s.io", "volumeattachments", "", "", "get", "list", "watch")
	// external-attacher v4.13.0.
	add("", "persistentvolumes", "", "", "patch")
	add("storage.k8s.io", "volumeattachments", "", "", "patch")
	add("storage.k8s.io", "volumeattachments", "status", "", "patch")
	// external-resizer v2.3.0.
	add("", "persistentvolumeclaims", "status", "apps", "patch")
	// csi-snapshotter v8.7.0.
	add("snapshot.storage.k8s.io", "volumesnapshotclasses", "", "", "get", "list", "watch")
	add("snapshot.storage.k8s.io", "volumesnapshotcontents", "", "", "watch", "update", "patch")
	add("snapshot.storage.k8s.io", "volumesnapshotcontents", "status", "", "update", "patch")
	// Leader election of all four, in the release namespace.
	add("coordination.k8s.io", "leases", "", "rds-csi", "get", "watch", "list", "delete", "update", "create")
	for _, a := range needs {
		if !can(ctx, t, sa, a) {
			t.Errorf("controller ServiceAccount may not %s", a)
		}
	}
}

func forbidden(t *testing.T, what string, err error) {
	t.Helper()
	if !apierrors.IsForbidden(err) {
		t.Errorf("%s: got %v, want 403 Forbidden", what, err)
	}
}

// refused makes, as the ServiceAccount, calls the chart must not allow, and checks each gets 403.
func refused(ctx context.Context, t *testing.T, admin, sa kubernetes.Interface) {
	for _, ns := range []string{"apps", "kube-system"} {
		if _, err := admin.CoreV1().Secrets(ns).Create(ctx, &corev1.Secret{ObjectMeta: metav1.ObjectMeta{Name: "other"},
			StringData: map[string]string{"password": "x"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			t.Fatal(err)
		}
		_, err := sa.CoreV1().Secrets(ns).Get(ctx, "other", metav1.GetOptions{})
		forbidden(t, "read a Secret in "+ns, err)
	}
	// Not even its own Secret through the API: the key reaches the pod as a mounted file.
	_, err := sa.CoreV1().Secrets("rds-csi").Get(ctx, "rds-csi-rds", metav1.GetOptions{})
	forbidden(t, "read its own Secret through the API", err)
	_, err = sa.CoreV1().Secrets("").List(ctx, metav1.ListOptions{})
	forbidden(t, "list Secrets", err)

	err = sa.CoreV1().Nodes().Delete(ctx, "n1", metav1.DeleteOptions{})
	forbidden(t, "delete a Node", err)
	_, err = sa.CoreV1().Nodes().Patch(ctx, "n1", types.MergePatchType, []byte(`{"spec":{"unschedulable":true}}`), metav1.PatchOptions{})
	forbidden(t, "patch a Node", err)
	err = sa.StorageV1().VolumeAttachments().Delete(ctx, "csi-va-1", metav1.DeleteOptions{})
	forbidden(t, "delete a VolumeAttachment", err)
	_, err = sa.StorageV1().VolumeAttachments().Create(ctx, &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: "csi-va-2"},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: "rds.csi.srvlab.io", NodeName: "n1",
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: ptr.To("x")}}}, metav1.CreateOptions{})
	forbidden(t, "create a VolumeAttachment", err)
	pv, err := admin.CoreV1().PersistentVolumes().Get(ctx, "pvc-0b6e5f0e-2f4b-4a8b-9a55-5f1c0a7e1d01", metav1.GetOptions{})
	if err == nil {
		_, err = sa.CoreV1().PersistentVolumes().Update(ctx, pv, metav1.UpdateOptions{})
		forbidden(t, "update (replace) a PV", err)
	}
	err = sa.CoreV1().PersistentVolumeClaims("apps").Delete(ctx, "data", metav1.DeleteOptions{})
	forbidden(t, "delete a PVC", err)
	_, err = sa.CoreV1().Pods("rds-csi").Create(ctx, &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "p"},
		Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "x"}}}}, metav1.CreateOptions{})
	forbidden(t, "create a Pod", err)
	_, err = sa.CoordinationV1().Leases("apps").Create(ctx, &coordinationv1.Lease{ObjectMeta: metav1.ObjectMeta{Name: "l"}}, metav1.CreateOptions{})
	forbidden(t, "create a Lease outside its namespace", err)
	_, err = sa.RbacV1().ClusterRoleBindings().Create(ctx, &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "escalate"},
		RoleRef:  rbacv1.RoleRef{APIGroup: "rbac.authorization.k8s.io", Kind: "ClusterRole", Name: "cluster-admin"},
		Subjects: []rbacv1.Subject{{Kind: "ServiceAccount", Name: "rds-csi-controller", Namespace: "rds-csi"}}}, metav1.CreateOptions{})
	forbidden(t, "bind itself to cluster-admin", err)
	_, err = sa.StorageV1().StorageClasses().Create(ctx, &storagev1.StorageClass{ObjectMeta: metav1.ObjectMeta{Name: "sc"}, Provisioner: "x"}, metav1.CreateOptions{})
	forbidden(t, "create a StorageClass", err)
}
