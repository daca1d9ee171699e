// Package expiry implements the tus expiration extension for tusgate.
//
// An unfinished upload expires once it has been idle for a TTL: every write
// (a new part, a .part tail, a rewritten .info) moves its expiry. A janitor,
// safe to run on every instance at once, removes every trace of expired
// uploads and leaves a small tombstone behind, so that requests for an
// expired upload can be answered with 410 Gone for a while (and 404 after).
// It also aborts orphan S3 multipart uploads (those without a .info, which a
// crash between creating the multipart upload and writing its .info leaves
// behind) and, if asked, removes the .info of finished uploads after a TTL.
//
// Storage is seen through two small interfaces, Inventory and Tombstones,
// each implemented for S3 (tusd's s3store layout) and Disk (tusd's
// filestore layout). tusgate's own files live in a reserved folder,
// ".tusgate/", that no upload ID can start with; listings skip it and every
// other path segment starting with ".".
package expiry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/clock"
)

// Upload is an unfinished upload as the janitor sees it.
type Upload struct {
	ID   string           // tus upload ID (S3: "<objectId>+<multipartId>")
	Info handler.FileInfo // from .info, with Offset set to the bytes stored
	// LastActivity is the latest of: .info written, multipart upload
	// initiated, any part or .part written (S3); .info or data file
	// modified (disk).
	LastActivity time.Time
}

// Orphan is storage no upload refers to: an S3 multipart upload without
// .info, or a disk data file without .info.
type Orphan struct {
	Key         string    // S3 object key, or data file path relative to Disk.Dir ("/"-separated)
	MultipartID string    // S3 multipart upload ID; "" on disk
	Since       time.Time // multipart upload initiated, or data file modified
}

// Inventory is a store's view for the janitor. Implementations: S3 and Disk.
type Inventory interface {
	// Unfinished calls fn for every unfinished upload.
	Unfinished(ctx context.Context, fn func(Upload) error) error
	// Orphans calls fn for orphans older than before.
	Orphans(ctx context.Context, before time.Time, fn func(Orphan) error) error
	// FinishedInfos calls fn with the upload ID of every finished upload
	// whose .info was last written before before.
	FinishedInfos(ctx context.Context, before time.Time, fn func(id string) error) error
	// Remove deletes every trace of an unfinished upload (S3: abort the
	// multipart upload, delete key, key.info and key.part; disk: data file
	// and .info). Missing pieces are not errors.
	Remove(ctx context.Context, u Upload) error
	// RemoveOrphan deletes an orphan reported by Orphans.
	RemoveOrphan(ctx context.Context, o Orphan) error
	// RemoveInfo deletes a finished upload's .info (never the object itself).
	RemoveInfo(ctx context.Context, id string) error
	// Lookup reads one upload as Unfinished does, and false if id is not an
	// unfinished upload.
	Lookup(ctx context.Context, id string) (Upload, bool, error)
}

// Tombstones remember expired uploads.
type Tombstones interface {
	// Put records that id expired at expired.
	Put(ctx context.Context, id string, expired time.Time) error
	// Get reports when id expired, if a tombstone exists.
	Get(ctx context.Context, id string) (expired time.Time, ok bool, err error)
	// Sweep deletes tombstones written before before and returns how many.
	Sweep(ctx context.Context, before time.Time) (int, error)
}

// Defaults of Options.
const (
	DefaultTombstoneTTL = 7 * 24 * time.Hour
	DefaultOrphanMinAge = time.Hour
)

// Options configure a Janitor. Zero values take the defaults in brackets.
type Options struct {
	Inventory Inventory // required
	// More are further inventories that go through the same passes: uploads
	// kept beside the store's, such as direct uploads to S3
	// (internal/direct).
	More       []Inventory
	Tombstones Tombstones  // nil: no tombstones (404 at once)
	Clock      clock.Clock // [clock.Real{}]
	Log        *slog.Logger
	// TTL: unfinished uploads idle longer than this expire. 0 disables
	// everything but the removal of finished uploads' .info
	// (FinishedInfoTTL): no expiry, no orphan removal, no tombstone sweep.
	TTL time.Duration
	// TombstoneTTL is how long tombstones are kept [DefaultTombstoneTTL].
	TombstoneTTL time.Duration
	// FinishedInfoTTL, if not 0, is how long the .info of a finished upload
	// is kept after it was last written.
	FinishedInfoTTL time.Duration
	// OrphanMinAge: orphans younger than this are left alone, as they may be
	// uploads being created [DefaultOrphanMinAge, but at most TTL].
	OrphanMinAge time.Duration
	// Interval between runs [TTL/10 (or FinishedInfoTTL/10 without TTL),
	// at least 1s, at most 10m].
	Interval time.Duration
	// Active reports whether an upload is being written right now (its lock
	// is held, on any instance); active uploads are never expired. nil:
	// never active.
	Active func(ctx context.Context, id string) (bool, error)
	// Expired is called for each upload about to be removed, before its
	// tombstone is written and before removal; an error skips the upload
	// this run (it is retried next run). Used to enqueue the upload.expired
	// webhook durably. It may be called more than once for one upload (a
	// failed removal, or two janitors at once).
	Expired func(ctx context.Context, u Upload) error
	// Elect, if set, is asked before each run of Run; false skips the run
	// (another instance is the janitor).
	Elect func(ctx context.Context) (bool, error)
	// Registerer, if set, receives the metrics tusgate_janitor_expired_total,
	// tusgate_janitor_orphans_removed_total,
	// tusgate_janitor_infos_removed_total, tusgate_janitor_errors_total and
	// tusgate_janitor_last_run_timestamp_seconds.
	Registerer prometheus.Registerer
}

// Janitor expires uploads and cleans up after them. It is safe for
// concurrent use, and several janitors (one per instance) may work on the
// same store at once.
type Janitor struct {
	o          Options
	m          metrics
	firstDelay func(time.Duration) time.Duration // random delay before Run's first pass
}

// Report says what one pass did.
type Report struct {
	Expired    int // unfinished uploads removed
	Orphans    int // orphans removed
	Infos      int // .info of finished uploads removed
	Tombstones int // tombstones swept
	Errors     int // failed items (and failed listings)
}

// New checks opts, fills in defaults and returns the janitor. It reports
// every problem with opts at once.
func New(opts Options) (*Janitor, error) {
	var errs []error
	if opts.Inventory == nil {
		errs = append(errs, errors.New("expiry: Options.Inventory is required"))
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{
		{"TTL", opts.TTL}, {"TombstoneTTL", opts.TombstoneTTL}, {"FinishedInfoTTL", opts.FinishedInfoTTL},
		{"OrphanMinAge", opts.OrphanMinAge}, {"Interval", opts.Interval},
	} {
		if d.v < 0 {
			errs = append(errs, fmt.Errorf("expiry: Options.%s must not be negative (got %v)", d.name, d.v))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if opts.Clock == nil {
		opts.Clock = clock.Real{}
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	if opts.TombstoneTTL == 0 {
		opts.TombstoneTTL = DefaultTombstoneTTL
	}
	if opts.OrphanMinAge == 0 {
		opts.OrphanMinAge = min(DefaultOrphanMinAge, opts.TTL)
	}
	if opts.Interval == 0 {
		base := opts.TTL
		if base == 0 {
			base = opts.FinishedInfoTTL
		}
		opts.Interval = min(max(base/10, time.Second), 10*time.Minute)
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, err
	}
	return &Janitor{o: opts, m: m, firstDelay: rand.N[time.Duration]}, nil
}

// Expires returns when an upload whose last activity was at last expires
// (last + TTL), and false if expiry is disabled.
func (j *Janitor) Expires(last time.Time) (time.Time, bool) {
	if j.o.TTL == 0 {
		return time.Time{}, false
	}
	return last.Add(j.o.TTL), true
}

// ExpiresAt returns when the unfinished upload id expires unless it is
// written to before (its last activity + TTL; the janitor removes it on its
// first pass after that), and false if it does not expire: expiry is
// disabled, or id is not an unfinished upload.
func (j *Janitor) ExpiresAt(ctx context.Context, id string) (time.Time, bool, error) {
	if j.o.TTL == 0 {
		return time.Time{}, false, nil
	}
	u, ok, err := j.o.Inventory.Lookup(ctx, id)
	if err != nil || !ok {
		return time.Time{}, false, err
	}
	last, err := j.activity(ctx, u)
	if err != nil {
		return time.Time{}, false, err
	}
	return last.Add(j.o.TTL), true, nil
}

// activity is when u was last active. A final upload that waits for
// partial uploads (tus concatenation-unfinished) is as active as the most
// recently written of them: it must not expire while they are being
// uploaded, and does not outlive them by more than the TTL.
func (j *Janitor) activity(ctx context.Context, u Upload) (time.Time, error) {
	last := u.LastActivity
	if !u.Info.IsFinal {
		return last, nil
	}
	for _, id := range u.Info.PartialUploads {
		p, ok, err := j.o.Inventory.Lookup(ctx, id)
		if err != nil {
			return last, err
		}
		if ok {
			last = latest(last, p.LastActivity)
		}
	}
	return last, nil
}

// enabled reports whether a pass has anything to do.
func (j *Janitor) enabled() bool { return j.o.TTL > 0 || j.o.FinishedInfoTTL > 0 }

// RunOnce does one pass and reports what it did: each unfinished upload
// idle for TTL or more that is not Active is handed to Expired, gets a
// tombstone (written now) and is removed; then orphans older than
// OrphanMinAge are removed; then the .info of finished uploads older than
// FinishedInfoTTL (if set); then tombstones older than TombstoneTTL are
// swept. A failure on one item is logged and counted and the pass goes on;
// the returned error joins the failures (the first few of them).
func (j *Janitor) RunOnce(ctx context.Context) (Report, error) {
	var (
		r    Report
		errs errList
		now  = j.o.Clock.Now()
		log  = j.o.Log
	)
	fail := func(err error, msg string, args ...any) {
		r.Errors++
		j.m.errors.Inc()
		errs.add(err)
		log.Warn(msg, append(args, "err", err)...)
	}
	listFailed := func(what string, err error) {
		if err == nil || ctx.Err() != nil {
			return
		}
		// A listing error may join the failures of several items.
		n := countErrors(err)
		r.Errors += n - 1
		j.m.errors.Add(float64(n - 1))
		fail(err, "janitor: trouble listing "+what)
	}

	for _, inv := range append([]Inventory{j.o.Inventory}, j.o.More...) {
		j.pass(ctx, inv, now, &r, fail, listFailed)
	}

	if j.o.TTL > 0 && j.o.Tombstones != nil && ctx.Err() == nil {
		n, err := j.o.Tombstones.Sweep(ctx, now.Add(-j.o.TombstoneTTL))
		r.Tombstones = n
		listFailed("tombstones", err)
	}

	j.m.lastRun.Set(float64(now.UnixNano()) / 1e9)
	j.m.runs.Inc()
	level := slog.LevelDebug
	if r != (Report{}) {
		level = slog.LevelInfo
	}
	log.Log(ctx, level, "janitor pass done", "expired", r.Expired, "orphans", r.Orphans,
		"infos", r.Infos, "tombstones", r.Tombstones, "errors", r.Errors)
	if err := ctx.Err(); err != nil {
		errs.add(err)
	}
	return r, errs.err()
}

// pass expires the idle uploads of one inventory, removes its orphans and
// the .info of its finished uploads.
func (j *Janitor) pass(ctx context.Context, inv Inventory, now time.Time, r *Report, fail func(err error, msg string, args ...any), listFailed func(what string, err error)) {
	log := j.o.Log
	if j.o.TTL > 0 {
		err := inv.Unfinished(ctx, func(u Upload) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if u.Info.IsFinal {
				last, err := j.activity(ctx, u)
				if err != nil {
					fail(err, "janitor: cannot read the partial uploads of a final upload; not expiring it", "id", u.ID)
					return nil
				}
				u.LastActivity = last
			}
			if u.LastActivity.Add(j.o.TTL).After(now) {
				return nil
			}
			if j.o.Active != nil {
				active, err := j.o.Active(ctx, u.ID)
				if err != nil {
					fail(err, "janitor: cannot tell whether an upload is active; not expiring it", "id", u.ID)
					return nil
				}
				if active {
					return nil
				}
			}
			if j.o.Expired != nil {
				if err := j.o.Expired(ctx, u); err != nil {
					fail(err, "janitor: expiry callback failed; upload kept until the next run", "id", u.ID)
					return nil
				}
			}
			if j.o.Tombstones != nil {
				if err := j.o.Tombstones.Put(ctx, u.ID, now); err != nil {
					fail(err, "janitor: writing tombstone failed; upload kept until the next run", "id", u.ID)
					return nil
				}
			}
			if err := inv.Remove(ctx, u); err != nil {
				fail(err, "janitor: removing expired upload failed", "id", u.ID)
				return nil
			}
			r.Expired++
			j.m.expired.Inc()
			log.Info("upload expired", "id", u.ID, "last_activity", u.LastActivity)
			return nil
		})
		listFailed("unfinished uploads", err)

		err = inv.Orphans(ctx, now.Add(-j.o.OrphanMinAge), func(o Orphan) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := inv.RemoveOrphan(ctx, o); err != nil {
				fail(err, "janitor: removing orphan failed", "key", o.Key, "multipart_id", o.MultipartID)
				return nil
			}
			r.Orphans++
			j.m.orphans.Inc()
			log.Info("orphan removed", "key", o.Key, "multipart_id", o.MultipartID, "since", o.Since)
			return nil
		})
		listFailed("orphans", err)
	}

	if j.o.FinishedInfoTTL > 0 {
		err := inv.FinishedInfos(ctx, now.Add(-j.o.FinishedInfoTTL), func(id string) error {
			if err := ctx.Err(); err != nil {
				return err
			}
			if err := inv.RemoveInfo(ctx, id); err != nil {
				fail(err, "janitor: removing .info of finished upload failed", "id", id)
				return nil
			}
			r.Infos++
			j.m.infos.Inc()
			log.Debug("removed .info of finished upload", "id", id)
			return nil
		})
		listFailed("finished uploads", err)
	}
}

// Run calls RunOnce every Interval until ctx ends, the first time after a
// random delay in [0, Interval) so that instances spread out. With Elect
// set, a run happens only if Elect says so. When neither TTL nor
// FinishedInfoTTL is set there is nothing to do and Run just waits for ctx.
func (j *Janitor) Run(ctx context.Context) {
	if !j.enabled() {
		<-ctx.Done()
		return
	}
	delay := j.firstDelay(j.o.Interval)
	for {
		c, stop := j.o.Clock.After(delay)
		select {
		case <-ctx.Done():
			stop()
			return
		case <-c:
		}
		delay = j.o.Interval
		if j.o.Elect != nil {
			ok, err := j.o.Elect(ctx)
			if err != nil {
				if ctx.Err() == nil {
					j.o.Log.Warn("janitor: election failed; skipping this run", "err", err)
				}
				continue
			}
			if !ok {
				continue
			}
		}
		// Failures are logged and counted by RunOnce.
		_, _ = j.RunOnce(ctx)
	}
}

// metrics are the janitor's Prometheus metrics.
type metrics struct {
	runs, expired, orphans, infos, errors prometheus.Counter
	lastRun                               prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		runs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_janitor_runs_total",
			Help: "Janitor passes completed by this instance.",
		}),
		expired: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_janitor_expired_total",
			Help: "Unfinished uploads removed because they expired.",
		}),
		orphans: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_janitor_orphans_removed_total",
			Help: "Orphans removed: S3 multipart uploads or disk data files without .info.",
		}),
		infos: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_janitor_infos_removed_total",
			Help: "The .info objects of finished uploads removed after the finished-info TTL.",
		}),
		errors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_janitor_errors_total",
			Help: "Janitor failures: items it could not handle and listings that failed.",
		}),
		lastRun: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "tusgate_janitor_last_run_timestamp_seconds",
			Help: "When the janitor's last pass started (Unix time).",
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.runs, m.expired, m.orphans, m.infos, m.errors, m.lastRun} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("registering janitor metrics: %w", err)
		}
	}
	return m, nil
}

// maxJoined bounds how many errors errList keeps: a pass over a broken store
// may fail for every one of a million uploads.
const maxJoined = 10

// errList collects errors, keeping the first maxJoined and counting all.
type errList struct {
	errs []error
	n    int
}

func (l *errList) add(err error) {
	if err == nil {
		return
	}
	l.n++
	if len(l.errs) < maxJoined {
		l.errs = append(l.errs, err)
	}
}

// err returns nil or an *itemErrors.
func (l *errList) err() error {
	if l.n == 0 {
		return nil
	}
	return &itemErrors{errs: l.errs, n: l.n}
}

// itemErrors are the failures of several items.
type itemErrors struct {
	errs []error // the first few
	n    int     // how many in all
}

func (e *itemErrors) Error() string {
	msg := errors.Join(e.errs...).Error()
	if more := e.n - len(e.errs); more > 0 {
		msg += fmt.Sprintf("\n(and %d more errors)", more)
	}
	return msg
}

func (e *itemErrors) Unwrap() []error { return e.errs }

// countErrors tells how many failures err stands for.
func countErrors(err error) int {
	switch e := err.(type) {
	case nil:
		return 0
	case *itemErrors:
		return e.n
	case interface{ Unwrap() []error }:
		n := 0
		for _, x := range e.Unwrap() {
			n += countErrors(x)
		}
		return max(n, 1)
	}
	return 1
}

// validRel reports whether rel ("/"-separated) can be an upload ID or
// object ID: non-empty segments, none starting with "." (which also rules
// out ".." and tusgate's reserved ".tusgate" folder).
func validRel(rel string) bool {
	if rel == "" || strings.ContainsRune(rel, 0) {
		return false
	}
	for seg := range strings.SplitSeq(rel, "/") {
		if seg == "" || seg[0] == '.' {
			return false
		}
	}
	return true
}

// latest returns the later of a and b.
func latest(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
