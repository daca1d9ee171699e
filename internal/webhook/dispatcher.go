package webhook

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/tusgate/tusgate/internal/clock"
)

// Defaults of Options.
const (
	defaultPoll       = 5 * time.Second
	defaultTimeout    = 10 * time.Second
	defaultMinBackoff = time.Second
	defaultMaxBackoff = 10 * time.Minute
	defaultMaxAge     = 72 * time.Hour
	defaultWorkers    = 4
	defaultUserAgent  = "tusgate"
)

const (
	// batchPerWorker is how many records Run claims per worker at once.
	batchPerWorker = 4
	// maxReason bounds the response body quoted in Record.LastError.
	maxReason = 200
	// maxWakeups bounds how many back-off due times Run remembers; later
	// ones are found by polling.
	maxWakeups = 1024
)

// Decision is what Options.Prepare decides about a delivery attempt.
type Decision int

// Decisions of Options.Prepare.
const (
	// Deliver sends the event.
	Deliver Decision = iota
	// Retry counts the attempt as failed with the reason Prepare gave;
	// back-off and MaxAge apply.
	Retry
	// Drop deletes the record without delivering it.
	Drop
)

// Options configure a Dispatcher. Zero values get the defaults in brackets.
type Options struct {
	Outbox Outbox   // required
	URLs   []string // targets, absolute http(s) URLs without credentials; each event becomes one Record per URL
	Secret []byte   // HMAC key (required)
	// Client sends deliveries [timeout = Timeout, redirects not followed].
	// A given client is copied without its cookie jar.
	Client *http.Client
	Clock  clock.Clock  // [clock.Real{}]
	Log    *slog.Logger // [slog.Default()]
	// Poll is how often Run looks for due records without a nudge [5s].
	Poll time.Duration
	// Lease is how long a claim lasts [2*Timeout + 5s]. Run starts no
	// attempt on a record whose claim ends within Timeout.
	Lease time.Duration
	// Timeout bounds each delivery attempt, measured on the real clock as
	// net/http does [10s].
	Timeout    time.Duration
	MinBackoff time.Duration // [1s]
	MaxBackoff time.Duration // [10m]
	// MaxAge: a record older than this (since Created) that fails again is
	// buried [72h].
	MaxAge  time.Duration
	Workers int // concurrent deliveries [4]
	// Rand is the jitter source, in [0,1) [math/rand/v2.Float64].
	Rand func() float64
	// Prepare, if set, runs before each delivery attempt. It may fill in
	// fields of ev (such as the S3 ETag); what it changes is sent but not
	// stored. It decides to Deliver, Retry (a failed attempt with the
	// returned reason; back-off applies) or Drop (delete the record without
	// delivering it, logged at info). An error means Retry with the error
	// as the reason.
	Prepare func(ctx context.Context, ev *Event) (Decision, string, error)
	// Registerer receives the metrics
	// tusgate_webhook_deliveries_total{result="delivered|failed|buried|dropped"}
	// and tusgate_webhook_delivery_seconds; nil means none.
	Registerer prometheus.Registerer
	UserAgent  string // ["tusgate"]
}

// Dispatcher delivers the events of an Outbox. Create it with New.
type Dispatcher struct {
	outbox     Outbox
	urls       []string
	secret     []byte
	client     *http.Client
	clock      clock.Clock
	log        *slog.Logger
	poll       time.Duration
	lease      time.Duration
	timeout    time.Duration
	minBackoff time.Duration
	maxBackoff time.Duration
	maxAge     time.Duration
	workers    int
	rand       func() float64
	prepare    func(ctx context.Context, ev *Event) (Decision, string, error)
	userAgent  string

	nudge chan struct{} // Enqueue → Run, capacity 1

	deliveries *prometheus.CounterVec // nil without a Registerer
	seconds    prometheus.Histogram
}

// New checks opts and returns a Dispatcher; call Run to start delivering.
func New(opts Options) (*Dispatcher, error) {
	var errs []error
	if opts.Outbox == nil {
		errs = append(errs, errors.New("webhook: no Outbox"))
	}
	if len(opts.Secret) == 0 {
		errs = append(errs, errors.New("webhook: no Secret: deliveries must be signed"))
	}
	for _, u := range opts.URLs {
		if err := checkURL(u); err != nil {
			errs = append(errs, err)
		}
	}
	for _, x := range []struct {
		name string
		d    time.Duration
	}{
		{"Poll", opts.Poll}, {"Lease", opts.Lease}, {"Timeout", opts.Timeout},
		{"MinBackoff", opts.MinBackoff}, {"MaxBackoff", opts.MaxBackoff}, {"MaxAge", opts.MaxAge},
	} {
		if x.d < 0 {
			errs = append(errs, fmt.Errorf("webhook: %s is negative (%v)", x.name, x.d))
		}
	}
	if opts.Workers < 0 {
		errs = append(errs, fmt.Errorf("webhook: Workers is negative (%d)", opts.Workers))
	}
	d := &Dispatcher{
		outbox:     opts.Outbox,
		secret:     slices.Clone(opts.Secret),
		clock:      cmp.Or[clock.Clock](opts.Clock, clock.Real{}),
		log:        cmp.Or(opts.Log, slog.Default()),
		poll:       cmp.Or(opts.Poll, defaultPoll),
		timeout:    cmp.Or(opts.Timeout, defaultTimeout),
		minBackoff: cmp.Or(opts.MinBackoff, defaultMinBackoff),
		maxBackoff: cmp.Or(opts.MaxBackoff, defaultMaxBackoff),
		maxAge:     cmp.Or(opts.MaxAge, defaultMaxAge),
		workers:    cmp.Or(opts.Workers, defaultWorkers),
		rand:       opts.Rand,
		prepare:    opts.Prepare,
		userAgent:  cmp.Or(opts.UserAgent, defaultUserAgent),
		nudge:      make(chan struct{}, 1),
	}
	for _, u := range opts.URLs {
		if !slices.Contains(d.urls, u) {
			d.urls = append(d.urls, u)
		}
	}
	if d.rand == nil {
		d.rand = rand.Float64
	}
	d.lease = cmp.Or(opts.Lease, 2*d.timeout+5*time.Second)
	if d.lease < d.timeout {
		errs = append(errs, fmt.Errorf("webhook: Lease (%v) is shorter than Timeout (%v)", d.lease, d.timeout))
	}
	if d.maxBackoff < d.minBackoff {
		errs = append(errs, fmt.Errorf("webhook: MaxBackoff (%v) is below MinBackoff (%v)", d.maxBackoff, d.minBackoff))
	}
	if opts.Client != nil {
		c := *opts.Client
		c.Jar = nil // deliveries carry no cookies
		d.client = &c
	} else {
		d.client = newClient(d.timeout)
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	if opts.Registerer != nil {
		d.deliveries = prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_webhook_deliveries_total",
			Help: "Webhook delivery attempts by result: delivered, failed (will be retried), buried (given up) or dropped (by Prepare).",
		}, []string{"result"})
		d.seconds = prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tusgate_webhook_delivery_seconds",
			Help:    "Duration of webhook delivery attempts that reached the network.",
			Buckets: prometheus.DefBuckets,
		})
		for _, r := range []string{"delivered", "failed", "buried", "dropped"} {
			d.deliveries.WithLabelValues(r)
		}
		for _, c := range []prometheus.Collector{d.deliveries, d.seconds} {
			if err := opts.Registerer.Register(c); err != nil {
				return nil, fmt.Errorf("webhook: registering metrics: %w", err)
			}
		}
	}
	return d, nil
}

// newClient returns an HTTP client with the given timeout that does not
// follow redirects: a receiver's 3xx is a failure, not a hop that would
// carry the signed body elsewhere.
func newClient(timeout time.Duration) *http.Client {
	return &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// Enqueue stores one record per URL for ev, durably through Outbox.Put, and
// nudges Run; it returns only once the outbox confirmed. An empty ev.ID is
// set to NewEventID() and a zero ev.Time to the clock's now. With no URLs
// Enqueue does nothing.
func (d *Dispatcher) Enqueue(ctx context.Context, ev Event) error {
	if len(d.urls) == 0 {
		return nil
	}
	now := d.clock.Now()
	if ev.ID == "" {
		ev.ID = NewEventID()
	}
	if !validID(ev.ID, maxEventIDLen) {
		return fmt.Errorf("webhook: invalid event ID %q: want 1 to %d characters of [A-Za-z0-9_-]", ev.ID, maxEventIDLen)
	}
	if ev.Type == "" {
		return errors.New("webhook: event without a type")
	}
	if ev.Time.IsZero() {
		ev.Time = now
	}
	recs := make([]Record, len(d.urls))
	for i, u := range d.urls {
		recs[i] = Record{ID: recordID(ev.ID, u), URL: u, Event: ev, NextAttempt: now, Created: now}
	}
	if err := d.outbox.Put(ctx, recs...); err != nil {
		return fmt.Errorf("webhook: storing event %s: %w", ev.ID, err)
	}
	select {
	case d.nudge <- struct{}{}:
	default: // a nudge is already pending
	}
	return nil
}

// Run delivers due records until ctx ends. It claims up to Workers*4
// records when Enqueue nudges it, every Poll, and when the earliest
// back-off it scheduled itself is due, and delivers them with at most
// Workers at a time; it claims more once fewer than Workers are left. When
// ctx ends it releases the claimed records it has not started and returns
// once the deliveries in flight are done (they have their own timeout and
// are not cancelled by ctx).
func (d *Dispatcher) Run(ctx context.Context) {
	batch := d.workers * batchPerWorker
	jobs := make(chan Record, batch)
	done := make(chan time.Time, batch) // per finished job: when it is due again, or zero
	var wg sync.WaitGroup
	for range d.workers {
		wg.Go(func() {
			for rec := range jobs {
				done <- d.handle(ctx, rec)
			}
		})
	}

	var (
		pending = 0    // claimed records not finished
		want    = true // a Claim is due
		wakeups []time.Time

		pollC      <-chan time.Time
		stopPoll   = func() {}
		wakeC      <-chan time.Time
		stopWake   = func() {}
		wakeupTime time.Time // when wakeC fires
	)
	defer func() { stopPoll(); stopWake() }()
	for {
		if want && pending < d.workers {
			want = false
			n := d.claim(ctx, jobs, batch-pending)
			pending += n
			if pending == batch {
				want = true // there may be more
			}
			stopPoll()
			pollC, stopPoll = d.clock.After(d.poll)
		}
		// Arm the wake-up for the earliest back-off.
		if len(wakeups) > 0 && (wakeC == nil || wakeups[0].Before(wakeupTime)) {
			stopWake()
			wakeupTime = wakeups[0]
			wakeC, stopWake = d.clock.After(wakeupTime.Sub(d.clock.Now()))
		}
		select {
		case <-ctx.Done():
			close(jobs)
			wg.Wait()
			return
		case <-d.nudge:
			want = true
		case <-pollC:
			pollC, want = nil, true
		case now := <-wakeC:
			wakeC, want = nil, true
			i := 0
			for i < len(wakeups) && !wakeups[i].After(now) {
				i++
			}
			wakeups = wakeups[i:]
		case next := <-done:
			pending--
			if !next.IsZero() {
				i, _ := slices.BinarySearchFunc(wakeups, next, time.Time.Compare)
				if i < maxWakeups {
					wakeups = slices.Insert(wakeups, i, next)
					wakeups = wakeups[:min(len(wakeups), maxWakeups)]
				}
			}
		}
	}
}

// claim claims up to max records, queues them on jobs and returns how many
// it queued. Outbox errors are logged; the next poll tries again.
func (d *Dispatcher) claim(ctx context.Context, jobs chan<- Record, max int) int {
	if max <= 0 || ctx.Err() != nil {
		return 0
	}
	cctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	recs, err := d.outbox.Claim(cctx, d.clock.Now(), max, d.lease)
	if err != nil {
		d.log.Error("webhook: claiming records failed; retrying at the next poll", "error", err)
	}
	recs = recs[:min(len(recs), max)]
	for _, rec := range recs {
		jobs <- rec // never blocks: jobs has room for a whole batch
	}
	return len(recs)
}

// handle makes one delivery attempt of rec and returns when rec is due
// again if it was rescheduled, else zero.
func (d *Dispatcher) handle(ctx context.Context, rec Record) time.Time {
	// The attempt and the outbox calls after it complete even when Run is
	// stopping.
	base := context.WithoutCancel(ctx)
	log := d.log.With("record", rec.ID, "event_type", rec.Event.Type, "url", redactURL(rec.URL))
	if ctx.Err() != nil {
		// Stopping: release the claim for whoever runs next.
		d.reschedule(base, log, rec)
		return time.Time{}
	}
	if d.clock.Now().Add(d.timeout).After(rec.ClaimedUntil) {
		// The claim would end during the attempt; another instance may
		// take the record then. Leave it to the next claim.
		log.Warn("webhook: claim too close to its end; skipping the record until it can be claimed again",
			"claimed_until", rec.ClaimedUntil)
		return rec.ClaimedUntil
	}
	reason, drop := d.attempt(base, rec, log)
	switch {
	case drop:
		d.count("dropped")
		d.delete(base, log, rec.ID, "deleting a dropped record failed")
		return time.Time{}
	case reason == "":
		d.count("delivered")
		log.Debug("webhook: delivered", "attempt", rec.Attempts+1)
		d.delete(base, log, rec.ID, "deleting a delivered record failed; it will be delivered again")
		return time.Time{}
	}

	now := d.clock.Now()
	rec.Attempts++
	rec.LastError = reason
	if now.Sub(rec.Created) > d.maxAge {
		d.count("buried")
		log.Error("webhook: giving up on a record; buried in the dead-letter area",
			"attempts", rec.Attempts, "reason", reason, "created", rec.Created)
		ctx, cancel := context.WithTimeout(base, d.timeout)
		defer cancel()
		if err := d.outbox.Bury(ctx, rec); err != nil {
			log.Error("webhook: burying a record failed", "error", err)
		}
		return time.Time{}
	}
	d.count("failed")
	rec.NextAttempt = now.Add(d.backoff(rec.Attempts))
	log.Warn("webhook: delivery failed", "attempt", rec.Attempts, "reason", reason, "next_attempt", rec.NextAttempt)
	if !d.reschedule(base, log, rec) {
		return rec.ClaimedUntil // claimable again then
	}
	return rec.NextAttempt
}

// delete deletes the record id, logging msg if that fails.
func (d *Dispatcher) delete(ctx context.Context, log *slog.Logger, id, msg string) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := d.outbox.Delete(ctx, id); err != nil {
		log.Error("webhook: "+msg, "error", err)
	}
}

// reschedule stores rec and releases its claim, and reports whether that
// worked.
func (d *Dispatcher) reschedule(ctx context.Context, log *slog.Logger, rec Record) bool {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	if err := d.outbox.Reschedule(ctx, rec); err != nil {
		log.Error("webhook: rescheduling a record failed; it is retried when its claim ends", "error", err)
		return false
	}
	return true
}

// attempt runs Prepare and delivers rec.Event to rec.URL. It returns the
// reason of a failure ("" on success), or drop if Prepare dropped the
// record.
func (d *Dispatcher) attempt(ctx context.Context, rec Record, log *slog.Logger) (reason string, drop bool) {
	ctx, cancel := context.WithTimeout(ctx, d.timeout)
	defer cancel()
	ev := rec.Event
	if d.prepare != nil {
		ev.Upload.MetaData = maps.Clone(ev.Upload.MetaData)
		ev.Upload.PartialUploads = slices.Clone(ev.Upload.PartialUploads)
		decision, why, err := d.prepare(ctx, &ev)
		switch {
		case err != nil:
			return "prepare: " + err.Error(), false
		case decision == Drop:
			log.Info("webhook: record dropped before delivery", "reason", why)
			return "", true
		case decision == Retry:
			return cmp.Or(why, "prepare: retry"), false
		case decision != Deliver:
			return fmt.Sprintf("prepare: unknown decision %d", decision), false
		}
	}
	body, err := json.Marshal(ev)
	if err != nil {
		return "encoding the event: " + err.Error(), false
	}
	start := d.clock.Now()
	req, err := newRequest(ctx, rec.URL, d.secret, &ev, body, start, d.userAgent)
	if err != nil {
		return err.Error(), false
	}
	resp, err := d.client.Do(req)
	if d.seconds != nil {
		d.seconds.Observe(d.clock.Now().Sub(start).Seconds())
	}
	if err != nil {
		return d.transportReason(err), false
	}
	defer resp.Body.Close()
	if resp.StatusCode >= 200 && resp.StatusCode <= 299 {
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // reuse the connection
		return "", false
	}
	head, _ := io.ReadAll(io.LimitReader(resp.Body, maxReason))
	reason = "HTTP " + strconv.Itoa(resp.StatusCode)
	if s := printable(head); s != "" {
		reason += ": " + s
	}
	return reason, false
}

// transportReason shortens a transport error: *url.Error repeats the
// method and URL, which the log has already.
func (d *Dispatcher) transportReason(err error) string {
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || errors.As(err, &ne) && ne.Timeout() {
		return fmt.Sprintf("timeout after %v", d.timeout)
	}
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	return err.Error()
}

// printable returns b as one line of valid UTF-8 without control
// characters, trimmed.
func printable(b []byte) string {
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if unicode.IsControl(r) {
			return ' '
		}
		return r
	}, s)
	return strings.TrimSpace(s)
}

// backoff returns the wait after the nth failed attempt:
// min(MaxBackoff, MinBackoff<<(n-1)), times 0.5 + 0.5*Rand().
func (d *Dispatcher) backoff(n int) time.Duration {
	b := d.minBackoff
	for i := 1; i < n && b < d.maxBackoff; i++ {
		if b > d.maxBackoff/2 {
			b = d.maxBackoff
			break
		}
		b *= 2
	}
	b = min(b, d.maxBackoff)
	return time.Duration(float64(b) * (0.5 + 0.5*d.rand()))
}

// count increments the deliveries counter for result.
func (d *Dispatcher) count(result string) {
	if d.deliveries != nil {
		d.deliveries.WithLabelValues(result).Inc()
	}
}

// redactURL returns u for logs, with any password and the query removed
// (queries often carry tokens).
func redactURL(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return "(unparsable URL)"
	}
	if p.RawQuery != "" {
		p.RawQuery = "…"
	}
	return p.Redacted()
}
