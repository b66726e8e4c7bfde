package attachment

import (
	"context"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"

	"github.com/srvlab/rds-csi/pkg/rds"
)

// pvAndVA returns the PV of volume vol (bound to a claim) and its attached VolumeAttachment on
// node, created at created.
func pvAndVA(driver, vol, node string, created time.Time) (*corev1.PersistentVolume, *storagev1.VolumeAttachment) {
	pv := &corev1.PersistentVolume{
		ObjectMeta: metav1.ObjectMeta{Name: vol, UID: types.UID("uid-" + vol)},
		Spec: corev1.PersistentVolumeSpec{
			AccessModes: []corev1.PersistentVolumeAccessMode{corev1.ReadWriteOnce},
			PersistentVolumeSource: corev1.PersistentVolumeSource{CSI: &corev1.CSIPersistentVolumeSource{
				Driver: driver, VolumeHandle: vol}},
			ClaimRef: &corev1.ObjectReference{Kind: "PersistentVolumeClaim", Namespace: "bench", Name: "claim-" + vol, UID: types.UID("uid-claim-" + vol)},
		},
	}
	va := &storagev1.VolumeAttachment{
		ObjectMeta: metav1.ObjectMeta{Name: "csi-" + vol + "-" + node, UID: types.UID("uid-va-" + vol + "-" + node),
			CreationTimestamp: metav1.NewTime(created)},
		Spec: storagev1.VolumeAttachmentSpec{Attacher: driver, NodeName: node,
			Source: storagev1.VolumeAttachmentSource{PersistentVolumeName: &pv.Name}},
		Status: storagev1.VolumeAttachmentStatus{Attached: true},
	}
	return pv, va
}

// staticDisks is a DiskLister over a fixed list.
type staticDisks struct{ list []rds.Disk }

func (s *staticDisks) ListDisks(context.Context, string) ([]rds.Disk, error) { return s.list, nil }

// loadCache puts objects into the informer caches, as an informer's list would, and marks the
// manager synced: unit tests run without informers, to control exactly what the caches hold.
func (m *Manager) loadCache(objs ...runtime.Object) error {
	for _, o := range objs {
		if err := m.storeFor(o).Add(o); err != nil {
			return err
		}
	}
	if m.synced.CompareAndSwap(false, true) {
		close(m.readyCh)
	}
	return nil
}

// storeFor returns the cache an object belongs in.
func (m *Manager) storeFor(o runtime.Object) cache.Indexer {
	switch o.(type) {
	case *corev1.Node:
		return m.nodes.GetIndexer()
	case *corev1.PersistentVolume:
		return m.pvs.GetIndexer()
	default:
		return m.vas.GetIndexer()
	}
}
