package k8stest

import (
	"context"
	"crypto/sha256"
	"fmt"
	"os"

	"github.com/container-storage-interface/spec/lib/go/csi"
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

// This file acts on the API server as the other parts of a cluster would: the kubelet (node
// status), an operator (taints) and the CSI sidecars (PersistentVolumes, VolumeAttachments), so
// that tests, benchmarks and the demo share one faithful version of what those parts do.

// AddNode creates a node whose Ready condition is True, as a kubelet that registered would.
func AddNode(ctx context.Context, cs kubernetes.Interface, name string, labels map[string]string) error {
	n, err := cs.CoreV1().Nodes().Create(ctx, &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: labels}}, metav1.CreateOptions{})
	if err != nil {
		return err
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: corev1.ConditionTrue, Reason: "KubeletReady"}}
	_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// SetReady sets the node's Ready condition, as the kubelet (True) or the node lifecycle
// controller (Unknown, when the kubelet stops posting) would.
func SetReady(ctx context.Context, cs kubernetes.Interface, name string, status corev1.ConditionStatus) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Status.Conditions = []corev1.NodeCondition{{Type: corev1.NodeReady, Status: status, Reason: "NodeStatusUnknown"}}
	_, err = cs.CoreV1().Nodes().UpdateStatus(ctx, n, metav1.UpdateOptions{})
	return err
}

// TaintOutOfService adds the out-of-service taint, as an operator does once a node is known to be
// shut down.
func TaintOutOfService(ctx context.Context, cs kubernetes.Interface, name string) error {
	n, err := cs.CoreV1().Nodes().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return err
	}
	n.Spec.Taints = append(n.Spec.Taints, corev1.Taint{Key: corev1.TaintNodeOutOfService, Value: "nodeshutdown", Effect: corev1.TaintEffectNoExecute})
	_, err = cs.CoreV1().Nodes().Update(ctx, n, metav1.UpdateOptions{})
	return err
}

// CreatePV creates the PersistentVolume the external-provisioner makes for a created volume:
// ReadWriteOnce filesystem, or ReadWriteMany raw block when block is set, bound to claim if given.
func CreatePV(ctx context.Context, cs kubernetes.Interface, driver, name string, v *csi.Volume, block bool, claim *corev1.ObjectReference) error {
	pv := &corev1.PersistentVolume{ObjectMeta: metav1.ObjectMeta{Name: name}, Spec: corev1.PersistentVolumeSpec{
		AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
		Capacity:    corev1.ResourceList{corev1.ResourceStorage: *resource.NewQuantity(v.GetCapacityBytes(), resource.BinarySI)},
		PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
			Driver: driver, VolumeHandle: v.GetVolumeId(), VolumeAttributes: v.GetVolumeContext()}},
		ClaimRef: claim,
	}}
	if block {
		mode := corev1.PersistentVolumeBlock
		pv.Spec.VolumeMode = &mode
		pv.Spec.AccessModes = []corev1.PersistentVolumeAccessMode{corev1.ReadWriteMany}
	}
	_, err := cs.CoreV1().PersistentVolumes().Create(ctx, pv, metav1.CreateOptions{})
	return err
}

// Attacher does what the external-attacher does for one CSI driver.
type Attacher struct {
	Client kubernetes.Interface
	Driver string
	// Publish calls ControllerPublishVolume (in process or over gRPC).
	Publish func(context.Context, *csi.ControllerPublishVolumeRequest) error
}

// VAName is the external-attacher's name for the VolumeAttachment of a volume on a node.
func (a Attacher) VAName(handle, node string) string {
	return fmt.Sprintf("csi-%x", sha256.Sum256([]byte(handle+a.Driver+node)))
}

// CreateVA creates the VolumeAttachment of PV pv (volume handle handle) on node, if missing.
func (a Attacher) CreateVA(ctx context.Context, pv, handle, node string) error {
	va := &storagev1.VolumeAttachment{ObjectMeta: metav1.ObjectMeta{Name: a.VAName(handle, node)},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: a.Driver, NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv}}}
	if _, err := a.Client.StorageV1().VolumeAttachments().Create(ctx, va, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		return fmt.Errorf("creating VolumeAttachment: %w", err)
	}
	return nil
}

// Attach handles a VolumeAttachment of PV pv: creates it if missing, calls ControllerPublish
// with req (whose VolumeId and NodeId name the volume and node), and records success in
// status.attached. The publish error comes back as it is.
func (a Attacher) Attach(ctx context.Context, pv string, req *csi.ControllerPublishVolumeRequest) error {
	if err := a.CreateVA(ctx, pv, req.GetVolumeId(), req.GetNodeId()); err != nil {
		return err
	}
	if err := a.Publish(ctx, req); err != nil {
		return err
	}
	name := a.VAName(req.GetVolumeId(), req.GetNodeId())
	va, err := a.Client.StorageV1().VolumeAttachments().Get(ctx, name, metav1.GetOptions{})
	if err != nil {
		return fmt.Errorf("reading VolumeAttachment: %w", err)
	}
	va.Status.Attached = true
	if _, err := a.Client.StorageV1().VolumeAttachments().UpdateStatus(ctx, va, metav1.UpdateOptions{}); err != nil {
		return fmt.Errorf("setting status.attached: %w", err)
	}
	return nil
}

// DeleteVA deletes the VolumeAttachment of a volume on a node, as the external-attacher does
// after ControllerUnpublish (its finalizer gone).
func (a Attacher) DeleteVA(ctx context.Context, handle, node string) error {
	return a.Client.StorageV1().VolumeAttachments().Delete(ctx, a.VAName(handle, node), metav1.DeleteOptions{})
}

// WriteKubeconfig writes a kubeconfig file for cfg (bearer token, TLS as in cfg).
func WriteKubeconfig(cfg *rest.Config, path string) error {
	kc := clientcmdapi.NewConfig()
	kc.Clusters["k8stest"] = &clientcmdapi.Cluster{Server: cfg.Host, InsecureSkipTLSVerify: cfg.Insecure, CertificateAuthorityData: cfg.CAData}
	kc.AuthInfos["k8stest"] = &clientcmdapi.AuthInfo{Token: cfg.BearerToken}
	kc.Contexts["k8stest"] = &clientcmdapi.Context{Cluster: "k8stest", AuthInfo: "k8stest"}
	kc.CurrentContext = "k8stest"
	if err := clientcmd.WriteToFile(*kc, path); err != nil {
		return err
	}
	return os.Chmod(path, 0o600)
}
