package webhook

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/tusgate/tusgate/internal/clock"
)

// memOutbox is an in-memory Outbox for the Dispatcher's tests.
type memOutbox struct {
	mu       sync.Mutex
	queue    map[string]Record
	dead     map[string]Record
	claimErr error // returned by Claim while set
	claims   int   // calls of Claim
	puts     int   // calls of Put
}

func newMemOutbox() *memOutbox {
	return &memOutbox{queue: map[string]Record{}, dead: map[string]Record{}}
}

func (m *memOutbox) Put(ctx context.Context, recs ...Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.puts++
	for _, r := range recs {
		if err := checkRecordID(r.ID); err != nil {
			return err
		}
		if _, ok := m.queue[r.ID]; !ok {
			r.ClaimedUntil = time.Time{}
			m.queue[r.ID] = r
		}
	}
	return nil
}

func (m *memOutbox) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Record, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.claims++
	if m.claimErr != nil {
		return nil, m.claimErr
	}
	ids := slices.Sorted(mapKeys(m.queue))
	var out []Record
	for _, id := range ids {
		r := m.queue[id]
		if len(out) == max || r.NextAttempt.After(now) || r.ClaimedUntil.After(now) {
			continue
		}
		r.ClaimedUntil = now.Add(lease)
		m.queue[id] = r
		out = append(out, r)
	}
	return out, nil
}

func (m *memOutbox) Reschedule(ctx context.Context, rec Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if _, ok := m.queue[rec.ID]; ok {
		rec.ClaimedUntil = time.Time{}
		m.queue[rec.ID] = rec
	}
	return nil
}

func (m *memOutbox) Delete(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.queue, id)
	return nil
}

func (m *memOutbox) Bury(ctx context.Context, rec Record) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.queue, rec.ID)
	m.dead[rec.ID] = rec
	return nil
}

// snapshot returns copies of the queue and the dead letters.
func (m *memOutbox) snapshot() (queue, dead []Record) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range slices.Sorted(mapKeys(m.queue)) {
		queue = append(queue, m.queue[id])
	}
	for _, id := range slices.Sorted(mapKeys(m.dead)) {
		dead = append(dead, m.dead[id])
	}
	return queue, dead
}

func mapKeys[V any](m map[string]V) func(func(string) bool) {
	return func(yield func(string) bool) {
		for k := range m {
			if !yield(k) {
				return
			}
		}
	}
}

// waitFor polls cond until it holds, failing the test after 10 s.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond) // polling, not synchronisation
	}
}

// delivery is one request a receiver got.
type delivery struct {
	path   string
	header http.Header
	body   []byte
	at     time.Time // the fake clock's time when it arrived
}

// receiver is an httptest.Server recording deliveries on a channel and
// answering with the status respond returns for the nth (from 1) request.
type receiver struct {
	*httptest.Server
	got chan delivery
}

func newReceiver(t *testing.T, clk clock.Clock, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{got: make(chan delivery, 100)}
	var mu sync.Mutex
	n := 0
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("receiver: %v", err)
		}
		mu.Lock()
		n++
		i := n
		mu.Unlock()
		rc.got <- delivery{r.URL.Path, r.Header.Clone(), body, clk.Now()}
		if respond != nil {
			respond(i, w, r)
		}
	}))
	t.Cleanup(rc.Close)
	return rc
}

// next waits for the next delivery.
func (rc *receiver) next(t *testing.T) delivery {
	t.Helper()
	select {
	case d := <-rc.got:
		return d
	case <-time.After(10 * time.Second):
		t.Fatal("timed out waiting for a delivery")
		panic("unreachable")
	}
}

// none fails if a delivery is waiting.
func (rc *receiver) none(t *testing.T) {
	t.Helper()
	select {
	case d := <-rc.got:
		t.Fatalf("unexpected delivery to %s: %s", d.path, d.body)
	default:
	}
}

// status answers with code for requests listed in fail (by number), else 200.
func status(code int, fail ...int) func(int, http.ResponseWriter, *http.Request) {
	return func(n int, w http.ResponseWriter, _ *http.Request) {
		if slices.Contains(fail, n) {
			http.Error(w, "boom", code)
		}
	}
}

var (
	testSecret = []byte("test secret, not for production")
	testStart  = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
)

// almostOne makes the jitter factor 0.5 + 0.5*Rand() just below 1.
func almostOne() float64 { return 1 - 1e-9 }

// testLog writes warnings and errors to the test's output.
func testLog(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// startDispatcher creates a Dispatcher with test defaults (fake clock,
// Poll 1h, MinBackoff 1s, jitter factor just below 1) and runs it until the
// test ends.
func startDispatcher(t *testing.T, opts Options) (*Dispatcher, *clock.Fake) {
	t.Helper()
	fake := clock.NewFake(testStart)
	if opts.Clock == nil {
		opts.Clock = fake
	}
	if opts.Secret == nil {
		opts.Secret = testSecret
	}
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	if opts.Poll == 0 {
		opts.Poll = time.Hour
	}
	if opts.MinBackoff == 0 {
		opts.MinBackoff = time.Second
	}
	if opts.Rand == nil {
		opts.Rand = almostOne
	}
	d, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	runDispatcher(t, d)
	return d, fake
}

// runDispatcher runs d until the test ends.
func runDispatcher(t *testing.T, d *Dispatcher) {
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.Run(ctx)
	}()
	t.Cleanup(func() {
		cancel()
		<-stopped
	})
}

// testEvent returns an event with every field set.
func testEvent(id string) Event {
	exp := testStart.Add(24 * time.Hour)
	return Event{
		ID:   id,
		Type: TypeFinished,
		Time: testStart.Add(-time.Minute),
		Upload: Upload{
			ID:       "u-" + id,
			Owner:    &Owner{Issuer: "https://issuer.example/", Subject: "user|42"},
			Size:     1234,
			Offset:   1234,
			MetaData: map[string]string{"filename": "secret-plans.pdf"},
			Storage:  Storage{Type: "s3", Bucket: "uploads", Key: "user/u-" + id},
			Expires:  &exp,
		},
	}
}

func TestDeliverSignedEvent(t *testing.T) {
	ob := newMemOutbox()
	var rc *receiver
	fake := clock.NewFake(testStart)
	rc = newReceiver(t, fake, nil)
	reg := prometheus.NewRegistry()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL + "/hook"}, Clock: fake, Registerer: reg})

	ev := testEvent("evt_signed")
	if err := d.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	got := rc.next(t)
	want, _ := json.Marshal(ev)
	if string(got.body) != string(want) {
		t.Errorf("body\n%s\nwant\n%s", got.body, want)
	}
	h := got.header
	for k, v := range map[string]string{
		"Content-Type":  "application/json",
		"User-Agent":    "tusgate",
		HeaderEventID:   "evt_signed",
		HeaderEventType: TypeFinished,
		HeaderTimestamp: fmt.Sprint(testStart.Unix()),
	} {
		if h.Get(k) != v {
			t.Errorf("header %s = %q, want %q", k, h.Get(k), v)
		}
	}
	if err := Verify(testSecret, h, got.body, testStart, 5*time.Minute); err != nil {
		t.Errorf("Verify: %v", err)
	}
	for _, k := range []string{"Authorization", "Cookie"} {
		if v, ok := h[k]; ok {
			t.Errorf("delivery carries %s: %q", k, v)
		}
	}
	waitFor(t, "the record to be deleted", func() bool { q, _ := ob.snapshot(); return len(q) == 0 })
	if v := counter(t, reg, "delivered"); v != 1 {
		t.Errorf("delivered counter = %v, want 1", v)
	}
	rc.none(t)
}

func TestRetryWithBackoffUntilDelivered(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, status(http.StatusInternalServerError, 1, 2))
	ob := newMemOutbox()
	reg := prometheus.NewRegistry()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake, Registerer: reg})

	if err := d.Enqueue(t.Context(), testEvent("evt_retry")); err != nil {
		t.Fatal(err)
	}
	first := rc.next(t)
	// Idle with a poll timer and a back-off timer: the failure is stored.
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("no back-off timer after the first failure")
	}
	q, _ := ob.snapshot()
	if len(q) != 1 || q[0].Attempts != 1 || q[0].LastError != "HTTP 500: boom" || !q[0].ClaimedUntil.IsZero() {
		t.Fatalf("after one failure: %+v", q)
	}
	if wait := q[0].NextAttempt.Sub(testStart); wait < time.Second/2 || wait > time.Second {
		t.Errorf("first back-off %v, want within [0.5s, 1s]", wait)
	}
	fake.Advance(time.Second / 4)
	if fake.Timers() != 2 {
		t.Fatal("back-off timer fired early")
	}
	rc.none(t)

	fake.Advance(time.Second * 3 / 4)
	second := rc.next(t)
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("no back-off timer after the second failure")
	}
	q, _ = ob.snapshot()
	if len(q) != 1 || q[0].Attempts != 2 {
		t.Fatalf("after two failures: %+v", q)
	}
	if wait := q[0].NextAttempt.Sub(second.at); wait < time.Second || wait > 2*time.Second {
		t.Errorf("second back-off %v, want within [1s, 2s]", wait)
	}
	fake.Advance(2 * time.Second)
	third := rc.next(t)
	waitFor(t, "the record to be deleted", func() bool { q, _ := ob.snapshot(); return len(q) == 0 })
	rc.none(t)

	if gap := second.at.Sub(first.at); gap < time.Second/2 {
		t.Errorf("second attempt %v after the first, want ≥ 0.5s", gap)
	}
	if gap := third.at.Sub(second.at); gap < time.Second {
		t.Errorf("third attempt %v after the second, want ≥ 1s", gap)
	}
	for i, dl := range []delivery{first, second, third} {
		if string(dl.body) != string(first.body) || dl.header.Get(HeaderEventID) != "evt_retry" {
			t.Errorf("attempt %d differs: %s", i+1, dl.body)
		}
		if err := Verify(testSecret, dl.header, dl.body, dl.at, time.Second); err != nil {
			t.Errorf("attempt %d: %v", i+1, err)
		}
	}
	if f, dl := counter(t, reg, "failed"), counter(t, reg, "delivered"); f != 2 || dl != 1 {
		t.Errorf("counters failed %v delivered %v, want 2 and 1", f, dl)
	}
}

func TestBuryAfterMaxAge(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, func(_ int, w http.ResponseWriter, _ *http.Request) {
		http.Error(w, strings.Repeat("e", 1000), http.StatusBadGateway)
	})
	ob := newMemOutbox()
	reg := prometheus.NewRegistry()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake, MaxAge: 2 * time.Second, Registerer: reg})
	if err := d.Enqueue(t.Context(), testEvent("evt_old")); err != nil {
		t.Fatal(err)
	}
	rc.next(t) // at 0s: age 0
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("not rescheduled")
	}
	fake.Advance(time.Second)
	rc.next(t) // at 1s: age 1s
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("not rescheduled")
	}
	fake.Advance(2 * time.Second)
	rc.next(t) // at 3s: older than MaxAge
	waitFor(t, "the record to be buried", func() bool { _, dead := ob.snapshot(); return len(dead) == 1 })
	q, dead := ob.snapshot()
	if len(q) != 0 {
		t.Errorf("queue after burial: %+v", q)
	}
	if dead[0].Attempts != 3 || !strings.HasPrefix(dead[0].LastError, "HTTP 502: eee") || len(dead[0].LastError) > 220 {
		t.Errorf("buried record: attempts %d, last error %q", dead[0].Attempts, dead[0].LastError)
	}
	if b, f := counter(t, reg, "buried"), counter(t, reg, "failed"); b != 1 || f != 2 {
		t.Errorf("counters buried %v failed %v, want 1 and 2", b, f)
	}
}

func TestPrepareDrop(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, nil)
	ob := newMemOutbox()
	reg := prometheus.NewRegistry()
	prepared := make(chan string, 1)
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake, Registerer: reg,
		Prepare: func(ctx context.Context, ev *Event) (Decision, string, error) {
			prepared <- ev.ID
			return Drop, "upload is gone", nil
		}})
	if err := d.Enqueue(t.Context(), testEvent("evt_drop")); err != nil {
		t.Fatal(err)
	}
	if id := <-prepared; id != "evt_drop" {
		t.Errorf("Prepare got %q", id)
	}
	waitFor(t, "the record to be deleted", func() bool { q, _ := ob.snapshot(); return len(q) == 0 })
	rc.none(t)
	if _, dead := ob.snapshot(); len(dead) != 0 {
		t.Errorf("dropped record buried: %+v", dead)
	}
	if v := counter(t, reg, "dropped"); v != 1 {
		t.Errorf("dropped counter = %v, want 1", v)
	}
}

func TestPrepareRetryThenDeliver(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, nil)
	ob := newMemOutbox()
	var mu sync.Mutex
	calls := 0
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake,
		Prepare: func(ctx context.Context, ev *Event) (Decision, string, error) {
			mu.Lock()
			defer mu.Unlock()
			calls++
			switch calls {
			case 1:
				return Deliver, "", errors.New("HEAD object: 503")
			case 2:
				return Retry, "object not visible yet", nil
			}
			ev.Upload.Storage.ETag = `"abc"`
			ev.Upload.MetaData["added"] = "by prepare"
			return Deliver, "", nil
		}})
	ev := testEvent("evt_prep")
	if err := d.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"prepare: HEAD object: 503", "object not visible yet"} {
		if !fake.WaitTimers(2, 10*time.Second) {
			t.Fatalf("not rescheduled after Prepare call %d", i+1)
		}
		q, _ := ob.snapshot()
		if len(q) != 1 || q[0].Attempts != i+1 || q[0].LastError != want {
			t.Fatalf("after Prepare call %d: %+v", i+1, q)
		}
		if q[0].Event.Upload.Storage.ETag != "" {
			t.Errorf("Prepare's change was stored")
		}
		rc.none(t)
		fake.Advance(time.Duration(1<<i) * time.Second)
	}
	got := rc.next(t)
	ev.Upload.Storage.ETag = `"abc"`
	ev.Upload.MetaData = map[string]string{"filename": "secret-plans.pdf", "added": "by prepare"}
	want, _ := json.Marshal(ev)
	if string(got.body) != string(want) {
		t.Errorf("body\n%s\nwant\n%s", got.body, want)
	}
	waitFor(t, "the record to be deleted", func() bool { q, _ := ob.snapshot(); return len(q) == 0 })
}

func TestTwoURLsTwoRecords(t *testing.T) {
	fake := clock.NewFake(testStart)
	a := newReceiver(t, fake, nil)
	b := newReceiver(t, fake, nil)
	ob := newMemOutbox()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{a.URL + "/a", b.URL + "/b", a.URL + "/a"}, Clock: fake})
	if err := d.Enqueue(t.Context(), testEvent("evt_two")); err != nil {
		t.Fatal(err)
	}
	if got := a.next(t); got.path != "/a" || got.header.Get(HeaderEventID) != "evt_two" {
		t.Errorf("a got %s %s", got.path, got.header.Get(HeaderEventID))
	}
	if got := b.next(t); got.path != "/b" || got.header.Get(HeaderEventID) != "evt_two" {
		t.Errorf("b got %s %s", got.path, got.header.Get(HeaderEventID))
	}
	waitFor(t, "both records to be deleted", func() bool { q, _ := ob.snapshot(); return len(q) == 0 })
	a.none(t)
	b.none(t)
}

func TestEnqueueStoresOneRecordPerURL(t *testing.T) {
	fake := clock.NewFake(testStart)
	ob := newMemOutbox()
	urls := []string{"https://a.example/hook", "https://b.example/hook?token=x"}
	d, err := New(Options{Outbox: ob, URLs: urls, Secret: testSecret, Clock: fake})
	if err != nil {
		t.Fatal(err)
	}
	ev := testEvent("")
	ev.Time = time.Time{}
	if err := d.Enqueue(t.Context(), ev); err != nil {
		t.Fatal(err)
	}
	q, _ := ob.snapshot()
	if len(q) != 2 {
		t.Fatalf("%d records, want 2", len(q))
	}
	for _, r := range q {
		if !eventIDPattern.MatchString(r.Event.ID) || r.ID != recordID(r.Event.ID, r.URL) || !slices.Contains(urls, r.URL) {
			t.Errorf("record %s for event %s to %s", r.ID, r.Event.ID, r.URL)
		}
		if !r.Created.Equal(testStart) || !r.NextAttempt.Equal(testStart) || !r.Event.Time.Equal(testStart) || r.Attempts != 0 {
			t.Errorf("record times: %+v", r)
		}
	}
	if q[0].Event.ID != q[1].Event.ID {
		t.Error("one event got two IDs")
	}
	for _, bad := range []Event{{ID: "evt/../x", Type: TypeCreated}, {ID: "evt_ok"}} {
		if err := d.Enqueue(t.Context(), bad); err == nil {
			t.Errorf("Enqueue(%+v) succeeded", bad)
		}
	}

	none, err := New(Options{Outbox: ob, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	puts := ob.puts
	if err := none.Enqueue(t.Context(), testEvent("evt_nowhere")); err != nil || ob.puts != puts {
		t.Errorf("Enqueue without URLs: %v, %d Puts", err, ob.puts-puts)
	}
}

func TestNewChecksOptions(t *testing.T) {
	ob := newMemOutbox()
	for name, opts := range map[string]Options{
		"no secret":        {Outbox: ob, URLs: []string{"https://a.example/"}},
		"no outbox":        {Secret: testSecret},
		"relative URL":     {Outbox: ob, Secret: testSecret, URLs: []string{"/hook"}},
		"ftp URL":          {Outbox: ob, Secret: testSecret, URLs: []string{"ftp://a.example/"}},
		"credentials":      {Outbox: ob, Secret: testSecret, URLs: []string{"https://u:p@a.example/"}},
		"negative timeout": {Outbox: ob, Secret: testSecret, Timeout: -1},
		"lease < timeout":  {Outbox: ob, Secret: testSecret, Lease: time.Second},
	} {
		if _, err := New(opts); err == nil {
			t.Errorf("%s: New succeeded", name)
		}
	}
	d, err := New(Options{Outbox: ob, Secret: testSecret})
	if err != nil {
		t.Fatal(err)
	}
	if d.poll != 5*time.Second || d.timeout != 10*time.Second || d.lease != 25*time.Second || d.minBackoff != time.Second ||
		d.maxBackoff != 10*time.Minute || d.maxAge != 72*time.Hour || d.workers != 4 || d.userAgent != "tusgate" || d.client.Timeout != 10*time.Second {
		t.Errorf("defaults: %+v", d)
	}
	reg := prometheus.NewRegistry()
	if _, err := New(Options{Outbox: ob, Secret: testSecret, Registerer: reg}); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Options{Outbox: ob, Secret: testSecret, Registerer: reg}); err == nil {
		t.Error("registering the metrics twice succeeded")
	}
}

func TestBackoff(t *testing.T) {
	jitter := 0.0
	d, err := New(Options{Outbox: newMemOutbox(), Secret: testSecret, MinBackoff: time.Second, MaxBackoff: 10 * time.Minute,
		Rand: func() float64 { return jitter }})
	if err != nil {
		t.Fatal(err)
	}
	for n, full := range map[int]time.Duration{1: time.Second, 2: 2 * time.Second, 3: 4 * time.Second, 10: 512 * time.Second,
		11: 10 * time.Minute, 1000: 10 * time.Minute} {
		jitter = 0
		if got := d.backoff(n); got != full/2 {
			t.Errorf("backoff(%d) with Rand 0 = %v, want %v", n, got, full/2)
		}
		jitter = 0.5
		if got := d.backoff(n); got != full*3/4 {
			t.Errorf("backoff(%d) with Rand 0.5 = %v, want %v", n, got, full*3/4)
		}
	}
}

func TestRedirectIsAFailure(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, func(_ int, w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hook" {
			http.Redirect(w, r, "/elsewhere", http.StatusTemporaryRedirect)
		}
	})
	ob := newMemOutbox()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL + "/hook"}, Clock: fake})
	if err := d.Enqueue(t.Context(), testEvent("evt_redirect")); err != nil {
		t.Fatal(err)
	}
	rc.next(t)
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("not rescheduled")
	}
	rc.none(t)
	if q, _ := ob.snapshot(); len(q) != 1 || !strings.HasPrefix(q[0].LastError, "HTTP 307") {
		t.Errorf("after a redirect: %+v", q)
	}
}

func TestTimeoutIsAFailure(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, func(_ int, w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
	})
	ob := newMemOutbox()
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake, Timeout: 100 * time.Millisecond})
	if err := d.Enqueue(t.Context(), testEvent("evt_slow")); err != nil {
		t.Fatal(err)
	}
	rc.next(t)
	if !fake.WaitTimers(2, 10*time.Second) {
		t.Fatal("not rescheduled")
	}
	if q, _ := ob.snapshot(); len(q) != 1 || q[0].LastError != "timeout after 100ms" {
		t.Errorf("after a timeout: %+v", q)
	}
}

func TestOutboxErrorsRetriedAtPoll(t *testing.T) {
	fake := clock.NewFake(testStart)
	rc := newReceiver(t, fake, nil)
	ob := newMemOutbox()
	ob.claimErr = errors.New("outbox down")
	d, _ := startDispatcher(t, Options{Outbox: ob, URLs: []string{rc.URL}, Clock: fake, Poll: time.Minute,
		Log: slog.New(slog.DiscardHandler)})
	if err := d.Enqueue(t.Context(), testEvent("evt_outage")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a failed claim after the nudge", func() bool {
		ob.mu.Lock()
		defer ob.mu.Unlock()
		return ob.claims >= 2
	})
	rc.none(t)
	ob.mu.Lock()
	ob.claimErr = nil
	ob.mu.Unlock()
	// Run re-arms its poll timer after the failed claim; advance until it
	// has fired once with the outbox back.
	deadline := time.Now().Add(10 * time.Second)
	for {
		fake.WaitTimers(1, time.Second)
		fake.Advance(time.Minute)
		select {
		case <-rc.got:
			return
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("not delivered after the outbox recovered")
		}
	}
}

func TestStopFinishesDeliveriesInFlight(t *testing.T) {
	fake := clock.NewFake(testStart)
	release := make(chan struct{})
	rc := newReceiver(t, fake, func(int, http.ResponseWriter, *http.Request) { <-release })
	ob := newMemOutbox()
	d, err := New(Options{Outbox: ob, URLs: []string{rc.URL + "/1", rc.URL + "/2"}, Secret: testSecret, Clock: fake,
		Workers: 1, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Enqueue(t.Context(), testEvent("evt_stop")); err != nil {
		t.Fatal(err)
	}
	// Both records are claimed by Run's first claim; one worker delivers
	// the first, the second waits.
	ctx, cancel := context.WithCancel(context.Background())
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		d.Run(ctx)
	}()
	first := rc.next(t)
	cancel()
	select {
	case <-stopped:
		t.Fatal("Run returned with a delivery in flight")
	default:
	}
	close(release)
	<-stopped
	rc.none(t)
	q, _ := ob.snapshot()
	if len(q) != 1 {
		t.Fatalf("after stopping: %+v", q)
	}
	if want := recordID("evt_stop", rc.URL+first.path); q[0].ID == want {
		t.Errorf("the delivered record %s is still queued", want)
	}
	if q[0].Attempts != 0 || !q[0].ClaimedUntil.IsZero() || q[0].LastError != "" {
		t.Errorf("the record not started was not released as it was: %+v", q[0])
	}
}

// counter returns tusgate_webhook_deliveries_total{result} from reg.
func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "tusgate_webhook_deliveries_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			if labelIs(m, "result", result) {
				return m.GetCounter().GetValue()
			}
		}
	}
	t.Fatalf("no deliveries counter for %q", result)
	return 0
}

func labelIs(m *dto.Metric, name, value string) bool {
	for _, l := range m.GetLabel() {
		if l.GetName() == name && l.GetValue() == value {
			return true
		}
	}
	return false
}
