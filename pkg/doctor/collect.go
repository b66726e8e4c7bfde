package doctor

import (
	"context"
	"errors"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"

	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// RDS is what doctor reads from the RDS; *rds.Storage has it.
type RDS interface {
	ListDisks(ctx context.Context, prefix string) ([]rds.Disk, error)
	ListFiles(ctx context.Context, substr string) ([]rds.File, error)
	Clock(ctx context.Context) (time.Time, error)
}

// Remover removes orphans; *rds.Storage has it.
type Remover interface {
	DeleteDisk(ctx context.Context, slot, filePath string) error
	RemoveFile(ctx context.Context, path string) error
}

// Sources are where doctor looks.
type Sources struct {
	RDS     RDS
	Kube    kubernetes.Interface
	Dynamic dynamic.Interface // for VolumeSnapshotContents; required
}

// VolumeSnapshotContentsGVR is the resource of VolumeSnapshotContents.
var VolumeSnapshotContentsGVR = schema.GroupVersionResource{Group: "snapshot.storage.k8s.io", Version: "v1", Resource: "volumesnapshotcontents"}

// prefixes are the slot prefixes of the driver's disks.
var prefixes = []string{volid.VolumePrefix, volid.SnapshotPrefix}

// Inventory is one listing of each kind.
type Inventory struct {
	Disks  []rds.Disk
	Files  []rds.File
	RDSNow time.Time // the RDS's wall clock, read as UTC like rds.File.Modified
	Now    time.Time // this machine's clock when the RDS clock was read

	PVs      []corev1.PersistentVolume
	PVCs     []corev1.PersistentVolumeClaim
	VAs      []storagev1.VolumeAttachment
	Nodes    []corev1.Node
	Contents []unstructured.Unstructured
	// SnapshotsInstalled is false when the API server does not serve VolumeSnapshotContents (no
	// snapshot CRDs): then no snapshot can name a disk.
	SnapshotsInstalled bool
}

// Collect lists everything once. Any failure is a *LookError naming the listing.
func Collect(ctx context.Context, src Sources, now func() time.Time) (*Inventory, error) {
	if now == nil {
		now = time.Now
	}
	inv := &Inventory{}
	seen := map[string]bool{}
	for _, p := range prefixes {
		d, err := src.RDS.ListDisks(ctx, p)
		if err != nil {
			return nil, &LookError{"RDS disks (" + p + "*)", err}
		}
		inv.Disks = append(inv.Disks, d...)
		f, err := src.RDS.ListFiles(ctx, p)
		if err != nil {
			return nil, &LookError{"RDS files (*" + p + "*)", err}
		}
		for _, x := range f {
			if !seen[x.Path] { // a snapshot's file name holds its source volume's: both listings have it
				seen[x.Path] = true
				inv.Files = append(inv.Files, x)
			}
		}
	}
	t, err := src.RDS.Clock(ctx)
	if err != nil {
		return nil, &LookError{"RDS clock", err}
	}
	inv.RDSNow, inv.Now = t, now()

	pvs, err := src.Kube.CoreV1().PersistentVolumes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &LookError{"PersistentVolumes", err}
	}
	inv.PVs = pvs.Items
	pvcs, err := src.Kube.CoreV1().PersistentVolumeClaims("").List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &LookError{"PersistentVolumeClaims", err}
	}
	inv.PVCs = pvcs.Items
	vas, err := src.Kube.StorageV1().VolumeAttachments().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &LookError{"VolumeAttachments", err}
	}
	inv.VAs = vas.Items
	nodes, err := src.Kube.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
	if err != nil {
		return nil, &LookError{"Nodes", err}
	}
	inv.Nodes = nodes.Items
	if src.Dynamic == nil {
		// Without them every snapshot disk would look like an orphan.
		return nil, &LookError{"VolumeSnapshotContents", errors.New("no dynamic client")}
	}
	vscs, err := src.Dynamic.Resource(VolumeSnapshotContentsGVR).List(ctx, metav1.ListOptions{})
	switch {
	case err == nil:
		inv.Contents, inv.SnapshotsInstalled = vscs.Items, true
	case apierrors.IsNotFound(err):
		// The API server does not serve the resource: no snapshot CRDs, so no contents.
	default:
		return nil, &LookError{"VolumeSnapshotContents", err}
	}
	return inv, nil
}
