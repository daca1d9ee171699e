package progress

import (
	"bytes"
	"encoding/json"
	"errors"
	"strings"
	"sync"
	"testing"
	"time"
)

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func TestJSONEvents(t *testing.T) {
	t0 := time.Date(2025, 1, 2, 3, 4, 5, 0, time.UTC)
	now := t0
	var out lockedBuffer
	j := newJSON(&out, 0, func() time.Time { return now })

	tr := NewTracker("data/a.bin", 1000)
	tr.Add(200) // stored by an earlier run
	tr.Begin(t0)
	tr.SetURL("http://h/files/o/1")
	j.Start(tr)
	tr.Add(300)
	now = t0.Add(2 * time.Second)
	j.sample()
	j.sample() // no movement: no second progress event
	j.Retry(tr, errors.New("PATCH: 503 Service Unavailable"), 1500*time.Millisecond)
	j.Notice(tr, "file changed since the last run; starting anew")
	tr.Add(500)
	now = t0.Add(4 * time.Second)
	j.Done(tr)

	in := NewTracker("-", -1)
	j.Start(in)
	j.Fail(in, errors.New("POST: 403 Forbidden"))
	j.Close()

	var events []map[string]any
	for line := range strings.Lines(out.String()) {
		var e map[string]any
		if err := json.Unmarshal([]byte(line), &e); err != nil {
			t.Fatalf("not a JSON line: %q", line)
		}
		events = append(events, e)
	}
	want := []map[string]any{
		{"event": "start", "file": "data/a.bin", "url": "http://h/files/o/1", "offset": 200.0, "size": 1000.0, "rate": 0.0},
		{"event": "progress", "offset": 500.0, "size": 1000.0, "rate": 150.0},
		{"event": "retry", "error": "PATCH: 503 Service Unavailable", "wait": 1.5},
		{"event": "notice", "message": "file changed since the last run; starting anew"},
		{"event": "done", "url": "http://h/files/o/1", "offset": 1000.0, "rate": 200.0},
		{"event": "start", "file": "-", "offset": 0.0, "size": nil},
		{"event": "error", "file": "-", "error": "POST: 403 Forbidden"},
	}
	if len(events) != len(want) {
		t.Fatalf("%d events, want %d:\n%s", len(events), len(want), out.String())
	}
	for i, w := range want {
		for k, v := range w {
			if got, ok := events[i][k]; v == nil && ok || v != nil && got != v {
				t.Errorf("event %d %s = %#v, want %#v", i, k, got, v)
			}
		}
		if ts, _ := events[i]["time"].(string); !strings.HasPrefix(ts, "2025-01-02T03:04:") {
			t.Errorf("event %d time %q", i, ts)
		}
	}
}

func TestJSONIntervalSampling(t *testing.T) {
	var out lockedBuffer
	j := NewJSON(&out, 10*time.Millisecond)
	tr := NewTracker("a", 10)
	j.Start(tr)
	tr.Add(5)
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), `"event":"progress"`) {
		if time.Now().After(deadline) {
			t.Fatalf("no progress event within 5s:\n%s", out.String())
		}
		time.Sleep(5 * time.Millisecond) // polling a condition with a deadline
	}
	j.Close()
	j.Close() // twice is fine
}

func TestBarsDrawAndClose(t *testing.T) {
	var out lockedBuffer
	b := NewBars(&out)
	ok := NewTracker("/some/where/a-rather-long-file-name-for-a-bar.bin", 100)
	ok.Begin(time.Now())
	b.Start(ok)
	ok.Add(100)
	b.Done(ok)
	bad := NewTracker("b.bin", 100)
	b.Start(bad)
	b.Notice(bad, "file changed since the last run")
	b.Fail(bad, errors.New("POST: 403 Forbidden"))
	hung := NewTracker("-", -1) // still running when the run is interrupted
	b.Start(hung)
	hung.Add(10)
	b.Close()
	s := out.String()
	for _, want := range []string{"a-rather-l", "b.bin: file changed since the last run", "b.bin: POST: 403 Forbidden", "stdin"} {
		if !strings.Contains(s, want) {
			t.Errorf("output lacks %q:\n%s", want, s)
		}
	}
}
