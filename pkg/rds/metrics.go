package rds

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the client's Prometheus series; a nil *metrics records nothing.
type metrics struct {
	connected  prometheus.Gauge
	breaker    prometheus.Gauge
	reconnects prometheus.Counter
	commands   *prometheus.CounterVec
	duration   prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) *metrics {
	if reg == nil {
		return nil
	}
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rds_csi_rds_connected", Help: "1 while the SSH connection to the RDS is up, 0 otherwise.",
		}),
		breaker: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "rds_csi_rds_breaker_open", Help: "1 while the circuit breaker fails RDS calls fast, 0 otherwise.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "rds_csi_rds_reconnects_total", Help: "Successful SSH reconnects to the RDS after a lost connection.",
		}),
		commands: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "rds_csi_rds_commands_total", Help: "RouterOS commands run, by result.",
		}, []string{"result"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "rds_csi_rds_command_duration_seconds", Help: "Duration of RouterOS commands.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 16),
		}),
	}
	reg.MustRegister(m.connected, m.breaker, m.reconnects, m.commands, m.duration)
	return m
}

func (m *metrics) setConnected(up bool) {
	if m != nil {
		m.connected.Set(b2f(up))
	}
}

func (m *metrics) setBreakerOpen(open bool) {
	if m != nil {
		m.breaker.Set(b2f(open))
	}
}

func (m *metrics) reconnected() {
	if m != nil {
		m.reconnects.Inc()
	}
}

func (m *metrics) command(result string, d time.Duration) {
	if m != nil {
		m.commands.WithLabelValues(result).Inc()
		m.duration.Observe(d.Seconds())
	}
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
