package attachment

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// Metrics are the Prometheus series of the attachment manager and the reconciler. A nil *Metrics
// records nothing, so every method is safe on nil.
type Metrics struct {
	decisions     *prometheus.CounterVec
	refusals      *prometheus.CounterVec
	releases      *prometheus.CounterVec
	migrations    prometheus.Counter
	triggers      *prometheus.CounterVec
	passes        *prometheus.CounterVec
	passDuration  prometheus.Histogram
	attachments   prometheus.Gauge
	notReady      prometheus.Gauge
	overdue       prometheus.Gauge
	conflicts     prometheus.Gauge
	drift         *prometheus.GaugeVec
	lastPassUnixS prometheus.Gauge
}

// NewMetrics creates the series and registers them on reg; a nil reg gives nil (no metrics).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	if reg == nil {
		return nil
	}
	// promauto registers each series as it is made, so that none can be left out of the registration.
	f := promauto.With(reg)
	return &Metrics{
		decisions:     f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_attachment_decisions_total", Help: "Attach decisions, by result (granted, idempotent, refused)."}, []string{"result"}),
		refusals:      f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_attachment_refusals_total", Help: "Refused attaches, by reason."}, []string{"reason"}),
		releases:      f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_attachment_releases_total", Help: "Attachments released because their node is gone, by reason (node_deleted, out_of_service)."}, []string{"reason"}),
		migrations:    f.NewCounter(prometheus.CounterOpts{Name: "rds_csi_attachment_migration_timeouts_total", Help: "Dual attachments of multi-node block volumes found older than their migration timeout."}),
		triggers:      f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_attachment_reconcile_triggers_total", Help: "Reconcile triggers, by reason (coalesced triggers count too)."}, []string{"reason"}),
		passes:        f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_attachment_reconcile_passes_total", Help: "Reconcile passes, by result (ok, drift_unknown, error)."}, []string{"result"}),
		passDuration:  f.NewHistogram(prometheus.HistogramOpts{Name: "rds_csi_attachment_reconcile_duration_seconds", Help: "Duration of reconcile passes.", Buckets: prometheus.ExponentialBuckets(0.0005, 2, 16)}),
		attachments:   f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_attachments", Help: "Volume attachments held, as of the last reconcile pass."}),
		notReady:      f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_attachment_not_ready_holders", Help: "Attachments held by NotReady nodes (kept: the node may still write; taint it out-of-service to release)."}),
		overdue:       f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_attachment_migration_overdue", Help: "Volumes attached to two nodes for longer than their migration timeout."}),
		conflicts:     f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_attachment_conflicts", Help: "Single-node volumes that Kubernetes reports attached to more than one node."}),
		drift:         f.NewGaugeVec(prometheus.GaugeOpts{Name: "rds_csi_attachment_drift", Help: "Differences between VolumeAttachments and the RDS, by kind (missing_disk, orphan_export)."}, []string{"kind"}),
		lastPassUnixS: f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_attachment_last_reconcile_timestamp_seconds", Help: "Unix time the last reconcile pass finished."}),
	}
}

func (m *Metrics) decision(result string) {
	if m != nil {
		m.decisions.WithLabelValues(result).Inc()
	}
}

func (m *Metrics) refused(reason string) {
	if m != nil {
		m.decisions.WithLabelValues("refused").Inc()
		m.refusals.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) released(reason string) {
	if m != nil {
		m.releases.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) migrationTimedOut() {
	if m != nil {
		m.migrations.Inc()
	}
}

func (m *Metrics) triggered(reason string) {
	if m != nil {
		m.triggers.WithLabelValues(reason).Inc()
	}
}

func (m *Metrics) pass(r *PassResult, d time.Duration, end time.Time) {
	if m == nil {
		return
	}
	result := "ok"
	switch {
	case r.Err != nil:
		result = "error"
	case r.DriftErr != nil:
		result = "drift_unknown"
	}
	m.passes.WithLabelValues(result).Inc()
	m.passDuration.Observe(d.Seconds())
	m.lastPassUnixS.Set(float64(end.Unix()))
	m.attachments.Set(float64(r.Attachments))
	m.notReady.Set(float64(r.NotReadyHolders))
	m.overdue.Set(float64(r.OverdueVolumes))
	m.conflicts.Set(float64(r.ConflictVolumes))
	if r.DriftErr == nil {
		m.drift.WithLabelValues("missing_disk").Set(float64(r.MissingDiskVolumes))
		m.drift.WithLabelValues("orphan_export").Set(float64(r.OrphanExportDisks))
	}
}
