package s3stream

import "github.com/prometheus/client_golang/prometheus"

// Metrics counts how writes reached S3.
type Metrics struct {
	writes *prometheus.CounterVec
	parts  *prometheus.CounterVec
}

// NewMetrics registers the store's metrics with reg. buffers may be nil.
func NewMetrics(reg prometheus.Registerer, buffers *Buffers) *Metrics {
	m := &Metrics{
		writes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_s3_writes_total",
			Help: "Request bodies written to S3, by path: stream (from part buffers, each part sent while it arrives: S3 over HTTPS), buffer (each part read into a part buffer first: plain HTTP), window (each part streamed through a small window, when the part buffer budget is spent).",
		}, []string{"path"}),
		parts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_s3_parts_total",
			Help: "Parts and tails stored: streamed, buffered (read into memory, then sent), resent (streaming failed at S3, sent again from memory), tail (the .part object of a write too small for a part).",
		}, []string{"how"}),
	}
	reg.MustRegister(m.writes, m.parts)
	if buffers != nil {
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tusgate_s3_buffer_bytes",
			Help: "Memory held by part buffers (at most --s3-buffer-memory).",
		}, func() float64 { return float64(buffers.InUse()) }))
		reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "tusgate_s3_windows",
			Help: "Writes streaming through a window (128 KiB each), outside the part buffer budget.",
		}, func() float64 { return float64(buffers.Windows()) }))
	}
	return m
}

func (m *Metrics) write(path string) {
	if m != nil {
		m.writes.WithLabelValues(path).Inc()
	}
}

func (m *Metrics) part(how string) {
	if m != nil {
		m.parts.WithLabelValues(how).Inc()
	}
}
