// Package lifecycle connects the store to the application: it reports
// uploads' lifecycle events (created, finished, terminated, expired) as
// signed webhooks stored durably before the act (internal/webhook), asks
// the pre-finish URL for approval before an upload is assembled, runs the
// janitor that expires abandoned uploads (internal/expiry), and announces
// expiry to clients (Upload-Expires). It implements safestore.Lifecycle;
// the server only builds it.
package lifecycle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/webhook"
)

// Options configure New.
type Options struct {
	// Settings are the webhook and expiry flags.
	Settings config.Lifecycle
	// Backend is where uploads are kept.
	Backend backend.Backend
	// Store is the backend's store without tusgate's checks, for looking
	// uploads up on behalf of no request.
	Store *handler.StoreComposer
	// Redis, if set, is shared by the instances: the webhook outbox lives
	// there, and one janitor is elected through it.
	Redis *redis.Client
	// Active reports whether an upload's lock is held (in this process or,
	// with Redis, in any): the janitor leaves such uploads alone.
	Active func(ctx context.Context, id string) (bool, error)
	// External, if set, has uploads kept outside the tus store (direct
	// uploads to S3): their events go through the same outbox, and the
	// janitor expires them too.
	External   External
	Clock      clock.Clock // [clock.Real{}]
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// External uploads are kept outside the tus store (internal/direct). They
// report their events through Created, Finishing and Terminating like the
// store does; the lifecycle asks them, before each delivery, whether what
// an event reports has happened, and lets the janitor expire them.
type External interface {
	// Owns reports whether the upload with this ID is one of its.
	Owns(id string) bool
	// Prepare decides an event's delivery as Lifecycle does for tus
	// uploads (see webhook.Options.Prepare).
	Prepare(ctx context.Context, ev *webhook.Event) (webhook.Decision, string, error)
	// Inventory lists its uploads for the janitor.
	Inventory() expiry.Inventory
}

// Lifecycle reports events, asks for approval and expires uploads.
type Lifecycle struct {
	o          Options
	log        *slog.Logger
	clock      clock.Clock
	dispatcher *webhook.Dispatcher // nil without --webhook-url
	secret     []byte
	client     *http.Client // for the pre-finish call
	janitor    *expiry.Janitor
	tombstones expiry.Tombstones
	assembly   safestore.AssemblyChecker
}

var _ safestore.Lifecycle = (*Lifecycle)(nil)

// userAgent identifies tusgate to webhook receivers.
const userAgent = "tusgate-webhook/1"

// janitorKey elects one janitor among the instances sharing a Redis.
const janitorKey = "tusgate:janitor"

// New builds the webhook dispatcher and the janitor the settings ask for.
func New(o Options) (*Lifecycle, error) {
	lc := o.Settings
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	if o.Log == nil {
		o.Log = slog.Default()
	}
	l := &Lifecycle{o: o, log: o.Log, clock: o.Clock, secret: []byte(lc.WebhookSecret), assembly: o.Backend.Assembly()}
	l.client = &http.Client{
		Timeout:       lc.WebhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	inv, tombstones := o.Backend.Expiry()
	l.tombstones = tombstones
	if lc.TombstoneTTL == 0 {
		l.tombstones = nil // expired uploads answer 404 at once
	}
	out := o.Backend.Outbox()
	if o.Redis != nil {
		// Shared by every instance, and faster to poll than a bucket.
		out = &webhook.RedisOutbox{Client: o.Redis, Prefix: "tusgate:webhook:"}
	}

	if len(lc.WebhookURLs) > 0 {
		d, err := webhook.New(webhook.Options{
			Outbox:  out,
			URLs:    lc.WebhookURLs,
			Secret:  l.secret,
			Clock:   l.clock,
			Log:     o.Log.With("component", "webhook"),
			Timeout: lc.WebhookTimeout,
			// A record claimed by a killed instance waits this long.
			Lease:      lc.WebhookTimeout + 5*time.Second,
			Prepare:    l.prepare,
			Registerer: o.Registerer,
			UserAgent:  userAgent,
		})
		if err != nil {
			return nil, fmt.Errorf("setting up webhooks: %w", err)
		}
		l.dispatcher = d
	}

	if lc.UploadTTL > 0 || lc.FinishedInfoTTL > 0 {
		jopt := expiry.Options{
			Inventory:       inv,
			Tombstones:      l.tombstones,
			Clock:           l.clock,
			Log:             o.Log.With("component", "janitor"),
			TTL:             lc.UploadTTL,
			TombstoneTTL:    lc.TombstoneTTL,
			FinishedInfoTTL: lc.FinishedInfoTTL,
			Active:          o.Active,
			Expired:         l.expired,
			Registerer:      o.Registerer,
		}
		if o.External != nil {
			jopt.More = []expiry.Inventory{o.External.Inventory()}
		}
		if o.Redis != nil {
			jopt.Elect = electJanitor(o.Redis, lc.UploadTTL)
		}
		j, err := expiry.New(jopt)
		if err != nil {
			return nil, fmt.Errorf("setting up upload expiry: %w", err)
		}
		l.janitor = j
	}
	return l, nil
}

// Reports tells whether the store should report events here: webhooks or
// expiry are configured.
func (l *Lifecycle) Reports() bool {
	return l.o.Settings.WebhooksEnabled() || l.o.Settings.UploadTTL > 0
}

// ExpiredCheck returns the check for safestore.Options.Expired: whether an
// unknown upload expired recently (410 instead of 404), or nil when expired
// uploads are not remembered.
func (l *Lifecycle) ExpiredCheck() func(ctx context.Context, id string) (bool, error) {
	if l.janitor == nil || l.o.Settings.UploadTTL == 0 || l.tombstones == nil {
		return nil
	}
	return l.isExpired
}

// Run delivers webhooks and runs the janitor until ctx ends.
func (l *Lifecycle) Run(ctx context.Context) {
	done := make(chan struct{}, 2)
	n := 0
	if l.dispatcher != nil {
		n++
		go func() { l.dispatcher.Run(ctx); done <- struct{}{} }()
	}
	if l.janitor != nil {
		n++
		go func() { l.janitor.Run(ctx); done <- struct{}{} }()
	}
	for range n {
		<-done
	}
}

// electJanitor lets one instance per interval run the janitor: the first to
// set the key with a lease shorter than the interval.
func electJanitor(client *redis.Client, ttl time.Duration) func(context.Context) (bool, error) {
	lease := min(max(ttl/20, time.Second), 5*time.Minute)
	return func(ctx context.Context) (bool, error) {
		return client.SetNX(ctx, janitorKey, "1", lease).Result()
	}
}

// isExpired reports whether a tombstone for id is younger than the
// tombstone TTL.
func (l *Lifecycle) isExpired(ctx context.Context, id string) (bool, error) {
	at, ok, err := l.tombstones.Get(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	return l.clock.Now().Before(at.Add(l.o.Settings.TombstoneTTL)), nil
}

// event describes info for webhooks. The owner comes from the metadata
// tusgate set at creation; other reserved keys are left out.
func (l *Lifecycle) event(typ, id string, info handler.FileInfo) webhook.Event {
	ev := webhook.Event{ID: id, Type: typ, Time: l.clock.Now().UTC(), Upload: webhook.Upload{
		ID:             info.ID,
		Size:           info.Size,
		SizeIsDeferred: info.SizeIsDeferred,
		Offset:         info.Offset,
		IsPartial:      info.IsPartial,
		IsFinal:        info.IsFinal,
		PartialUploads: info.PartialUploads,
		MetaData:       map[string]string(hooks.StripReserved(info.MetaData)),
	}}
	if sub := info.MetaData[hooks.MetaOwner]; sub != "" {
		ev.Upload.Owner = &webhook.Owner{Issuer: info.MetaData[hooks.MetaIssuer], Subject: sub}
	}
	// Without the object's version, the description costs no request.
	ev.Upload.Storage, _ = l.o.Backend.Storage(context.Background(), info, false)
	return ev
}

func (l *Lifecycle) enqueue(ctx context.Context, ev webhook.Event) error {
	if l.dispatcher == nil {
		return nil
	}
	if err := l.dispatcher.Enqueue(ctx, ev); err != nil {
		return fmt.Errorf("storing the %s webhook: %w", ev.Type, err)
	}
	return nil
}

// Created reports a new upload.
func (l *Lifecycle) Created(ctx context.Context, info handler.FileInfo) error {
	ev := l.event(webhook.TypeCreated, webhook.StableEventID("created", info.ID), info)
	if ttl := l.o.Settings.UploadTTL; ttl > 0 {
		at := ev.Time.Add(ttl)
		ev.Upload.Expires = &at
	}
	return l.enqueue(ctx, ev)
}

// Finishing asks the pre-finish URL, if any, then stores the
// upload.finished event. The event is stored before the upload is
// assembled, so that no crash can lose it; its delivery waits until the
// object exists (see prepare).
func (l *Lifecycle) Finishing(ctx context.Context, info handler.FileInfo) error {
	finishedFrom(ctx).set()
	// Partial uploads are asked about too (with is_partial set): each
	// becomes an object of its own in the bucket.
	if url := l.o.Settings.PreFinishURL; url != "" {
		if err := l.approve(ctx, url, info); err != nil {
			return err
		}
	}
	return l.enqueue(ctx, l.event(webhook.TypeFinished, webhook.StableEventID("finished", info.ID), info))
}

// Terminating stores the upload.terminated event before the upload is
// deleted; it is delivered once the upload is gone.
func (l *Lifecycle) Terminating(ctx context.Context, info handler.FileInfo) error {
	return l.enqueue(ctx, l.event(webhook.TypeTerminated, webhook.StableEventID("terminated", info.ID), info))
}

// expired stores the upload.expired event before the janitor deletes the
// upload.
func (l *Lifecycle) expired(ctx context.Context, u expiry.Upload) error {
	ev := l.event(webhook.TypeExpired, webhook.StableEventID("expired", u.ID), u.Info)
	return l.enqueue(ctx, ev)
}

// prepare checks, before each delivery, that what an event reports has
// happened: a finished upload's object exists (and its ETag is added), a
// terminated or expired upload is gone. Events are stored before the act,
// so that a crash in between cannot lose them.
func (l *Lifecycle) prepare(ctx context.Context, ev *webhook.Event) (webhook.Decision, string, error) {
	if x := l.o.External; x != nil && x.Owns(ev.Upload.ID) {
		return x.Prepare(ctx, ev)
	}
	switch ev.Type {
	case webhook.TypeFinished:
		info, err := l.lookup(ctx, ev.Upload.ID)
		if errors.Is(err, handler.ErrNotFound) {
			return webhook.Drop, "the upload no longer exists", nil
		}
		if err != nil {
			return webhook.Retry, "", err
		}
		state := safestore.Assembled
		_, recorded := l.assembly.(safestore.AssemblyRecorder)
		if l.assembly != nil && (!info.IsFinal || recorded) {
			if state, err = l.assembly.Assembly(ctx, info); err != nil {
				return webhook.Retry, "", err
			}
		}
		switch state {
		case safestore.NotAssembled:
			return webhook.Retry, "the upload is not assembled yet", nil
		case safestore.Gone:
			// While S3 completes the multipart upload, neither it nor the
			// object may be visible for a moment.
			if l.clock.Now().Sub(ev.Time) < time.Minute {
				return webhook.Retry, "the upload is being assembled", nil
			}
			return webhook.Drop, "the upload's data is gone", nil
		}
		if since, ok := objsha.Pending(info); ok && l.clock.Now().Before(since.Add(shaWait(info.Size))) {
			return webhook.Retry, "the upload's SHA-256 is being computed from its object", nil
		}
		if want, stated, _ := objsha.Expected(info); stated {
			// Compared before assembly, except on S3 after a lost running
			// state: then safestore deletes it after assembly when it does
			// not match (or could not be computed), and until then (or if
			// that failed) it must not be announced.
			if sum, ok := objsha.Sum(info); !ok || !objsha.Equal(sum, want) {
				return webhook.Drop, "the upload does not have the SHA-256 its Repr-Digest stated, or it is not known", nil
			}
		}
		st, err := l.o.Backend.Storage(ctx, info, true)
		if err != nil {
			return webhook.Retry, "", err
		}
		ev.Upload.Storage = st
	case webhook.TypeTerminated, webhook.TypeExpired:
		// Both are stored before the act; deliver only what happened.
		info, err := l.lookup(ctx, ev.Upload.ID)
		if err == nil {
			// s3store reports an upload whose multipart upload is gone as
			// complete, which it also is midway through the janitor's
			// removal: only an assembled object means "finished instead".
			if ev.Type == webhook.TypeExpired && !info.SizeIsDeferred && info.Offset == info.Size && l.assembly != nil {
				state, err := l.assembly.Assembly(ctx, info)
				if err != nil {
					return webhook.Retry, "", err
				}
				if state == safestore.Assembled {
					return webhook.Drop, "the upload was finished instead", nil
				}
			}
			return webhook.Retry, "the upload still exists", nil
		}
		if !errors.Is(err, handler.ErrNotFound) {
			return webhook.Retry, "", err
		}
		if l.tombstones != nil {
			_, expired, err := l.tombstones.Get(ctx, ev.Upload.ID)
			if err != nil {
				return webhook.Retry, "", err
			}
			if expired != (ev.Type == webhook.TypeExpired) {
				return webhook.Drop, "the upload ended otherwise", nil
			}
		}
	}
	return webhook.Deliver, "", nil
}

// shaWait is how long an upload.finished event waits for the SHA-256 of an
// upload of size bytes that is being computed from its object (its running
// state was lost, or it was concatenated): as long as reading it at 50 MB/s
// takes, and at least ten minutes. An instance that died meanwhile leaves
// it pending for good; the event then goes without it.
func shaWait(size int64) time.Duration {
	return max(10*time.Minute, time.Duration(size/(50<<20))*time.Second)
}

// lookup reads an upload's info from the unwrapped store.
func (l *Lifecycle) lookup(ctx context.Context, id string) (handler.FileInfo, error) {
	up, err := l.o.Store.Core.GetUpload(ctx, id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(ctx)
}

// finishedMark records, per request, that the upload was finished, so that
// the response does not announce an expiry (see UploadExpires).
type finishedMark struct{ done bool }

type finishedKey struct{}

func finishedFrom(ctx context.Context) *finishedMark {
	m, _ := ctx.Value(finishedKey{}).(*finishedMark)
	return m
}

func (m *finishedMark) set() {
	if m != nil {
		m.done = true
	}
}

// ExpiresAt returns when the unfinished upload id expires unless it is
// written to before, and false if it does not expire (no --upload-ttl, or
// not an unfinished upload). It reads the upload from storage.
func (l *Lifecycle) ExpiresAt(ctx context.Context, id string) (time.Time, bool, error) {
	if l.janitor == nil {
		return time.Time{}, false, nil
	}
	return l.janitor.ExpiresAt(ctx, id)
}

// ExpiresAtFunc looks up when an unfinished upload expires; see
// Lifecycle.ExpiresAt.
type ExpiresAtFunc func(ctx context.Context, id string) (time.Time, bool, error)

// UploadExpires implements the announcing half of tus's expiration
// extension: creations and PATCHes of unfinished uploads answer with
// Upload-Expires (idle expiry slides with every write), so does a HEAD of
// an unfinished upload (when expiresAt, which reads storage, says), and
// OPTIONS lists "expiration" among the extensions.
func UploadExpires(ttl time.Duration, now func() time.Time, expiresAt ExpiresAtFunc, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mark := &finishedMark{}
		r = r.WithContext(context.WithValue(r.Context(), finishedKey{}, mark))
		next.ServeHTTP(&expiresWriter{ResponseWriter: w, r: r, mark: mark, ttl: ttl, now: now, expiresAt: expiresAt}, r)
	})
}

type expiresWriter struct {
	http.ResponseWriter
	r         *http.Request
	mark      *finishedMark
	ttl       time.Duration
	now       func() time.Time
	expiresAt ExpiresAtFunc
	wrote     bool
}

func (w *expiresWriter) WriteHeader(status int) {
	if !w.wrote && status >= 200 {
		w.wrote = true
		h := w.Header()
		if ext := h.Get("Tus-Extension"); ext != "" {
			h.Set("Tus-Extension", ext+",expiration")
		}
		write := (w.r.Method == http.MethodPost && status == http.StatusCreated) ||
			(w.r.Method == http.MethodPatch && status == http.StatusNoContent)
		if write && !w.mark.done && h.Get("Upload-Concat") != "final" {
			h.Set("Upload-Expires", w.now().Add(w.ttl).UTC().Format(http.TimeFormat))
		}
		switch {
		case w.r.Method == http.MethodHead && status == http.StatusOK && unfinished(h):
			w.lookupExpires(h)
		case w.r.Method == http.MethodPatch && status >= 400 && status < 500 && w.readUnfinished():
			// tus: "every PATCH response" carries it while the upload is
			// going to expire, refusals too (a 409 names the offset to go
			// on from).
			w.lookupExpires(h)
		}
	}
	w.ResponseWriter.WriteHeader(status)
}

// unfinished tells from a tus 1.0 HEAD answer (tusd answers IETF-draft
// HEADs with 204) whether the upload is unfinished: its length is deferred
// or its offset short of it.
func unfinished(h http.Header) bool {
	return h.Get("Upload-Defer-Length") == "1" || h.Get("Upload-Offset") != h.Get("Upload-Length")
}

// readUnfinished reports whether the store read the request's upload, and
// found it unfinished: tusd refuses some PATCHes before it looks the
// upload up (and so before the caller's ownership is checked).
func (w *expiresWriter) readUnfinished() bool {
	info, ok := lastinfo.Get(w.r.Context(), strings.Trim(w.r.URL.Path, "/"))
	return ok && (info.SizeIsDeferred || info.Offset < info.Size)
}

// lookupExpires sets Upload-Expires on an answer about an upload that
// wrote nothing (a HEAD, a refused PATCH) from the upload's last activity
// in storage, which the janitor goes by. If the upload is not an
// unfinished one, or storage cannot tell, the answer goes without.
func (w *expiresWriter) lookupExpires(h http.Header) {
	if w.expiresAt == nil {
		return
	}
	// The path is relative to the base path; tusd found the upload (no
	// 404), so the ID is valid and the caller may see it.
	at, ok, err := w.expiresAt(w.r.Context(), strings.Trim(w.r.URL.Path, "/"))
	if err == nil && ok {
		h.Set("Upload-Expires", at.UTC().Format(http.TimeFormat))
	}
}

func (w *expiresWriter) Write(b []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection (tusd sets
// read deadlines through it).
func (w *expiresWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
