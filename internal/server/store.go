package server

import (
	"context"
	"errors"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/direct"
	"github.com/tusgate/tusgate/internal/diskbackend"
	"github.com/tusgate/tusgate/internal/lifecycle"
	"github.com/tusgate/tusgate/internal/s3backend"
	"github.com/tusgate/tusgate/internal/safestore"
)

// openBackend opens the configured backend (S3 with --s3-bucket, else the
// data directory), registers its cleanup and its readiness probe. A
// definite misconfiguration fails the start; a backend that merely does not
// answer yet keeps /readyz at 503 until it does.
func (s *Server) openBackend(ctx context.Context, lookupEnv func(string) (string, bool), reg prometheus.Registerer) (backend.Backend, error) {
	cfg := s.cfg
	var b backend.Backend
	if cfg.UsesS3() {
		sb, err := s3backend.New(ctx, s3backend.Options{
			Settings: cfg.S3, MaxSize: cfg.MaxSize, ObjectSHA256: cfg.ObjectSHA256, TempDir: s3TempDir(cfg),
			LookupEnv: lookupEnv, Log: s.log, Registerer: reg,
		})
		if err != nil {
			return nil, startupError(err)
		}
		s.log.Info("storing uploads in S3", "bucket", sb.Bucket, "endpoint", sb.Endpoint, "prefix", cfg.S3.ObjectPrefix, "temp_dir", sb.TempDir.Path)
		b = sb
	} else {
		db, err := diskbackend.Open(cfg.DataDir)
		if err != nil {
			return nil, startupError(err)
		}
		s.log.Info("storing uploads on local disk", "dir", db.Dir())
		db.ObjectSHA256 = cfg.ObjectSHA256
		b = db
	}
	s.cleanup.add(b.Close)
	if cfg.ObjectSHA256 {
		s.log.Info("computing the SHA-256 of every upload as it arrives (--object-sha256)")
	}
	pctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	err := b.Check(pctx)
	cancel()
	if mis := (*backend.MisconfigError)(nil); errors.As(err, &mis) {
		return nil, startupError(err)
	}
	if err != nil {
		s.log.Warn("the storage backend is not reachable yet; starting anyway, /readyz answers 503 until it is", "backend", b.Name(), "reason", err.Error())
	}
	s.ready.Add(b.Name(), b.Check, err)
	if n, ok := b.(interface{ ChecksumNote() string }); ok {
		s.ready.AddNote(b.Name(), n.ChecksumNote)
	}
	return b, nil
}

// s3TempDir is --s3-temp-dir, or s3-tmp in the data directory.
func s3TempDir(cfg *config.Config) string {
	if cfg.S3.TempDir != "" {
		return cfg.S3.TempDir
	}
	return filepath.Join(cfg.DataDir, "s3-tmp")
}

// buildStore assembles the store tusd sees: the backend's store with its
// upload locks (shared through Redis with --redis-url), lifecycle events
// and expiry, wrapped in safestore's checks.
func (s *Server) buildStore(ctx context.Context, b backend.Backend, reg prometheus.Registerer) (*handler.StoreComposer, error) {
	cfg := s.cfg
	store := handler.NewStoreComposer()
	b.UseIn(store)
	if cfg.RedisURL != "" {
		if err := s.useRedisLocker(ctx, store, reg); err != nil {
			return nil, err
		}
	} else {
		memorylocker.New().UseIn(store)
	}
	s.quota.Locker = store.Locker

	lc, err := lifecycle.New(lifecycle.Options{
		Settings:   cfg.Lifecycle,
		Backend:    b,
		Store:      store,
		Redis:      s.redis,
		Active:     s.active,
		External:   external(s.direct),
		Log:        s.log,
		Registerer: reg,
	})
	if err != nil {
		return nil, err
	}
	s.lifecycle = lc

	opt := safestore.Options{
		Log: s.log, Held: &s.held, MaxSize: cfg.MaxSize, Assembly: b.Assembly(),
		OnStorageError: func(permanent bool) { s.countStorageError(permanent) },
		Expired:        lc.ExpiredCheck(),
		Waiting:        b.Waiting(),
	}
	if cfg.AuthEnabled() {
		opt.Authorize = hooks.Authorize
		opt.Admit = s.admit
	}
	if lc.Reports() {
		opt.Lifecycle = lc
	}
	s.concatUnfinished = opt.Waiting != nil
	return safestore.Wrap(store, opt), nil
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

// startupError turns a backend's misconfiguration into a StartupError.
func startupError(err error) error {
	var mis *backend.MisconfigError
	if errors.As(err, &mis) {
		return &StartupError{config.Problems{mis.Msg}}
	}
	return err
}

// cleanups are the cleanups of what has been built, run in reverse order
// from one place (Server.close): every component registers its own as soon
// as it exists, so that a failure halfway through New unwinds exactly what
// was built.
type cleanups []func() error

func (c *cleanups) add(f func() error) { *c = append(*c, f) }

// run calls the cleanups, last added first, and forgets them.
func (c *cleanups) run() error {
	var errs []error
	for i := len(*c) - 1; i >= 0; i-- {
		errs = append(errs, (*c)[i]())
	}
	*c = nil
	return errors.Join(errs...)
}

// external is svc as the lifecycle's External, or nil.
func external(svc *direct.Service) lifecycle.External {
	if svc == nil {
		return nil
	}
	return svc
}
