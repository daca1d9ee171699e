package main

import (
	"testing"
	"time"
)

func TestPercentile(t *testing.T) {
	hundred := make([]float64, 100)
	for i := range hundred {
		hundred[i] = float64(100 - i) // 100 … 1, unsorted
	}
	cases := []struct {
		name   string
		values []float64
		p      float64
		want   float64
	}{
		{"empty", nil, 50, 0},
		{"one", []float64{7}, 99, 7},
		{"p50 of 1..100", hundred, 50, 50},
		{"p99 of 1..100", hundred, 99, 99},
		{"p100 of 1..100", hundred, 100, 100},
		{"p1 of 1..100", hundred, 1, 1},
		{"p99 of 10 values is the largest", []float64{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}, 99, 10},
		{"p50 of 4 values (nearest rank)", []float64{4, 1, 3, 2}, 50, 2},
		{"tiny p", []float64{3, 1, 2}, 0.001, 1},
	}
	for _, c := range cases {
		if got := Percentile(c.values, c.p); got != c.want {
			t.Errorf("%s: Percentile(%v) = %v, want %v", c.name, c.p, got, c.want)
		}
	}
	if hundred[0] != 100 {
		t.Error("Percentile sorted its argument in place")
	}
}

func TestMedian(t *testing.T) {
	for _, c := range []struct {
		v    []float64
		want float64
	}{{nil, 0}, {[]float64{5}, 5}, {[]float64{3, 1, 2}, 2}, {[]float64{4, 1, 3, 2}, 2.5}} {
		if got := Median(c.v); got != c.want {
			t.Errorf("Median(%v) = %v, want %v", c.v, got, c.want)
		}
	}
}

func TestLatencies(t *testing.T) {
	var l Latencies
	for i := 1; i <= 10; i++ {
		l.Add("PATCH", time.Duration(i)*time.Millisecond)
	}
	l.Add("POST", 500*time.Microsecond)
	st := l.Stats()
	if len(st) != 2 || st[0].Kind != "PATCH" || st[1].Kind != "POST" {
		t.Fatalf("Stats = %+v, want PATCH then POST", st)
	}
	if st[0].Count != 10 || st[0].P50ms != 5 || st[0].P99ms != 10 || st[0].MaxMs != 10 {
		t.Errorf("PATCH stats = %+v", st[0])
	}
	if st[1].P50ms != 0.5 {
		t.Errorf("POST p50 = %v ms, want 0.5", st[1].P50ms)
	}
	if got := len(l.Of("PATCH", "POST", "HEAD")); got != 11 {
		t.Errorf("Of(PATCH, POST, HEAD) has %d values, want 11", got)
	}
}
