package expiry

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/clock"
)

// memStore is an Inventory and Tombstones in memory that records calls and
// fails those named in fail ("remove id", "put id", ...).
type memStore struct {
	mu      sync.Mutex
	uploads []Upload
	orphans []Orphan
	infos   map[string]time.Time // finished upload ID → .info written
	tombs   map[string]time.Time
	calls   []string
	fail    map[string]error
}

func newMem() *memStore {
	return &memStore{infos: map[string]time.Time{}, tombs: map[string]time.Time{}, fail: map[string]error{}}
}

func (m *memStore) call(c string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.calls = append(m.calls, c)
	return m.fail[c]
}

func (m *memStore) takeCalls() []string {
	m.mu.Lock()
	defer m.mu.Unlock()
	c := m.calls
	m.calls = nil
	return c
}

func (m *memStore) Unfinished(_ context.Context, fn func(Upload) error) error {
	if err := m.call("unfinished"); err != nil {
		return err
	}
	for _, u := range slices.Clone(m.uploads) {
		if err := fn(u); err != nil {
			return err
		}
	}
	return nil
}

func (m *memStore) Lookup(_ context.Context, id string) (Upload, bool, error) {
	if err := m.call("lookup " + id); err != nil {
		return Upload{}, false, err
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, u := range m.uploads {
		if u.ID == id {
			return u, true, nil
		}
	}
	return Upload{}, false, nil
}

func (m *memStore) Orphans(_ context.Context, before time.Time, fn func(Orphan) error) error {
	if err := m.call("orphans"); err != nil {
		return err
	}
	for _, o := range slices.Clone(m.orphans) {
		if o.Since.Before(before) {
			if err := fn(o); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memStore) FinishedInfos(_ context.Context, before time.Time, fn func(string) error) error {
	if err := m.call("finished"); err != nil {
		return err
	}
	for id, at := range m.infos {
		if at.Before(before) {
			if err := fn(id); err != nil {
				return err
			}
		}
	}
	return nil
}

func (m *memStore) Remove(_ context.Context, u Upload) error {
	if err := m.call("remove " + u.ID); err != nil {
		return err
	}
	m.uploads = slices.DeleteFunc(m.uploads, func(x Upload) bool { return x.ID == u.ID })
	return nil
}

func (m *memStore) RemoveOrphan(_ context.Context, o Orphan) error {
	if err := m.call("remove orphan " + o.Key); err != nil {
		return err
	}
	m.orphans = slices.DeleteFunc(m.orphans, func(x Orphan) bool { return x.Key == o.Key })
	return nil
}

func (m *memStore) RemoveInfo(_ context.Context, id string) error {
	if err := m.call("remove info " + id); err != nil {
		return err
	}
	delete(m.infos, id)
	return nil
}

func (m *memStore) Put(_ context.Context, id string, at time.Time) error {
	if err := m.call("put " + id); err != nil {
		return err
	}
	m.tombs[id] = at
	return nil
}

func (m *memStore) Get(_ context.Context, id string) (time.Time, bool, error) {
	at, ok := m.tombs[id]
	return at, ok, nil
}

func (m *memStore) Sweep(_ context.Context, before time.Time) (int, error) {
	if err := m.call("sweep"); err != nil {
		return 0, err
	}
	n := 0
	for id, at := range m.tombs {
		if at.Before(before) {
			delete(m.tombs, id)
			n++
		}
	}
	return n, nil
}

var t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)

func TestNewChecksOptions(t *testing.T) {
	_, err := New(Options{TTL: -time.Second, Interval: -1})
	if err == nil {
		t.Fatal("New accepted bad options")
	}
	for _, want := range []string{"Inventory is required", "TTL must not be negative", "Interval must not be negative"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error %q does not say %q", err, want)
		}
	}
}

func TestDefaults(t *testing.T) {
	for _, c := range []struct {
		ttl, finished          time.Duration
		interval, orphanMinAge time.Duration
	}{
		{ttl: 24 * time.Hour, interval: 10 * time.Minute, orphanMinAge: time.Hour},
		{ttl: 30 * time.Minute, interval: 3 * time.Minute, orphanMinAge: 30 * time.Minute},
		{ttl: 5 * time.Second, interval: time.Second, orphanMinAge: 5 * time.Second},
		{finished: 50 * time.Second, interval: 5 * time.Second},
	} {
		j, err := New(Options{Inventory: newMem(), TTL: c.ttl, FinishedInfoTTL: c.finished})
		if err != nil {
			t.Fatal(err)
		}
		if j.o.Interval != c.interval || j.o.OrphanMinAge != c.orphanMinAge || j.o.TombstoneTTL != 7*24*time.Hour {
			t.Errorf("TTL %v, FinishedInfoTTL %v: Interval %v, OrphanMinAge %v, TombstoneTTL %v; want %v, %v, 168h",
				c.ttl, c.finished, j.o.Interval, j.o.OrphanMinAge, j.o.TombstoneTTL, c.interval, c.orphanMinAge)
		}
	}
}

func TestExpires(t *testing.T) {
	j, _ := New(Options{Inventory: newMem(), TTL: time.Hour})
	if at, ok := j.Expires(t0); !ok || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("Expires = %v, %v", at, ok)
	}
	j, _ = New(Options{Inventory: newMem()})
	if _, ok := j.Expires(t0); ok {
		t.Error("Expires reports expiry with TTL 0")
	}
}

func TestExpiresAt(t *testing.T) {
	m := newMem()
	m.uploads = []Upload{{ID: "a", LastActivity: t0}}
	j, _ := New(Options{Inventory: m, TTL: time.Hour})
	if at, ok, err := j.ExpiresAt(t.Context(), "a"); err != nil || !ok || !at.Equal(t0.Add(time.Hour)) {
		t.Errorf("ExpiresAt(a) = %v, %v, %v; want %v", at, ok, err, t0.Add(time.Hour))
	}
	if _, ok, err := j.ExpiresAt(t.Context(), "b"); ok || err != nil {
		t.Errorf("ExpiresAt of an unknown upload: %v, %v", ok, err)
	}
	m.fail["lookup a"] = errors.New("S3 down")
	if _, _, err := j.ExpiresAt(t.Context(), "a"); err == nil {
		t.Error("ExpiresAt hides the store's error")
	}
	j, _ = New(Options{Inventory: m, FinishedInfoTTL: time.Hour})
	if _, ok, _ := j.ExpiresAt(t.Context(), "a"); ok {
		t.Error("ExpiresAt reports expiry with TTL 0")
	}
}

// A final upload waiting for partial uploads (concatenation-unfinished)
// is as active as the most recently written of them.
func TestFinalUploadLivesAsLongAsItsPartials(t *testing.T) {
	m := newMem()
	final := Upload{ID: "f", LastActivity: t0, Info: handler.FileInfo{ID: "f", IsFinal: true, PartialUploads: []string{"p1", "p2"}}}
	// p2 is finished: the inventory does not list it.
	m.uploads = []Upload{final, {ID: "p1", LastActivity: t0.Add(50 * time.Minute)}}
	clk := clock.NewFake(t0.Add(90 * time.Minute))
	j, err := New(Options{Inventory: m, Clock: clk, Log: quietLog(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.RunOnce(t.Context()); err != nil || r.Expired != 0 {
		t.Fatalf("RunOnce while a partial upload is active: %+v, %v; want nothing expired", r, err)
	}
	if at, ok, err := j.ExpiresAt(t.Context(), "f"); err != nil || !ok || !at.Equal(t0.Add(110*time.Minute)) {
		t.Fatalf("ExpiresAt(f) = %v, %v, %v; want the partial upload's expiry %v", at, ok, err, t0.Add(110*time.Minute))
	}
	m.fail["lookup p1"] = errors.New("S3 down")
	clk.Advance(time.Hour)
	if r, _ := j.RunOnce(t.Context()); r.Expired != 1 || r.Errors != 1 || len(m.uploads) != 1 || m.uploads[0].ID != "f" {
		t.Fatalf("RunOnce when the partial upload cannot be read: %+v, uploads %v; want only p1 expired", r, m.uploads)
	}
	delete(m.fail, "lookup p1")
	if r, err := j.RunOnce(t.Context()); err != nil || r.Expired != 1 || len(m.uploads) != 0 {
		t.Fatalf("RunOnce after the partial upload expired: %+v, %v, uploads %v; want the final upload expired", r, err, m.uploads)
	}
}

// TestRunOnceOrder checks the TTL boundary and the order expiry callback,
// tombstone, removal.
func TestRunOnceOrder(t *testing.T) {
	m := newMem()
	m.uploads = []Upload{
		{ID: "o/due", LastActivity: t0.Add(-time.Hour)},
		{ID: "o/young", LastActivity: t0.Add(-time.Hour + time.Nanosecond)},
		{ID: "o/busy", LastActivity: t0.Add(-2 * time.Hour)},
	}
	m.orphans = []Orphan{{Key: "o/old", Since: t0.Add(-2 * time.Hour)}, {Key: "o/new", Since: t0.Add(-time.Minute)}}
	m.infos["o/done"] = t0.Add(-48 * time.Hour)
	m.tombs["o/gone"] = t0.Add(-8 * 24 * time.Hour)
	j, err := New(Options{
		Inventory: m, Tombstones: m, Clock: clock.NewFake(t0), Log: quietLog(), TTL: time.Hour,
		Active: func(_ context.Context, id string) (bool, error) { return id == "o/busy", m.call("active " + id) },
		Expired: func(_ context.Context, u Upload) error {
			return m.call("expired " + u.ID)
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := j.RunOnce(t.Context())
	if err != nil || r != (Report{Expired: 1, Orphans: 1, Tombstones: 1}) {
		t.Fatalf("RunOnce = %+v, %v", r, err)
	}
	want := []string{
		"unfinished", "active o/due", "expired o/due", "put o/due", "remove o/due", "active o/busy",
		"orphans", "remove orphan o/old", "sweep",
	}
	if got := m.takeCalls(); !slices.Equal(got, want) {
		t.Errorf("calls:\n got %q\nwant %q", got, want)
	}
	if at := m.tombs["o/due"]; !at.Equal(t0) {
		t.Errorf("tombstone written at %v, want %v", at, t0)
	}
}

// TestRunOnceFailures checks that a failure skips what must come after it
// for that item only, and is counted.
func TestRunOnceFailures(t *testing.T) {
	m := newMem()
	old := t0.Add(-2 * time.Hour)
	m.uploads = []Upload{{ID: "o/a", LastActivity: old}, {ID: "o/b", LastActivity: old}, {ID: "o/c", LastActivity: old}, {ID: "o/d", LastActivity: old}, {ID: "o/e", LastActivity: old}}
	m.orphans = []Orphan{{Key: "o/x", Since: old}}
	m.infos["o/i"] = old
	boom := errors.New("boom")
	m.fail["active o/a"] = boom
	m.fail["expired o/b"] = boom
	m.fail["put o/c"] = boom
	m.fail["remove o/d"] = boom
	m.fail["remove orphan o/x"] = boom
	m.fail["remove info o/i"] = boom
	m.fail["sweep"] = boom
	reg := prometheus.NewRegistry()
	j, err := New(Options{
		Inventory: m, Tombstones: m, Clock: clock.NewFake(t0), Log: quietLog(),
		TTL: time.Hour, FinishedInfoTTL: time.Hour, Registerer: reg,
		Active:  func(_ context.Context, id string) (bool, error) { return false, m.call("active " + id) },
		Expired: func(_ context.Context, u Upload) error { return m.call("expired " + u.ID) },
	})
	if err != nil {
		t.Fatal(err)
	}
	r, err := j.RunOnce(t.Context())
	if r != (Report{Expired: 1, Errors: 7}) || !errors.Is(err, boom) {
		t.Fatalf("RunOnce = %+v, %v", r, err)
	}
	calls := m.takeCalls()
	for _, never := range []string{"expired o/a", "put o/a", "remove o/a", "put o/b", "remove o/b", "remove o/c"} {
		if slices.Contains(calls, never) {
			t.Errorf("%q called after an earlier failure: %q", never, calls)
		}
	}
	if !slices.Contains(calls, "remove o/e") {
		t.Errorf("pass stopped after failures: %q", calls)
	}
	if _, ok := m.tombs["o/d"]; !ok {
		t.Error("no tombstone for o/d")
	}
	metrics := gather(t, reg)
	for name, want := range map[string]float64{
		"tusgate_janitor_expired_total":              1,
		"tusgate_janitor_errors_total":               7,
		"tusgate_janitor_orphans_removed_total":      0,
		"tusgate_janitor_infos_removed_total":        0,
		"tusgate_janitor_last_run_timestamp_seconds": float64(t0.Unix()),
	} {
		if got, ok := metrics[name]; !ok || got != want {
			t.Errorf("%s = %v (%v), want %v", name, got, ok, want)
		}
	}

	// A listing that fails counts as an error; the pass goes on.
	m.fail = map[string]error{"unfinished": boom}
	r, err = j.RunOnce(t.Context())
	if r != (Report{Orphans: 1, Infos: 1, Errors: 1}) || !errors.Is(err, boom) {
		t.Fatalf("RunOnce = %+v, %v", r, err)
	}
}

func gather(t *testing.T, reg *prometheus.Registry) map[string]float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			switch mf.GetType() {
			case dto.MetricType_COUNTER:
				got[mf.GetName()] = m.GetCounter().GetValue()
			case dto.MetricType_GAUGE:
				got[mf.GetName()] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}

// TestTTLZero: without TTL only finished uploads' .info are removed.
func TestTTLZero(t *testing.T) {
	m := newMem()
	m.uploads = []Upload{{ID: "o/a", LastActivity: t0.Add(-1000 * time.Hour)}}
	m.orphans = []Orphan{{Key: "o/x", Since: t0.Add(-1000 * time.Hour)}}
	m.infos["o/i"] = t0.Add(-48 * time.Hour)
	j, err := New(Options{Inventory: m, Tombstones: m, Clock: clock.NewFake(t0), Log: quietLog(), FinishedInfoTTL: 24 * time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	r, err := j.RunOnce(t.Context())
	if err != nil || r != (Report{Infos: 1}) {
		t.Fatalf("RunOnce = %+v, %v", r, err)
	}
	if got, want := m.takeCalls(), []string{"finished", "remove info o/i"}; !slices.Equal(got, want) {
		t.Errorf("calls %q, want %q", got, want)
	}
}

// TestNoTombstones: without Tombstones uploads are removed all the same.
func TestNoTombstones(t *testing.T) {
	m := newMem()
	m.uploads = []Upload{{ID: "o/a", LastActivity: t0.Add(-2 * time.Hour)}}
	j, err := New(Options{Inventory: m, Clock: clock.NewFake(t0), Log: quietLog(), TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if r, err := j.RunOnce(t.Context()); err != nil || r != (Report{Expired: 1}) {
		t.Fatalf("RunOnce = %+v, %v", r, err)
	}
	if len(m.tombs) != 0 || len(m.uploads) != 0 {
		t.Errorf("tombstones %v, uploads %v", m.tombs, m.uploads)
	}
}

// TestRun checks that Run waits its first delay, then runs every Interval
// when elected, and stops with its context.
func TestRun(t *testing.T) {
	const interval = time.Minute
	clk := clock.NewFake(t0)
	m := newMem()
	elected := make(chan bool, 10)
	var elect bool
	j, err := New(Options{
		Inventory: m, Clock: clk, Log: quietLog(), TTL: time.Hour, Interval: interval,
		Elect: func(context.Context) (bool, error) {
			elected <- elect
			return elect, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	j.firstDelay = func(d time.Duration) time.Duration {
		if d != interval {
			t.Errorf("first delay drawn from [0, %v), want [0, %v)", d, interval)
		}
		return 20 * time.Second
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		j.Run(ctx)
	}()

	// step advances the clock by d once Run is waiting and checks whether
	// Run then asked Elect (its timer fired) or still waits.
	step := func(d time.Duration, wantRun bool) {
		t.Helper()
		if !clk.WaitTimers(1, 10*time.Second) {
			t.Fatal("Run is not waiting")
		}
		clk.Advance(d)
		if !wantRun {
			// Had the timer fired, Run would be without timer or, having
			// set the next one, would have asked Elect before.
			if n := clk.Timers(); n != 1 || len(elected) > 0 {
				t.Fatalf("Run woke up %v early", d)
			}
			return
		}
		select {
		case <-elected:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not run after its timer fired")
		}
	}

	step(20*time.Second-time.Nanosecond, false)
	step(time.Nanosecond, true)
	if !clk.WaitTimers(1, 10*time.Second) {
		t.Fatal("Run is not waiting")
	}
	if calls := m.takeCalls(); len(calls) != 0 {
		t.Errorf("ran although not elected: %q", calls)
	}
	elect = true
	step(interval-time.Second, false)
	step(time.Second, true)
	if !clk.WaitTimers(1, 10*time.Second) {
		t.Fatal("Run is not waiting")
	}
	if calls := m.takeCalls(); !slices.Equal(calls, []string{"unfinished", "orphans"}) {
		t.Errorf("elected run made calls %q", calls)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
