package redislocker

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Locker's Prometheus metrics.
type metrics struct {
	wait            prometheus.Histogram
	releaseRequests prometheus.Counter
	leaseLost       prometheus.Counter
	acquireErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tusgate_lock_wait_seconds",
			Help:    "Time from the start of Lock to the acquisition of an upload lock (successful acquisitions only).",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30},
		}),
		releaseRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_lock_release_requests_total",
			Help: "Release requests published to holders of upload locks (including repeats).",
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_lock_lease_lost_total",
			Help: "Held upload locks whose renewal failed (Redis unreachable or the key taken over); their requests were interrupted.",
		}),
		acquireErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_lock_acquire_errors_total",
			Help: "Lock calls that failed, by reason: unavailable (Redis unreachable, 503) or timeout (lock still held when the context ended).",
		}, []string{"reason"}),
	}
	m.acquireErrors.WithLabelValues("unavailable")
	m.acquireErrors.WithLabelValues("timeout")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.wait, m.releaseRequests, m.leaseLost, m.acquireErrors} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("registering lock metrics: %w", err)
		}
	}
	return m, nil
}
