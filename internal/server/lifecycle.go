package server

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"path/filepath"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/s3backend"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/webhook"
)

// lifecycle connects the store to the application: it reports uploads'
// lifecycle events as signed webhooks (safestore.Lifecycle), asks the
// pre-finish URL for approval, and expires abandoned uploads.
type lifecycle struct {
	s          *Server
	clock      clock.Clock
	dispatcher *webhook.Dispatcher // nil without --webhook-url
	secret     []byte
	client     *http.Client // for the pre-finish call
	janitor    *expiry.Janitor
	tombstones expiry.Tombstones
	assembly   safestore.AssemblyChecker
}

// userAgent identifies tusgate to webhook receivers.
const userAgent = "tusgate-webhook/1"

// janitorKey elects one janitor among the instances sharing a Redis.
const janitorKey = "tusgate:janitor"

// setupLifecycle builds webhooks and the janitor for the unwrapped store
// s.store and returns the safestore options that route events to them.
func (s *Server) setupLifecycle(dataDir string, reg prometheus.Registerer, opt *safestore.Options) error {
	lc := s.cfg.Lifecycle
	l := &lifecycle{s: s, clock: clock.Real{}, secret: []byte(lc.WebhookSecret), assembly: opt.Assembly}
	l.client = &http.Client{
		Timeout:       lc.WebhookTimeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}

	var (
		inv expiry.Inventory
		out webhook.Outbox
	)
	if b := s.s3; b != nil {
		st := &expiry.S3{Client: janitorClient{Client: b.Client, objects: b.Objects}, Bucket: b.Bucket, Prefix: b.Store.ObjectPrefix}
		inv, l.tombstones = st, st
		out = &webhook.S3Outbox{Client: b.Objects, Bucket: b.Bucket, Prefix: b.Prefix() + layout.InternalFolder + "/webhooks/"}
	} else {
		d := &expiry.Disk{Dir: dataDir}
		inv, l.tombstones = d, d
		out = &webhook.DirOutbox{Dir: filepath.Join(dataDir, layout.InternalFolder, "webhooks")}
	}
	if lc.TombstoneTTL == 0 {
		l.tombstones = nil // expired uploads answer 404 at once
	}
	if s.redis != nil {
		// Shared by every instance, and faster to poll than a bucket.
		out = &webhook.RedisOutbox{Client: s.redis, Prefix: "tusgate:webhook:"}
	}

	if len(lc.WebhookURLs) > 0 {
		d, err := webhook.New(webhook.Options{
			Outbox:  out,
			URLs:    lc.WebhookURLs,
			Secret:  l.secret,
			Clock:   l.clock,
			Log:     s.log.With("component", "webhook"),
			Timeout: lc.WebhookTimeout,
			// A record claimed by a killed instance waits this long.
			Lease:      lc.WebhookTimeout + 5*time.Second,
			Prepare:    l.prepare,
			Registerer: reg,
			UserAgent:  userAgent,
		})
		if err != nil {
			return fmt.Errorf("setting up webhooks: %w", err)
		}
		l.dispatcher = d
	}

	if lc.UploadTTL > 0 || lc.FinishedInfoTTL > 0 {
		jopt := expiry.Options{
			Inventory:       inv,
			Tombstones:      l.tombstones,
			Clock:           l.clock,
			Log:             s.log.With("component", "janitor"),
			TTL:             lc.UploadTTL,
			TombstoneTTL:    lc.TombstoneTTL,
			FinishedInfoTTL: lc.FinishedInfoTTL,
			Active:          s.active,
			Expired:         l.expired,
			Registerer:      reg,
		}
		if s.redis != nil {
			jopt.Elect = electJanitor(s.redis, lc.UploadTTL)
		}
		j, err := expiry.New(jopt)
		if err != nil {
			return fmt.Errorf("setting up upload expiry: %w", err)
		}
		l.janitor = j
		if lc.UploadTTL > 0 && lc.TombstoneTTL > 0 {
			opt.Expired = l.isExpired
		}
	}
	if lc.WebhooksEnabled() || lc.UploadTTL > 0 {
		opt.Lifecycle = l
	}
	s.lifecycle = l
	return nil
}

// janitorClient is the janitor's S3 client: plain reads, so that its
// listings do not run the guarded client's part-list repairs (which must
// only run under an upload's lock), and writes (tombstones) through the
// guarded client, which adds the configured encryption.
type janitorClient struct {
	*s3.Client
	objects *s3backend.GuardedClient
}

func (c janitorClient) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return c.objects.PutObject(ctx, in, opts...)
}

// run delivers webhooks and runs the janitor until ctx ends.
func (l *lifecycle) run(ctx context.Context) {
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

// active reports whether an upload's lock is held here or, with Redis, by
// any instance.
func (s *Server) active(ctx context.Context, id string) (bool, error) {
	if s.held.Has(id) {
		return true, nil
	}
	if s.redisLocker != nil {
		return s.redisLocker.Held(ctx, id)
	}
	return false, nil
}

// isExpired reports whether a tombstone for id is younger than the
// tombstone TTL.
func (l *lifecycle) isExpired(ctx context.Context, id string) (bool, error) {
	at, ok, err := l.tombstones.Get(ctx, id)
	if err != nil || !ok {
		return false, err
	}
	return l.clock.Now().Before(at.Add(l.s.cfg.Lifecycle.TombstoneTTL)), nil
}

// event describes info for webhooks. The owner comes from the metadata
// tusgate set at creation; other reserved keys are left out.
func (l *lifecycle) event(typ, id string, info handler.FileInfo) webhook.Event {
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
	if b := l.s.s3; b != nil {
		ev.Upload.Storage = webhook.Storage{Type: "s3", Bucket: b.Bucket, Key: info.Storage["Key"]}
	} else {
		ev.Upload.Storage = webhook.Storage{Type: "disk", Key: info.ID}
	}
	return ev
}

func (l *lifecycle) enqueue(ctx context.Context, ev webhook.Event) error {
	if l.dispatcher == nil {
		return nil
	}
	if err := l.dispatcher.Enqueue(ctx, ev); err != nil {
		return fmt.Errorf("storing the %s webhook: %w", ev.Type, err)
	}
	return nil
}

// Created reports a new upload.
func (l *lifecycle) Created(ctx context.Context, info handler.FileInfo) error {
	ev := l.event(webhook.TypeCreated, webhook.StableEventID("created", info.ID), info)
	if ttl := l.s.cfg.Lifecycle.UploadTTL; ttl > 0 {
		at := ev.Time.Add(ttl)
		ev.Upload.Expires = &at
	}
	return l.enqueue(ctx, ev)
}

// Finishing asks the pre-finish URL, if any, then stores the
// upload.finished event. The event is stored before the upload is
// assembled, so that no crash can lose it; its delivery waits until the
// object exists (see prepare).
func (l *lifecycle) Finishing(ctx context.Context, info handler.FileInfo) error {
	finishedFrom(ctx).set()
	// Partial uploads are asked about too (with is_partial set): each
	// becomes an object of its own in the bucket.
	if url := l.s.cfg.Lifecycle.PreFinishURL; url != "" {
		if err := l.approve(ctx, url, info); err != nil {
			return err
		}
	}
	return l.enqueue(ctx, l.event(webhook.TypeFinished, webhook.StableEventID("finished", info.ID), info))
}

// Terminating stores the upload.terminated event before the upload is
// deleted; it is delivered once the upload is gone.
func (l *lifecycle) Terminating(ctx context.Context, info handler.FileInfo) error {
	return l.enqueue(ctx, l.event(webhook.TypeTerminated, webhook.StableEventID("terminated", info.ID), info))
}

// expired stores the upload.expired event before the janitor deletes the
// upload.
func (l *lifecycle) expired(ctx context.Context, u expiry.Upload) error {
	ev := l.event(webhook.TypeExpired, webhook.StableEventID("expired", u.ID), u.Info)
	return l.enqueue(ctx, ev)
}

// prepare checks, before each delivery, that what an event reports has
// happened: a finished upload's object exists (and its ETag is added), a
// terminated or expired upload is gone. Events are stored before the act,
// so that a crash in between cannot lose them.
func (l *lifecycle) prepare(ctx context.Context, ev *webhook.Event) (webhook.Decision, string, error) {
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
		if b := l.s.s3; b != nil && ev.Upload.Storage.Key != "" {
			etag, err := b.ETag(ctx, ev.Upload.Storage.Key)
			if err != nil {
				return webhook.Retry, "", err
			}
			ev.Upload.Storage.ETag = etag
		}
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

// lookup reads an upload's info from the unwrapped store.
func (l *lifecycle) lookup(ctx context.Context, id string) (handler.FileInfo, error) {
	up, err := l.s.store.Core.GetUpload(ctx, id)
	if err != nil {
		return handler.FileInfo{}, err
	}
	return up.GetInfo(ctx)
}

// finishedMark records, per request, that the upload was finished, so that
// the response does not announce an expiry (see uploadExpires).
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

// uploadExpires implements the announcing half of tus's expiration
// extension: creations and PATCHes of unfinished uploads answer with
// Upload-Expires (idle expiry slides with every write), and OPTIONS lists
// "expiration" among the extensions.
func uploadExpires(ttl time.Duration, now func() time.Time, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mark := &finishedMark{}
		r = r.WithContext(context.WithValue(r.Context(), finishedKey{}, mark))
		next.ServeHTTP(&expiresWriter{ResponseWriter: w, r: r, mark: mark, ttl: ttl, now: now}, r)
	})
}

type expiresWriter struct {
	http.ResponseWriter
	r     *http.Request
	mark  *finishedMark
	ttl   time.Duration
	now   func() time.Time
	wrote bool
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
	}
	w.ResponseWriter.WriteHeader(status)
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
