package attachment

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	storagev1 "k8s.io/api/storage/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/record"
	"k8s.io/klog/v2"

	"github.com/srvlab/rds-csi/pkg/rds"
)

// Config configures a Manager.
type Config struct {
	// DriverName is the CSI driver name: only VolumeAttachments with this spec.attacher and PVs
	// of this driver are considered.
	DriverName string
	Client     kubernetes.Interface
	// Recorder posts events (on PVCs). nil means a recorder writing to Client.
	Recorder record.EventRecorder
	// Metrics receives the series; nil creates them on Registerer (nil: no metrics).
	Metrics    *Metrics
	Registerer prometheus.Registerer
	// Backend is asked for the disks in a pass, to report drift (an rds.Backend does); nil
	// skips drift detection.
	Backend DiskLister
	// Subscribe registers a listener for RDS connection changes (rds.Client.Subscribe); a
	// reconnect triggers a pass. nil: no subscription.
	Subscribe func(rds.Listener) (unsubscribe func())
	// ReconcileInterval is the period of untriggered passes (0: 5 min, negative: none).
	ReconcileInterval time.Duration
	// GrantTTL bounds how long a grant not (yet) backed by a VolumeAttachment is kept (default
	// 2 min): the external-attacher creates the VolumeAttachment before publishing, so a grant
	// with none after that long came from elsewhere.
	GrantTTL time.Duration
	// OrphanGrace is how long an exported disk without a PersistentVolume is tolerated before it
	// is reported (default 2 min; CreateVolume makes the disk before the PV exists).
	OrphanGrace time.Duration
	// Now is the clock (default time.Now).
	Now func() time.Time
}

// Manager decides attachments from the cluster's state. Its view is derived from the
// VolumeAttachments of this driver, the PersistentVolumes and the Nodes, read from informer
// caches (a publish costs no API call), plus memory that is only a cache:
//
//   - grants: attaches granted by this process that no VolumeAttachment status reflects yet (the
//     external-attacher sets status.attached only after ControllerPublish returns). They make two
//     concurrent publishes of a volume see each other. After a restart they are gone, and the
//     external-attacher retries the publishes whose status it had not written, which then meet
//     the VolumeAttachments written meanwhile.
//   - releases: ControllerUnpublish calls, so that the VolumeAttachment of a detached node stops
//     counting before the external-attacher deletes it. After a restart they are gone, and the
//     VolumeAttachment counts again until it is deleted: stricter, never looser.
//   - what passes reported (so that events are posted once), migration deadlines and nodes
//     confirmed deleted: the first pass after a restart finds them again.
//
// A holder whose Node is deleted or tainted out-of-service does not count: its volumes can be
// attached elsewhere. A NotReady holder counts (it may still be writing) and is reported.
type Manager struct {
	cfg     Config
	metrics *Metrics
	rec     *Reconciler

	factory informers.SharedInformerFactory
	vas     cache.SharedIndexInformer
	pvs     cache.SharedIndexInformer
	nodes   cache.SharedIndexInformer

	recorder    record.EventRecorder
	broadcaster record.EventBroadcaster

	passMu   sync.Mutex // one pass at a time
	synced   atomic.Bool
	readyCh  chan struct{} // closed when synced
	volLocks keyedMutex

	mu            sync.Mutex
	grants        map[string]map[string]grant     // volume → node → grant
	grantSeq      uint64                          // seq of the latest grant or renewal
	released      map[string]map[string]time.Time // volume → node ("" = every node) → when
	reported      map[string]bool                 // findings already reported (events, logs)
	orphans       map[string]time.Time            // exported disk without PV → first seen
	confirmedGone map[string]bool                 // nodes missing from the cache that a GET confirmed deleted
	uncertain     map[string]map[string]time.Time // volume → node → sync time: see noteUncertain
	refusalEvents map[string]time.Time            // refusal event key → when it was last posted
	timers        map[string]*time.Timer          // volume → migration deadline check

	startOnce sync.Once
	stopOnce  sync.Once
	cancel    context.CancelFunc
	unsub     func()
	wg        sync.WaitGroup
}

type grant struct {
	readOnly  bool
	multiNode bool
	timeout   time.Duration
	at        time.Time
	// sawVA is set once the grant's VolumeAttachment was in the cache: when it is gone after
	// that, the attachment is over (deleted by the external-attacher or by hand), whereas a
	// grant whose VolumeAttachment the cache has not shown yet still counts (cache lag).
	sawVA bool
	// seq tells this grant from a later one of the same node: it is new at each grant and at
	// each republish that relies on the grant. A pass deletes a grant only if seq is still the
	// one it decided on.
	seq uint64
}

// DiskLister lists the disks on the RDS; rds.Backend is one.
type DiskLister interface {
	ListDisks(ctx context.Context, prefix string) ([]rds.Disk, error)
}

// NewManager builds a manager; Start makes it work.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.DriverName == "" || cfg.Client == nil {
		return nil, errors.New("attachment manager: driver name and Kubernetes client are required")
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.GrantTTL <= 0 {
		cfg.GrantTTL = 2 * time.Minute
	}
	if cfg.OrphanGrace <= 0 {
		cfg.OrphanGrace = 2 * time.Minute
	}
	m := &Manager{
		cfg: cfg, metrics: cfg.Metrics, readyCh: make(chan struct{}),
		grants: map[string]map[string]grant{}, released: map[string]map[string]time.Time{},
		reported: map[string]bool{}, orphans: map[string]time.Time{}, confirmedGone: map[string]bool{}, timers: map[string]*time.Timer{},
		uncertain: map[string]map[string]time.Time{}, refusalEvents: map[string]time.Time{},
	}
	if m.metrics == nil {
		m.metrics = NewMetrics(cfg.Registerer)
	}
	m.recorder = cfg.Recorder
	if m.recorder == nil {
		m.broadcaster, m.recorder = newRecorder(cfg.Client, cfg.DriverName)
	}
	m.factory = informers.NewSharedInformerFactory(cfg.Client, 0)
	m.vas = m.factory.Storage().V1().VolumeAttachments().Informer()
	m.pvs = m.factory.Core().V1().PersistentVolumes().Informer()
	m.nodes = m.factory.Core().V1().Nodes().Informer()
	if err := m.addIndexers(); err != nil {
		return nil, err
	}
	if _, err := m.nodes.AddEventHandler(NewNodeWatcher(m.Trigger)); err != nil {
		return nil, err
	}
	m.rec = NewReconciler(m.pass, cfg.ReconcileInterval, m.metrics)
	return m, nil
}

// Start starts the informers and, once their caches have synced, marks the manager ready and
// starts the reconciler with a first pass. It returns at once; Ready tells when the view is
// complete. A second call does nothing.
func (m *Manager) Start(ctx context.Context) {
	m.startOnce.Do(func() {
		ctx, m.cancel = context.WithCancel(ctx)
		if m.cfg.Subscribe != nil {
			m.unsub = m.cfg.Subscribe(func(s rds.State) {
				if s == rds.Connected {
					m.Trigger(ReasonRDSReconnect)
				}
			})
		}
		m.factory.Start(ctx.Done())
		m.wg.Add(1)
		go func() {
			defer m.wg.Done()
			start := time.Now()
			if !cache.WaitForCacheSync(ctx.Done(), m.vas.HasSynced, m.pvs.HasSynced, m.nodes.HasSynced) {
				return
			}
			m.noteUncertain()
			m.synced.Store(true)
			close(m.readyCh)
			klog.InfoS("Attachment view synced from the Kubernetes API", "driver", m.cfg.DriverName,
				"volumeAttachments", len(m.vas.GetStore().ListKeys()), "nodes", len(m.nodes.GetStore().ListKeys()), "duration", time.Since(start))
			m.rec.Trigger(ReasonControllerStart)
			m.rec.Start(ctx)
		}()
	})
}

// Stop stops the reconciler, the informers and the event broadcaster, and waits for them.
func (m *Manager) Stop() {
	m.stopOnce.Do(func() {
		m.rec.Stop()
		if m.unsub != nil {
			m.unsub()
		}
		if m.cancel != nil {
			m.cancel()
		}
		m.wg.Wait()
		m.factory.Shutdown()
		m.mu.Lock()
		for _, t := range m.timers {
			t.Stop()
		}
		m.mu.Unlock()
		if m.broadcaster != nil {
			m.broadcaster.Shutdown()
		}
	})
}

// Ready is false until the informer caches have synced: no publish is served before.
func (m *Manager) Ready() bool { return m.synced.Load() }

// WaitReady waits until Ready or ctx ends.
func (m *Manager) WaitReady(ctx context.Context) error {
	select {
	case <-m.readyCh:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Trigger asks for a reconcile pass; it never blocks.
func (m *Manager) Trigger(reason string) { m.rec.Trigger(reason) }

// Reconciler returns the reconciler that runs the manager's passes (to wait for passes).
func (m *Manager) Reconciler() *Reconciler { return m.rec }

// noteUncertain records, once the caches have synced and before any publish is served, the
// VolumeAttachments that are neither attached nor failed. A previous process may have granted
// them just before it stopped, with the external-attacher yet to write status.attached; until
// their own publish comes back (or the grant TTL passes, or they fail or go), they count as
// holders, so that no other node is granted the volume in that window. Deadlock is impossible:
// a VolumeAttachment leaves the set as soon as its publish call arrives, whatever the outcome.
func (m *Manager) noteUncertain() {
	now := m.cfg.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range m.vas.GetStore().List() {
		va, ok := o.(*storagev1.VolumeAttachment)
		if !ok || va.Spec.Attacher != m.cfg.DriverName || va.Status.Attached || va.Status.AttachError != nil || va.DeletionTimestamp != nil {
			continue
		}
		vol, _ := m.handleOf(va)
		if vol == "" {
			continue
		}
		if m.uncertain[vol] == nil {
			m.uncertain[vol] = map[string]time.Time{}
		}
		m.uncertain[vol][va.Spec.NodeName] = now
	}
	if n := len(m.uncertain); n > 0 {
		klog.InfoS("Volumes with VolumeAttachments pending since before this start: their nodes count as holders until their publish is retried", "volumes", n, "for", m.cfg.GrantTTL)
	}
}

// forgetUncertainLocked drops the uncertainty of vol on node ("" = every node).
func (m *Manager) forgetUncertainLocked(vol, node string) {
	if node == "" {
		delete(m.uncertain, vol)
		return
	}
	if u := m.uncertain[vol]; u != nil {
		delete(u, node)
		if len(u) == 0 {
			delete(m.uncertain, vol)
		}
	}
}

// keyedMutex serializes decisions per volume.
type keyedMutex struct {
	mu sync.Mutex
	m  map[string]*keyedEntry
}

type keyedEntry struct {
	mu sync.Mutex
	n  int
}

func (k *keyedMutex) lock(key string) (unlock func()) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*keyedEntry{}
	}
	e := k.m[key]
	if e == nil {
		e = &keyedEntry{}
		k.m[key] = e
	}
	e.n++
	k.mu.Unlock()
	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		k.mu.Lock()
		if e.n--; e.n == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
}
