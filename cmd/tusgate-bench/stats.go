package main

import (
	"math"
	"slices"
	"sync"
	"time"
)

// Percentile returns the p-th percentile (0 < p ≤ 100) of values by the
// nearest-rank method: the smallest value with at least p % of all values at
// or below it. It returns 0 for no values. values need not be sorted and
// are not modified.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	rank := int(math.Ceil(p / 100 * float64(len(s))))
	rank = min(max(rank, 1), len(s))
	return s[rank-1]
}

// Median returns the median of values (the mean of the two middle values
// for an even count), or 0 for none.
func Median(values []float64) float64 {
	if len(values) == 0 {
		return 0
	}
	s := slices.Clone(values)
	slices.Sort(s)
	m := len(s) / 2
	if len(s)%2 == 1 {
		return s[m]
	}
	return (s[m-1] + s[m]) / 2
}

// Latencies collects request durations by kind of request ("POST",
// "PATCH", "HEAD", "UploadPart", …). It is safe for concurrent use.
type Latencies struct {
	mu     sync.Mutex
	byKind map[string][]float64 // milliseconds
	order  []string
}

// Add records one request of kind that took d.
func (l *Latencies) Add(kind string, d time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.byKind == nil {
		l.byKind = map[string][]float64{}
	}
	if _, ok := l.byKind[kind]; !ok {
		l.order = append(l.order, kind)
	}
	l.byKind[kind] = append(l.byKind[kind], float64(d)/float64(time.Millisecond))
}

// KindStats summarises the requests of one kind.
type KindStats struct {
	Kind  string  `json:"kind"`
	Count int     `json:"count"`
	P50ms float64 `json:"p50_ms"`
	P99ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

// Stats returns one summary per kind, in the order kinds were first seen.
func (l *Latencies) Stats() []KindStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make([]KindStats, 0, len(l.order))
	for _, k := range l.order {
		v := l.byKind[k]
		out = append(out, KindStats{Kind: k, Count: len(v), P50ms: Percentile(v, 50), P99ms: Percentile(v, 99), MaxMs: slices.Max(v)})
	}
	return out
}

// Of returns the durations in milliseconds of all requests of the given
// kinds together.
func (l *Latencies) Of(kinds ...string) []float64 {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []float64
	for _, k := range kinds {
		out = append(out, l.byKind[k]...)
	}
	return out
}
