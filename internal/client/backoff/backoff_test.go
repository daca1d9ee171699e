package backoff

import (
	"net/http"
	"testing"
	"time"
)

func TestClassify(t *testing.T) {
	cases := []struct {
		status        int
		hasRetryAfter bool
		want          Action
	}{
		{401, false, Reauth},
		{409, false, Resync},
		{423, true, Retry},
		{423, false, Retry},
		{503, true, Retry},
		{503, false, Retry},
		{502, false, Retry},
		{504, false, Retry},
		{429, true, Retry},
		{460, false, Retry},
		{500, true, Retry},
		{500, false, Fail}, // tusgate: a storage error retrying cannot clear
		{400, false, Fail},
		{403, false, Fail},
		{404, false, Fail},
		{410, false, Fail},
		{413, false, Fail},
		{501, false, Fail},
	}
	for _, c := range cases {
		if got := Classify(c.status, c.hasRetryAfter); got != c.want {
			t.Errorf("Classify(%d, %t) = %v, want %v", c.status, c.hasRetryAfter, got, c.want)
		}
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2025, 3, 1, 12, 0, 0, 0, time.UTC)
	cases := []struct {
		in     string
		want   time.Duration
		wantOK bool
	}{
		{"", 0, false},
		{"  ", 0, false},
		{"0", 0, true},
		{"3", 3 * time.Second, true},
		{" 120 ", 2 * time.Minute, true},
		{"-1", 0, false},
		{"1.5", 0, false},
		{"soon", 0, false},
		{"99999999", time.Hour, true}, // capped
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second, true},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0, true},
		{"Sat, 01 Mar 2025 12:00:30 GMT", 30 * time.Second, true},
		{"Saturday, 01-Mar-25 12:00:30 GMT", 30 * time.Second, true}, // RFC 850
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour, true},
	}
	for _, c := range cases {
		got, ok := ParseRetryAfter(c.in, now)
		if got != c.want || ok != c.wantOK {
			t.Errorf("ParseRetryAfter(%q) = %v, %t; want %v, %t", c.in, got, ok, c.want, c.wantOK)
		}
	}
}

func TestDelay(t *testing.T) {
	for _, r := range []float64{0, 0.5, 0.999} {
		p := Policy{Base: time.Second, Max: 8 * time.Second, Rand: func() float64 { return r }}
		for attempt, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 4: 8 * time.Second, 5: 8 * time.Second, 80: 8 * time.Second} {
			got := p.Delay(attempt, -1)
			lo, hi := full/2, full
			if got < lo || got > hi {
				t.Errorf("rand %v attempt %d: delay %v not in [%v, %v]", r, attempt, got, lo, hi)
			}
		}
		// Retry-After wins over the back-off, with at most a tenth added.
		if got := p.Delay(1, 30*time.Second); got < 30*time.Second || got > 33*time.Second {
			t.Errorf("rand %v: delay with Retry-After 30s = %v", r, got)
		}
		if got := p.Delay(7, 0); got != 0 {
			t.Errorf("rand %v: delay with Retry-After 0 = %v", r, got)
		}
	}
	// Jitter spreads the delays of clients failing together.
	p := Policy{}
	seen := map[time.Duration]bool{}
	for range 20 {
		seen[p.Delay(3, -1)] = true
	}
	if len(seen) < 10 {
		t.Errorf("20 delays with jitter gave only %d different values", len(seen))
	}
}

func TestGiveUp(t *testing.T) {
	p := Policy{Attempts: 3}
	for attempt, want := range map[int]bool{1: false, 3: false, 4: true} {
		if got := p.GiveUp(attempt); got != want {
			t.Errorf("GiveUp(%d) = %t", attempt, got)
		}
	}
	if (Policy{}).GiveUp(DefaultAttempts) || !(Policy{}).GiveUp(DefaultAttempts+1) {
		t.Error("default attempts")
	}
}
