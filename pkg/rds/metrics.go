package rds

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promauto"
)

// metrics are the client's Prometheus series. They always exist, so that recording needs no nil
// checks; with no Registerer they are simply never exported.
type metrics struct {
	connected  prometheus.Gauge
	breaker    prometheus.Gauge
	reconnects prometheus.Counter
	commands   *prometheus.CounterVec
	duration   prometheus.Histogram
}

// newMetrics creates the series. promauto registers each one as it is made, so that none can be
// left out of the registration; promauto.With(nil) registers nothing.
func newMetrics(reg prometheus.Registerer) *metrics {
	f := promauto.With(reg)
	return &metrics{
		connected:  f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_rds_connected", Help: "1 while the SSH connection to the RDS is up, 0 otherwise."}),
		breaker:    f.NewGauge(prometheus.GaugeOpts{Name: "rds_csi_rds_breaker_open", Help: "1 while the circuit breaker fails RDS calls fast, 0 otherwise."}),
		reconnects: f.NewCounter(prometheus.CounterOpts{Name: "rds_csi_rds_reconnects_total", Help: "Successful SSH reconnects to the RDS after a lost connection."}),
		commands:   f.NewCounterVec(prometheus.CounterOpts{Name: "rds_csi_rds_commands_total", Help: "RouterOS commands run, by result."}, []string{"result"}),
		duration:   f.NewHistogram(prometheus.HistogramOpts{Name: "rds_csi_rds_command_duration_seconds", Help: "Duration of RouterOS commands.", Buckets: prometheus.ExponentialBuckets(0.001, 2, 16)}),
	}
}

func (m *metrics) setConnected(up bool) { m.connected.Set(b2f(up)) }

func (m *metrics) setBreakerOpen(open bool) { m.breaker.Set(b2f(open)) }

func (m *metrics) reconnected() { m.reconnects.Inc() }

func (m *metrics) command(result string, d time.Duration) {
	m.commands.WithLabelValues(result).Inc()
	m.duration.Observe(d.Seconds())
}

func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
