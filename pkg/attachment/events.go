package attachment

import (
	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/kubernetes/scheme"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/record"
)

// Event reasons posted on PVCs (or on the PV, for a PV without claim).
const (
	EventReleased         = "AttachmentReleased" // holder node deleted or out of service
	EventHolderNotReady   = "AttachedToNotReadyNode"
	EventMigrationTimeout = "MigrationTimeout"
	EventConflict         = "AttachmentConflict"  // single-node volume attached to several nodes
	EventMissingDisk      = "AttachedDiskMissing" // attached volume without disk on the RDS
	EventAttachRefused    = "AttachRefused"       // publish refused while the holder is NotReady
)

// newRecorder returns a recorder that writes events to the API server; the broadcaster must be
// shut down. Writing is asynchronous: nothing waits for an event to be stored.
func newRecorder(client kubernetes.Interface, driver string) (record.EventBroadcaster, record.EventRecorder) {
	b := record.NewBroadcaster()
	b.StartRecordingToSink(&typedcorev1.EventSinkImpl{Interface: client.CoreV1().Events("")})
	return b, b.NewRecorder(scheme.Scheme, corev1.EventSource{Component: driver + "/attachment"})
}

// eventTarget is the PVC bound to the volume's PV, else the PV, else the VolumeAttachment.
func (m *Manager) eventTarget(pv *corev1.PersistentVolume, va *storagev1.VolumeAttachment) runtime.Object {
	if pv != nil && pv.Spec.ClaimRef != nil && pv.Spec.ClaimRef.Name != "" {
		r := pv.Spec.ClaimRef
		return &corev1.ObjectReference{Kind: "PersistentVolumeClaim", APIVersion: "v1",
			Namespace: r.Namespace, Name: r.Name, UID: r.UID}
	}
	if pv != nil {
		return &corev1.ObjectReference{Kind: "PersistentVolume", APIVersion: "v1", Name: pv.Name, UID: pv.UID}
	}
	if va != nil {
		return &corev1.ObjectReference{Kind: "VolumeAttachment", APIVersion: "storage.k8s.io/v1", Name: va.Name, UID: va.UID}
	}
	return nil
}

func (m *Manager) event(target runtime.Object, eventType, reason, format string, args ...any) {
	if target == nil || m.recorder == nil {
		return
	}
	m.recorder.Eventf(target, eventType, reason, format, args...)
}
