package direct

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the direct uploads' Prometheus metrics.
type metrics struct {
	uploads *prometheus.CounterVec // by event
	signed  *prometheus.CounterVec // by kind
	bytes   prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		uploads: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_direct_uploads_total",
			Help: "Direct-to-S3 uploads by event: created, finished, aborted (by the client, or over a limit), rejected (by the pre-finish URL), expired (by the janitor).",
		}, []string{"event"}),
		signed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_direct_signed_urls_total",
			Help: "Presigned URLs handed out for direct uploads, by kind: part (UploadPart) or put (a single PutObject).",
		}, []string{"kind"}),
		bytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_direct_finished_bytes_total",
			Help: "Bytes of the multipart direct uploads completed through this instance.",
		}),
	}
	for _, e := range []string{"created", "finished", "aborted", "rejected", "expired"} {
		m.uploads.WithLabelValues(e)
	}
	for _, k := range []string{"part", "put"} {
		m.signed.WithLabelValues(k)
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.uploads, m.signed, m.bytes} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("registering direct-upload metrics: %w", err)
		}
	}
	return m, nil
}
