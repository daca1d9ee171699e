// Package server assembles tusgate: the storage backend, tusd's handler with
// tusgate's checks around it, health and metrics endpoints, and an HTTP
// server that drains uploads gracefully on shutdown.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/locker/redislocker"
	"github.com/tusgate/tusgate/internal/metadata"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/readiness"
	"github.com/tusgate/tusgate/internal/s3backend"
	"github.com/tusgate/tusgate/internal/s3stream"
	"github.com/tusgate/tusgate/internal/safestore"
)

// StartupError is a definite misconfiguration found while starting: the
// message names the setting to fix. tusgate exits with code 2 on it.
type StartupError struct{ Problems config.Problems }

func (e *StartupError) Error() string { return e.Problems.Error() }

// Server is a fully assembled tusgate.
type Server struct {
	cfg   *config.Config
	log   *slog.Logger
	ready *readiness.Checker

	// composer is the store as tusd sees it.
	composer *handler.StoreComposer
	// store is the unwrapped store, for lifecycle work that acts on behalf
	// of no request (webhook checks, the janitor).
	store *handler.StoreComposer
	// s3 is the S3 backend, nil with the disk store.
	s3 *s3backend.Backend
	// held are the uploads locked in this process.
	held safestore.Held
	// redis and redisLocker are set with --redis-url.
	redis       *redis.Client
	redisLocker *redislocker.Locker
	// lifecycle delivers webhooks and expires uploads.
	lifecycle *lifecycle
	// usage and limits enforce per-owner quotas at creation.
	usage  quota.Counter
	limits quota.Limits
	// storageErrors counts storage errors answered to clients, by kind.
	storageErrors *prometheus.CounterVec

	http       *http.Server
	metrics    *http.Server
	inflight   inflight
	cancelBase context.CancelCauseFunc
	closers    []func() error
}

// New builds everything or fails: nothing half-initialised serves traffic.
// Dependencies that are merely unreachable do not fail New; they keep
// /readyz at 503 until they answer.
func New(ctx context.Context, cfg *config.Config, lookupEnv func(string) (string, bool), log *slog.Logger) (*Server, error) {
	s := &Server{cfg: cfg, log: log, ready: readiness.New(log), limits: quota.Limits{Uploads: cfg.QuotaUploads, Bytes: cfg.QuotaBytes}}

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	s.storageErrors = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "tusgate_storage_errors_total",
		Help: "Storage errors answered to clients, by kind: transient (503, or 423 on HEAD, with Retry-After: clients retry) or permanent (500 ERR_STORAGE_FAILED without Retry-After: retrying cannot help, the operator must act).",
	}, []string{"kind"})
	for _, kind := range []string{"permanent", "transient"} {
		s.storageErrors.WithLabelValues(kind)
	}
	reg.MustRegister(s.storageErrors)

	mux := http.NewServeMux()
	authenticate, err := s.setupAuth(ctx, mux)
	if err != nil {
		s.close()
		return nil, err
	}
	composer, err := s.buildStore(ctx, lookupEnv, reg)
	if err != nil {
		s.close()
		return nil, err
	}
	s.composer = composer

	// Interrupted requests get this long to save what they received; the
	// rest of the shutdown budget lets them finish on their own.
	reserve := cfg.SaveReserve()
	tusLog := tusLogger(log.Handler()).With("component", "tusd")
	tus, err := handler.NewHandler(handler.Config{
		StoreComposer:                    composer,
		MaxSize:                          cfg.MaxSize,
		BasePath:                         cfg.BasePath,
		EnableExperimentalProtocol:       cfg.IETFDraft,
		DisableDownload:                  cfg.DisableDownload,
		Cors:                             &handler.CorsConfig{Disable: true},
		RespectForwardedHeaders:          cfg.BehindProxy,
		Logger:                           tusLog,
		PreUploadCreateCallback:          s.preCreate,
		GracefulRequestCompletionTimeout: reserve,
		NetworkTimeout:                   cfg.NetworkTimeout,
	})
	if err != nil {
		s.close()
		return nil, fmt.Errorf("creating the tus handler: %w", err)
	}
	reg.MustRegister(prometheuscollector.New(tus.Metrics))

	var uploads http.Handler = lockScope(bodyLength(tus))
	if ttl := cfg.Lifecycle.UploadTTL; ttl > 0 {
		uploads = uploadExpires(ttl, time.Now, uploads)
	}
	uploads = checkRequestHeaders(cfg.IETFDraft, cfg.BasePath, uploads)
	if authenticate != nil {
		uploads = authenticate(uploads)
	}
	uploads = cors(cfg.CORSOrigins, cfg.BehindProxy, uploads)

	base := strings.TrimSuffix(cfg.BasePath, "/")
	mux.Handle(base+"/", http.StripPrefix(base+"/", uploads))
	mux.Handle(base, http.StripPrefix(base, uploads))
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprintln(w, "ok")
	})
	mux.Handle("GET /readyz", s.ready)
	metricsHandler := promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	if cfg.MetricsListen == "" {
		mux.Handle("GET /metrics", metricsHandler)
	} else {
		mm := http.NewServeMux()
		mm.Handle("GET /metrics", metricsHandler)
		// The public /readyz names only the failing dependency; operators
		// get its error here (and in the log).
		mm.Handle("GET /readyz", s.ready.Detailed())
		if cfg.Pprof {
			mm.HandleFunc("/debug/pprof/", pprof.Index)
			mm.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
			mm.HandleFunc("/debug/pprof/profile", pprof.Profile)
			mm.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
			mm.HandleFunc("/debug/pprof/trace", pprof.Trace)
		}
		s.metrics = &http.Server{Addr: cfg.MetricsListen, Handler: mm, ReadHeaderTimeout: 10 * time.Second}
	}
	s.registerPages(mux)

	var root http.Handler = mux
	root = recoverPanics(log, root)
	root = guard(root)
	root = s.inflight.wrap(root)
	root = accessLog(log, root)

	baseCtx, cancelBase := context.WithCancelCause(context.Background())
	s.cancelBase = cancelBase
	s.http = &http.Server{
		Addr:              cfg.Listen,
		Handler:           root,
		ReadHeaderTimeout: 30 * time.Second,
		IdleTimeout:       2 * cfg.NetworkTimeout,
		BaseContext:       func(net.Listener) context.Context { return baseCtx },
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelDebug),
	}
	return s, nil
}

// buildStore creates the S3 or disk store, registers its readiness probe and
// wraps it in safestore.
func (s *Server) buildStore(ctx context.Context, lookupEnv func(string) (string, bool), reg *prometheus.Registry) (*handler.StoreComposer, error) {
	cfg := s.cfg
	composer := handler.NewStoreComposer()
	opt := safestore.Options{Log: s.log, Held: &s.held, MaxSize: cfg.MaxSize, OnStorageError: func(permanent bool) { s.countStorageError(permanent) }}
	dir := ""
	if cfg.AuthEnabled() {
		opt.Authorize = hooks.Authorize
	}

	if cfg.UsesS3() {
		b, err := s3backend.New(ctx, cfg, lookupEnv, s.log)
		if err != nil {
			return nil, startupError(err)
		}
		s.closers = append(s.closers, b.TempDir.Close)
		err = b.Check(ctx)
		var mis *s3backend.MisconfigError
		if errors.As(err, &mis) {
			return nil, startupError(err)
		}
		if err != nil {
			s.log.Warn("S3 is not reachable yet; starting anyway, /readyz answers 503 until it is", "reason", err.Error())
		}
		s.ready.Add("s3", b.Check, err)
		b.Writer.UseIn(composer)
		b.Store.RegisterMetrics(reg)
		b.Writer.Metrics = s3stream.NewMetrics(reg, b.Writer.Buffers)
		opt.Assembly = b
		s.usage = b
		s.s3 = b
		s.log.Info("storing uploads in S3", "bucket", b.Bucket, "endpoint", b.Endpoint, "prefix", cfg.S3.ObjectPrefix, "temp_dir", b.TempDir.Path)
	} else {
		var err error
		dir, err = filepath.Abs(cfg.DataDir)
		if err == nil {
			err = os.MkdirAll(dir, 0o750)
		}
		if err == nil {
			err = probeWritable(dir)
		}
		if err != nil {
			return nil, &StartupError{config.Problems{fmt.Sprintf("--data-dir %s is not usable: %v; choose a writable directory", cfg.DataDir, err)}}
		}
		s.ready.Add("data-dir", func(context.Context) error { return probeWritable(dir) }, nil)
		filestore.New(dir).UseIn(composer)
		assembly := safestore.DiskAssembly{Dir: dir}
		if err := assembly.Init(); err != nil {
			return nil, &StartupError{config.Problems{fmt.Sprintf("--data-dir %s: %v", cfg.DataDir, err)}}
		}
		opt.Assembly = assembly
		s.usage = quota.Disk{Dir: dir}
		s.log.Info("storing uploads on local disk", "dir", dir)
	}
	if cfg.RedisURL != "" {
		if err := s.useRedisLocker(ctx, composer, reg); err != nil {
			return nil, err
		}
	} else {
		memorylocker.New().UseIn(composer)
	}
	s.store = composer
	if err := s.setupLifecycle(dir, reg, &opt); err != nil {
		return nil, err
	}
	return safestore.Wrap(composer, opt), nil
}

func startupError(err error) error {
	var mis *s3backend.MisconfigError
	if errors.As(err, &mis) {
		return &StartupError{config.Problems{mis.Msg}}
	}
	return err
}

// probeWritable creates and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".tusgate-probe-")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}

// preCreate validates the new upload's metadata strictly; tusd itself drops
// malformed pairs silently and passes the rest to S3 unchecked.
func (s *Server) preCreate(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	var (
		meta handler.MetaData
		err  error
	)
	// tusd checks sizes on tus 1.0 creations only, not on IETF-draft ones.
	if up := hook.Upload; !up.SizeIsDeferred {
		if up.Size < 0 {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.ErrInvalidUploadLength
		}
		if up.Size > s.cfg.MaxSize {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.ErrMaxSizeExceeded
		}
	} else if s.limits.Bytes > 0 {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_QUOTA_NEEDS_LENGTH",
			"this server limits the bytes each user may have in flight; declare the upload's length when creating it (Upload-Length)", http.StatusBadRequest)
	}
	if hook.Upload.IsFinal {
		if err := s.checkPartials(hook); err != nil {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, err
		}
	}
	maxSize := int(s.cfg.MaxMetadataSize)
	if isDraft(s.cfg.IETFDraft, &http.Request{Header: hook.HTTPRequest.Header}) {
		meta, err = metadata.Clean(hook.Upload.MetaData, maxSize)
	} else {
		meta, err = metadata.Parse(hook.HTTPRequest.Header.Get("Upload-Metadata"), maxSize)
	}
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_INVALID_METADATA", err.Error(), http.StatusBadRequest)
	}
	if !s.cfg.AuthEnabled() {
		return handler.HTTPResponse{}, handler.FileInfoChanges{MetaData: hooks.StripReserved(meta)}, nil
	}
	changes, err := hooks.BindOwner(hook.Context, meta)
	if err != nil {
		return handler.HTTPResponse{}, changes, err
	}
	folder, _, _ := strings.Cut(changes.ID, "/")
	if err := quota.Check(hook.Context, s.usage, s.limits, folder, hook.Upload.Size); err != nil {
		var tusErr handler.Error
		if !errors.As(err, &tusErr) {
			answer := safestore.StorageError(err)
			kind := s.countStorageError(answer.ErrorCode == safestore.ErrStorageFailed.ErrorCode)
			s.log.ErrorContext(hook.Context, "quota check failed", "kind", kind, "error", err.Error())
			return handler.HTTPResponse{}, changes, answer
		}
		return handler.HTTPResponse{}, changes, err
	}
	return handler.HTTPResponse{}, changes, nil
}

// countStorageError counts a storage error answered to a client and
// returns its kind.
func (s *Server) countStorageError(permanent bool) string {
	kind := "transient"
	if permanent {
		kind = "permanent"
	}
	s.storageErrors.WithLabelValues(kind).Inc()
	return kind
}

// checkPartials refuses a concatenation of uploads that were not created as
// partial uploads, before the final upload is created. tusd has already
// resolved (and so authorized) every ID.
func (s *Server) checkPartials(hook handler.HookEvent) error {
	for _, id := range hook.Upload.PartialUploads {
		up, err := s.composer.Core.GetUpload(hook.Context, id)
		if err != nil {
			return err
		}
		info, err := up.GetInfo(hook.Context)
		if err != nil {
			return err
		}
		if !info.IsPartial {
			return safestore.ErrNotPartial
		}
	}
	return nil
}

func (s *Server) index(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	fmt.Fprintf(w, "tusgate is running. tus uploads go to %s\n", s.cfg.BasePath)
	if s.cfg.Dev {
		base := "http://" + r.Host
		if r.TLS != nil {
			base = "https://" + r.Host
		}
		fmt.Fprintf(w, `
Development mode: get a token for any user name, then upload with it:

  TOKEN=$(curl -s -X POST %[1]s%[2]s/token -d username=alice | sed -E 's/.*"access_token":"([^"]+)".*/\1/')
  curl -i -X POST %[1]s%[3]s -H "Authorization: Bearer $TOKEN" -H 'Tus-Resumable: 1.0.0' -H 'Upload-Length: 11'
  curl -i -X PATCH <Location> -H "Authorization: Bearer $TOKEN" -H 'Tus-Resumable: 1.0.0' \
       -H 'Upload-Offset: 0' -H 'Content-Type: application/offset+octet-stream' --data-binary 'hello world'
`, base, devIssuerPath, s.cfg.BasePath)
	}
}

// Ready reports the readiness checker, for tests and the healthcheck.
func (s *Server) Ready() *readiness.Checker { return s.ready }

// Run serves until ctx ends, then shuts down within cfg.ShutdownTimeout:
// /readyz turns 503 at once and no new connections are accepted; uploads in
// flight may finish on their own for most of the budget; whatever still runs
// then is interrupted, and tusd's stores save what they received in the
// reserve left for that; only then are connections closed.
func (s *Server) Run(ctx context.Context) error {
	ln, err := net.Listen("tcp", s.cfg.Listen)
	if err != nil {
		s.close()
		return &StartupError{config.Problems{fmt.Sprintf("--listen %s: %v", s.cfg.Listen, err)}}
	}
	var mln net.Listener
	if s.metrics != nil {
		if mln, err = net.Listen("tcp", s.cfg.MetricsListen); err != nil {
			ln.Close()
			s.close()
			return &StartupError{config.Problems{fmt.Sprintf("--metrics-listen %s: %v", s.cfg.MetricsListen, err)}}
		}
	}

	errc := make(chan error, 2)
	go func() {
		if s.cfg.TLSCert != "" {
			errc <- s.http.ServeTLS(ln, s.cfg.TLSCert, s.cfg.TLSKey)
		} else {
			errc <- s.http.Serve(ln)
		}
	}()
	if mln != nil {
		go func() { errc <- s.metrics.Serve(mln) }()
	}
	probeCtx, stopProbes := context.WithCancel(context.Background())
	defer stopProbes()
	go s.ready.Run(probeCtx, 15*time.Second)
	lifecycleCtx, stopLifecycle := context.WithCancel(context.Background())
	lifecycleDone := make(chan struct{})
	go func() { s.lifecycle.run(lifecycleCtx); close(lifecycleDone) }()
	// Webhooks and the janitor stop before the stores they use close.
	s.closers = append([]func() error{func() error { stopLifecycle(); <-lifecycleDone; return nil }}, s.closers...)

	scheme := "http"
	if s.cfg.TLSCert != "" {
		scheme = "https"
	}
	s.log.Info("tusgate listening", "addr", ln.Addr().String(), "uploads", scheme+"://"+ln.Addr().String()+s.cfg.BasePath)

	select {
	case err := <-errc:
		s.close()
		return fmt.Errorf("serving: %w", err)
	case <-ctx.Done():
	}
	return s.shutdown()
}

func (s *Server) shutdown() error {
	start := time.Now()
	budget := s.cfg.ShutdownTimeout
	reserve := s.cfg.SaveReserve()
	s.ready.SetShuttingDown()
	s.log.Info("shutting down: letting uploads in flight finish", "grace", budget-reserve, "save_reserve", reserve)

	if s.metrics != nil {
		defer s.metrics.Close()
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), budget-reserve)
	err := s.http.Shutdown(drainCtx)
	cancel()
	if err != nil {
		s.log.Warn("interrupting uploads still in flight so that what they received is saved")
		s.cancelBase(handler.ErrServerShutdown)
		left := time.Until(start.Add(budget))
		select {
		case <-s.inflight.wait():
		case <-time.After(left):
			s.log.Error("shutdown budget exhausted; closing connections", "budget", budget)
		}
		s.http.Close()
	}
	s.close()
	s.log.Info("shutdown complete", "took", time.Since(start).Round(time.Millisecond))
	return nil
}

func (s *Server) close() {
	for _, c := range s.closers {
		_ = c()
	}
	s.closers = nil
}
