package doctor

import (
	"cmp"
	"fmt"
	"path"
	"slices"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"

	"github.com/srvlab/rds-csi/pkg/attachment"
	"github.com/srvlab/rds-csi/pkg/driver"
	"github.com/srvlab/rds-csi/pkg/rds"
	"github.com/srvlab/rds-csi/pkg/volid"
)

// view is an Inventory indexed for the rules.
type view struct {
	cfg Config
	inv *Inventory

	pvs      []*corev1.PersistentVolume // this driver's, by name
	pvByName map[string]*corev1.PersistentVolume
	disks    map[string]rds.Disk // by slot
	diskAt   map[string]rds.Disk // by file path
	files    map[string]rds.File // by path
	fileOf   map[string][]string // slot → paths of files named <slot>.img
	refs     map[string][]string // slot → what names it
	// inFlight are slot prefixes of snapshots being taken (their disk is not named yet).
	inFlight map[string]string
	nodes    map[string]*corev1.Node

	vaCount, contentCount int // of this driver
}

// Analyze applies the rules to one inventory.
func Analyze(inv *Inventory, cfg Config) *Report {
	cfg.defaults()
	v := index(inv, cfg)
	r := &Report{Time: inv.Now.UTC(), Driver: cfg.DriverName, MinAge: cfg.MinAge.String(), Counts: Counts{
		Disks: len(inv.Disks), Files: len(inv.Files), PersistentVolumes: len(v.pvs), Claims: len(inv.PVCs),
		VolumeAttachments: v.vaCount, Nodes: len(inv.Nodes), VolumeSnapshotContents: v.contentCount,
		SnapshotsInstalled: inv.SnapshotsInstalled,
	}, Findings: []Finding{}}
	add := func(f Finding) { r.Findings = append(r.Findings, f) }
	v.volumes(add)
	v.orphans(add)
	v.snapshots(add)
	v.holders(add)
	slices.SortStableFunc(r.Findings, func(a, b Finding) int {
		if a.NeedsAction != b.NeedsAction {
			if a.NeedsAction {
				return -1
			}
			return 1
		}
		return cmp.Or(cmp.Compare(a.Kind, b.Kind), cmp.Compare(a.Object, b.Object), cmp.Compare(a.Node, b.Node))
	})
	return r
}

func index(inv *Inventory, cfg Config) *view {
	v := &view{cfg: cfg, inv: inv, pvByName: map[string]*corev1.PersistentVolume{}, disks: map[string]rds.Disk{},
		diskAt: map[string]rds.Disk{}, files: map[string]rds.File{}, fileOf: map[string][]string{},
		refs: map[string][]string{}, inFlight: map[string]string{}, nodes: map[string]*corev1.Node{}}
	ref := func(slot, by string) {
		if slot != "" && !slices.Contains(v.refs[slot], by) {
			v.refs[slot] = append(v.refs[slot], by)
		}
	}
	for i := range inv.PVs {
		pv := &inv.PVs[i]
		v.pvByName[pv.Name] = pv
		if pv.Spec.CSI == nil {
			continue
		}
		// Any driver's PV keeps a disk it names (another install of the driver under another
		// name may share the RDS); only this driver's are checked.
		ref(pv.Spec.CSI.VolumeHandle, "PersistentVolume "+pv.Name)
		if pv.Spec.CSI.Driver == cfg.DriverName {
			v.pvs = append(v.pvs, pv)
		}
	}
	slices.SortFunc(v.pvs, func(a, b *corev1.PersistentVolume) int { return cmp.Compare(a.Name, b.Name) })
	for i := range inv.VAs {
		va := &inv.VAs[i]
		if va.Spec.Attacher == cfg.DriverName {
			v.vaCount++
		}
		by := "VolumeAttachment " + va.Name
		if name := va.Spec.Source.PersistentVolumeName; name != nil {
			ref(*name, by) // the provisioner names PVs after their volume: conservative
			if pv := v.pvByName[*name]; pv != nil && pv.Spec.CSI != nil {
				ref(pv.Spec.CSI.VolumeHandle, by)
			}
		} else if in := va.Spec.Source.InlineVolumeSpec; in != nil && in.CSI != nil {
			ref(in.CSI.VolumeHandle, by)
		}
	}
	for i := range inv.PVCs {
		pvc := &inv.PVCs[i]
		// The external-provisioner names the volume of a claim <prefix>-<claim UID>.
		if slot, err := volid.VolumeIDForName(cfg.VolumeNamePrefix + "-" + string(pvc.UID)); err == nil {
			what := "PersistentVolumeClaim " + pvc.Namespace + "/" + pvc.Name
			if pvc.Status.Phase == corev1.ClaimPending {
				what += " (being provisioned)"
			}
			ref(slot, what)
		}
	}
	for _, c := range inv.Contents {
		if driverOf(c) == cfg.DriverName {
			v.contentCount++
		}
		by := "VolumeSnapshotContent " + c.GetName()
		handle := snapshotHandle(c)
		ref(handle, by)
		src, _, _ := unstructured.NestedString(c.Object, "spec", "source", "volumeHandle")
		ref(src, by+" (its source)")
		if handle == "" {
			// Being taken: the snapshotter names it <prefix>-<VolumeSnapshot UID>, and its disk
			// gets an ID that starts with what that name derives.
			uid, _, _ := unstructured.NestedString(c.Object, "spec", "volumeSnapshotRef", "uid")
			if p, err := volid.SnapshotIDPrefix(cfg.SnapshotNamePrefix + "-" + uid); err == nil && uid != "" {
				v.inFlight[p] = by + " (snapshot being taken)"
			}
		}
	}
	for _, d := range inv.Disks {
		v.disks[d.Slot] = d
		v.diskAt[d.FilePath] = d
	}
	for _, f := range inv.Files {
		v.files[f.Path] = f
		if slot, ok := strings.CutSuffix(path.Base(f.Path), ".img"); ok && ours(slot) {
			v.fileOf[slot] = append(v.fileOf[slot], f.Path)
		}
	}
	for i := range inv.Nodes {
		v.nodes[inv.Nodes[i].Name] = &inv.Nodes[i]
	}
	return v
}

// ours reports whether a slot is one of the driver's (and so in the listings).
func ours(slot string) bool {
	if volid.ValidateSlot(slot) != nil {
		return false
	}
	for _, p := range prefixes {
		if strings.HasPrefix(slot, p) {
			return true
		}
	}
	return false
}

// listed reports whether a file would be in the file listings: only then is its absence news.
func listed(p string) bool {
	for _, pre := range prefixes {
		if strings.Contains(p, pre) {
			return true
		}
	}
	return false
}

func driverOf(c unstructured.Unstructured) string {
	d, _, _ := unstructured.NestedString(c.Object, "spec", "driver")
	return d
}

// snapshotHandle is the disk a VolumeSnapshotContent names: its status once taken, or its
// spec for a pre-provisioned one.
func snapshotHandle(c unstructured.Unstructured) string {
	if h, _, _ := unstructured.NestedString(c.Object, "status", "snapshotHandle"); h != "" {
		return h
	}
	h, _, _ := unstructured.NestedString(c.Object, "spec", "source", "snapshotHandle")
	return h
}

// refsOf is what names a slot, including snapshots being taken.
func (v *view) refsOf(slot string) []string {
	r := slices.Clone(v.refs[slot])
	for p, by := range v.inFlight {
		if strings.HasPrefix(slot, p) {
			r = append(r, by)
		}
	}
	slices.Sort(r)
	return r
}

// fileAge is how old a file is by the RDS's clock, if it was listed.
func (v *view) fileAge(p string) (time.Duration, bool) {
	f, ok := v.files[p]
	if !ok {
		return 0, false
	}
	return max(v.inv.RDSNow.Sub(f.Modified), 0), true
}

// diskAge is a disk's age: its file's, and no more than its snapshot ID says.
func (v *view) diskAge(d rds.Disk) (time.Duration, bool) {
	age, ok := v.fileAge(d.FilePath)
	if s, isSnap := volid.ParseSnapshotID(d.Slot); isSnap {
		idAge := max(v.inv.Now.Sub(s.Created), 0)
		if !ok || idAge < age {
			age = idAge
		}
		ok = true
	}
	return age, ok
}

func fmtAge(d time.Duration) string {
	if d >= time.Hour {
		return d.Round(time.Minute).String()
	}
	return d.Round(time.Second).String()
}

// claimOf names the claim of a PV for kubectl, or the PV itself.
func claimOf(pv *corev1.PersistentVolume) string {
	if c := pv.Spec.ClaimRef; c != nil {
		return fmt.Sprintf("kubectl delete pvc -n %s %s", c.Namespace, c.Name)
	}
	return "kubectl delete pv " + pv.Name
}

// volumes checks each PersistentVolume of the driver against the RDS.
func (v *view) volumes(add func(Finding)) {
	for _, pv := range v.pvs {
		slot := pv.Spec.CSI.VolumeHandle
		if !ours(slot) || pv.DeletionTimestamp != nil {
			continue // not in the listings, or going: nothing to say about it (it still names its disk)
		}
		obj := "pv " + pv.Name
		d, ok := v.disks[slot]
		if !ok {
			if fs := v.fileOf[slot]; len(fs) > 0 {
				port := cmp.Or(pv.Spec.CSI.VolumeAttributes[driver.ContextNVMePort], strconv.Itoa(volid.DefaultPort))
				add(Finding{Kind: PVDiskMissing, Object: obj, Volume: slot, NeedsAction: true,
					Detail: fmt.Sprintf("the RDS has no disk %s, but its file %s is still there (the data may be intact)", slot, strings.Join(fs, ", ")),
					Action: fmt.Sprintf("re-create the disk entry on the RDS: /disk add type=file file-path=%s slot=%s nvme-tcp-export=yes nvme-tcp-server-port=%s nvme-tcp-server-nqn=%s",
						fs[0], slot, port, volid.NQN(slot))})
			} else {
				add(Finding{Kind: PVDiskMissing, Object: obj, Volume: slot, NeedsAction: true,
					Detail: fmt.Sprintf("the RDS has neither disk %s nor a file %s.img: the volume's data is gone", slot, slot),
					Action: "restore the data from a backup or a snapshot into a new claim, then delete this one: " + claimOf(pv)})
			}
			continue
		}
		if _, ok := v.files[d.FilePath]; !ok && listed(d.FilePath) {
			add(Finding{Kind: PVFileMissing, Object: obj, Volume: slot, NeedsAction: true,
				Detail: fmt.Sprintf("disk %s is there but its file %s is gone: the volume's data is gone", slot, d.FilePath),
				Action: fmt.Sprintf("restore the data from a backup or a snapshot into a new claim, then delete this one: %s; then remove the entry on the RDS: /disk remove [find slot=\"%s\"]", claimOf(pv), slot)})
		}
		if !d.Exported && strings.HasPrefix(slot, volid.VolumePrefix) {
			port := cmp.Or(pv.Spec.CSI.VolumeAttributes[driver.ContextNVMePort], strconv.Itoa(volid.DefaultPort))
			add(Finding{Kind: NotExported, Object: obj, Volume: slot, NeedsAction: true,
				Detail: fmt.Sprintf("disk %s is not exported over NVMe/TCP: no node can attach it", slot),
				Action: fmt.Sprintf("export it on the RDS: /disk set [find slot=\"%s\"] nvme-tcp-export=yes nvme-tcp-server-port=%s nvme-tcp-server-nqn=%s", slot, port, volid.NQN(slot))})
		}
		q, ok := pv.Spec.Capacity[corev1.ResourceStorage]
		switch want := q.Value(); {
		case !ok || want == d.Size:
		case d.Size < want:
			add(Finding{Kind: SizeMismatch, Object: obj, Volume: slot, NeedsAction: true,
				Detail: fmt.Sprintf("disk %s has %d bytes, the PV says %d (%s): writes past the end of the disk fail", slot, d.Size, want, q.String()),
				Action: fmt.Sprintf("grow the disk on the RDS to the PV's size (never shrink it): /disk set [find slot=\"%s\"] file-size=%d", slot, want)})
		default:
			add(Finding{Kind: SizeMismatch, Object: obj, Volume: slot,
				Detail: fmt.Sprintf("disk %s has %d bytes, more than the PV's %d (%s): an expansion reached the RDS but not the PV", slot, d.Size, want, q.String()),
				Action: "none needed (the extra space is unused); the external-resizer records the new size while the claim asks for it"})
		}
	}
}

// orphans reports disks and files that nothing in Kubernetes names.
func (v *view) orphans(add func(Finding)) {
	slots := make([]string, 0, len(v.disks))
	for s := range v.disks {
		slots = append(slots, s)
	}
	slices.Sort(slots)
	for _, slot := range slots {
		d := v.disks[slot]
		if len(v.refsOf(slot)) > 0 {
			continue
		}
		age, known := v.diskAge(d)
		obj := "disk " + slot
		if _, ok := v.files[d.FilePath]; !ok && listed(d.FilePath) {
			add(Finding{Kind: DiskFileMissing, Object: obj, Volume: slot, NeedsAction: true,
				Detail: fmt.Sprintf("nothing in Kubernetes names disk %s, and its file %s is gone", slot, d.FilePath),
				Action: fmt.Sprintf("remove the dangling entry on the RDS: /disk remove [find slot=\"%s\"]", slot)})
			continue
		}
		f := Finding{Kind: OrphanDisk, Object: obj, Volume: slot,
			Detail: fmt.Sprintf("no PersistentVolume, claim, VolumeAttachment or VolumeSnapshotContent names disk %s (file %s, %d bytes, exported=%t)", slot, d.FilePath, d.Size, d.Exported)}
		v.ageRule(&f, age, known, Target{Disk: true, Slot: slot, Path: d.FilePath, Age: age},
			fmt.Sprintf("/disk remove [find slot=\"%s\"]; /file remove [find name=\"%s\"]", slot, strings.TrimPrefix(d.FilePath, "/")))
		add(f)
	}
	paths := make([]string, 0, len(v.files))
	for p := range v.files {
		paths = append(paths, p)
	}
	slices.Sort(paths)
	for _, p := range paths {
		slot, ok := strings.CutSuffix(path.Base(p), ".img")
		if !ok || !ours(slot) {
			continue
		}
		if _, used := v.diskAt[p]; used {
			continue
		}
		age, _ := v.fileAge(p)
		obj := "file " + p
		refs := v.refsOf(slot)
		d, hasDisk := v.disks[slot]
		switch {
		case len(refs) > 0 && hasDisk:
			add(Finding{Kind: OrphanFile, Object: obj, Volume: slot, Age: fmtAge(age), NeedsAction: true,
				Detail: fmt.Sprintf("a second file for volume %s, which uses %s and is named by %s", slot, d.FilePath, strings.Join(refs, ", ")),
				Action: fmt.Sprintf("check that %s holds nothing the volume needs, then remove it on the RDS: /file remove [find name=\"%s\"]", p, strings.TrimPrefix(p, "/"))})
		case len(refs) > 0:
			if _, pv := v.pvFor(slot); pv {
				continue // reported with the PV, whose disk entry is missing
			}
			add(Finding{Kind: OrphanFile, Object: obj, Volume: slot, Age: fmtAge(age),
				Detail: fmt.Sprintf("file without a disk entry, named by %s: a copy (snapshot or clone) being made", strings.Join(refs, ", ")),
				Action: "none: the driver finishes or removes it when the snapshot or clone is retried"})
		default:
			f := Finding{Kind: OrphanFile, Object: obj, Volume: slot,
				Detail: fmt.Sprintf("no disk uses file %s and nothing in Kubernetes names %s", p, slot)}
			v.ageRule(&f, age, true, Target{Slot: slot, Path: p, Age: age},
				fmt.Sprintf("/file remove [find name=\"%s\"]", strings.TrimPrefix(p, "/")))
			add(f)
		}
	}
}

// ageRule makes an orphan removable once it is MinAge old, and says so.
func (v *view) ageRule(f *Finding, age time.Duration, known bool, t Target, byHand string) {
	switch {
	case !known:
		f.NeedsAction = true
		f.Action = "its age is unknown, so --cleanup leaves it; if nothing is being created, remove it on the RDS: " + byHand
	case age < v.cfg.MinAge:
		f.Age = fmtAge(age)
		f.Action = fmt.Sprintf("none yet: it is %s old, younger than --min-age %s, so probably a volume or snapshot being made; look again later", fmtAge(age), v.cfg.MinAge)
	default:
		f.Age = fmtAge(age)
		f.NeedsAction = true
		f.Removable = &t
		f.Action = "remove it: rds-csi doctor --cleanup --yes (orphans older than --min-age); or on the RDS: " + byHand
	}
}

func (v *view) pvFor(slot string) (*corev1.PersistentVolume, bool) {
	for _, pv := range v.pvs {
		if pv.Spec.CSI.VolumeHandle == slot {
			return pv, true
		}
	}
	return nil, false
}

// snapshots reports VolumeSnapshotContents whose disk is gone.
func (v *view) snapshots(add func(Finding)) {
	for _, c := range v.inv.Contents {
		h := snapshotHandle(c)
		if driverOf(c) != v.cfg.DriverName || !ours(h) {
			continue
		}
		if _, ok := v.disks[h]; ok {
			continue
		}
		action := "kubectl delete volumesnapshotcontent " + c.GetName()
		ns, _, _ := unstructured.NestedString(c.Object, "spec", "volumeSnapshotRef", "namespace")
		name, _, _ := unstructured.NestedString(c.Object, "spec", "volumeSnapshotRef", "name")
		if name != "" {
			action = fmt.Sprintf("kubectl delete volumesnapshot -n %s %s (and its content %s if it stays)", ns, name, c.GetName())
		}
		add(Finding{Kind: SnapshotDiskMissing, Object: "volumesnapshotcontent " + c.GetName(), Volume: h, NeedsAction: true,
			Detail: fmt.Sprintf("the RDS has no disk %s: the snapshot's data is gone", h),
			Action: "take a new snapshot if one is needed, and delete this one: " + action})
	}
}

type nodeState int

const (
	nodeReady nodeState = iota
	nodeNotReady
	nodeOutOfService
	nodeDeleted
)

func (v *view) nodeState(name string) nodeState {
	n, ok := v.nodes[name]
	if !ok {
		return nodeDeleted
	}
	for _, t := range n.Spec.Taints {
		if t.Key == attachment.OutOfServiceTaint {
			return nodeOutOfService
		}
	}
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady && c.Status == corev1.ConditionTrue {
			return nodeReady
		}
	}
	return nodeNotReady
}

// holders reports attachments on nodes that are down or gone, and volumes held by two nodes.
func (v *view) holders(add func(Finding)) {
	vas := make([]*storagev1.VolumeAttachment, 0, len(v.inv.VAs))
	for i := range v.inv.VAs {
		if va := &v.inv.VAs[i]; va.Spec.Attacher == v.cfg.DriverName {
			vas = append(vas, va)
		}
	}
	slices.SortFunc(vas, func(a, b *storagev1.VolumeAttachment) int { return cmp.Compare(a.Name, b.Name) })
	active := map[string][]*storagev1.VolumeAttachment{} // volume → attached VAs on live nodes
	var order []string
	for _, va := range vas {
		vol, _ := v.volumeOf(va)
		node := va.Spec.NodeName
		obj := "volumeattachment " + va.Name
		switch v.nodeState(node) {
		case nodeDeleted:
			add(Finding{Kind: HolderDeleted, Object: obj, Volume: vol, Node: node,
				Detail: fmt.Sprintf("volume %s is attached to node %s, which no longer exists; the driver has released it", vol, node),
				Action: fmt.Sprintf("none for the volume (another node can attach it). The VolumeAttachment goes once Kubernetes detaches it; if it stays, kubectl delete volumeattachment %s", va.Name)})
			continue
		case nodeOutOfService:
			add(Finding{Kind: HolderOutOfService, Object: obj, Volume: vol, Node: node,
				Detail: fmt.Sprintf("volume %s is attached to node %s, which is tainted %s; the driver has released it", vol, node, attachment.OutOfServiceTaint),
				Action: fmt.Sprintf("none for the volume. Once the node is back and clean, remove the taint: kubectl taint nodes %s %s-", node, attachment.OutOfServiceTaint)})
			continue
		case nodeNotReady:
			if va.Status.Attached {
				add(Finding{Kind: HolderNotReady, Object: obj, Volume: vol, Node: node, NeedsAction: true,
					Detail: fmt.Sprintf("volume %s stays attached to node %s, which is NotReady and may still be writing it; no other node can attach it", vol, node),
					Action: fmt.Sprintf("if node %s is known to be down (powered off, not just unreachable): kubectl taint nodes %s %s=nodeshutdown:NoExecute — the driver then releases the volume; otherwise bring the node back", node, node, attachment.OutOfServiceTaint)})
			}
		}
		if va.Status.Attached && vol != "" {
			if _, seen := active[vol]; !seen {
				order = append(order, vol)
			}
			active[vol] = append(active[vol], va)
		}
	}
	for _, vol := range order {
		list := active[vol]
		nodes := map[string]bool{}
		var names []string
		var since time.Time
		for _, va := range list {
			if !nodes[va.Spec.NodeName] {
				nodes[va.Spec.NodeName] = true
				names = append(names, va.Spec.NodeName)
			}
			if t := va.CreationTimestamp.Time; t.After(since) {
				since = t
			}
		}
		if len(names) < 2 {
			continue
		}
		slices.Sort(names)
		_, pv := v.volumeOf(list[0])
		multi, timeout := multiNode(pv)
		vaNames := make([]string, len(list))
		for i, va := range list {
			vaNames[i] = va.Name
		}
		nodeList := strings.Join(names, ", ")
		if !multi {
			add(Finding{Kind: Conflict, Object: "volume " + vol, Volume: vol, Node: nodeList, NeedsAction: true,
				Detail: fmt.Sprintf("single-node volume %s is attached to %s according to its VolumeAttachments", vol, nodeList),
				Action: fmt.Sprintf("find the pod that uses it on each node (kubectl get volumeattachment %s -o wide; kubectl get pods -A -o wide); delete the one that must not have it, and its VolumeAttachment goes", strings.Join(vaNames, " "))})
			continue
		}
		dual := v.inv.Now.Sub(since)
		if dual <= timeout {
			continue
		}
		add(Finding{Kind: MigrationOverdue, Object: "volume " + vol, Volume: vol, Node: nodeList, Age: fmtAge(dual), NeedsAction: true,
			Detail: fmt.Sprintf("volume %s has been attached to %s for %s, longer than its migrationTimeout %s; no other node can attach it", vol, nodeList, fmtAge(dual), timeout),
			Action: "finish or cancel the live migration (kubectl get virtualmachineinstancemigrations -A; kubectl delete vmim -n <namespace> <name>), so that the pod on one node goes and its VolumeAttachment with it"})
	}
}

// volumeOf is the volume a VolumeAttachment holds, and its PV.
func (v *view) volumeOf(va *storagev1.VolumeAttachment) (string, *corev1.PersistentVolume) {
	if name := va.Spec.Source.PersistentVolumeName; name != nil {
		if pv := v.pvByName[*name]; pv != nil && pv.Spec.CSI != nil {
			return pv.Spec.CSI.VolumeHandle, pv
		}
		return *name, nil
	}
	if in := va.Spec.Source.InlineVolumeSpec; in != nil && in.CSI != nil {
		return in.CSI.VolumeHandle, nil
	}
	return "", nil
}

// multiNode tells whether a volume may be attached to two nodes (a raw block volume with a
// multi-node access mode: live migration), and for how long.
func multiNode(pv *corev1.PersistentVolume) (bool, time.Duration) {
	if pv == nil || pv.Spec.VolumeMode == nil || *pv.Spec.VolumeMode != corev1.PersistentVolumeBlock {
		return false, 0
	}
	for _, m := range pv.Spec.AccessModes {
		if m == corev1.ReadWriteMany || m == corev1.ReadOnlyMany {
			t := attachment.DefaultMigrationTimeout
			if pv.Spec.CSI != nil {
				t = attachment.MigrationTimeoutOf(pv.Spec.CSI.VolumeAttributes)
			}
			return true, t
		}
	}
	return false, 0
}
