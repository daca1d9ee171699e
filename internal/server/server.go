// Package server assembles tusgate: the storage backend, tusd's handler with
// tusgate's checks around it, health and metrics endpoints, and an HTTP
// server that drains uploads gracefully on shutdown.
package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/prometheuscollector"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/direct"
	"github.com/tusgate/tusgate/internal/ietfdraft"
	"github.com/tusgate/tusgate/internal/lifecycle"
	"github.com/tusgate/tusgate/internal/locker/redislocker"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/readiness"
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

	// composer is the store as tusd sees it: the backend's store with
	// locks, lifecycle and safestore's checks.
	composer *handler.StoreComposer
	// held are the uploads locked in this process.
	held safestore.Held
	// redis and redisLocker are set with --redis-url.
	redis       *redis.Client
	redisLocker *redislocker.Locker
	// lifecycle delivers webhooks and expires uploads.
	lifecycle *lifecycle.Lifecycle
	// quota admits creations under the per-owner limits; limits are they.
	quota  *quota.Gate
	limits quota.Limits
	// direct serves direct uploads to S3 (--direct-uploads), or is nil.
	direct *direct.Service
	// directOrigin is the S3 endpoint's origin when the pages' CSP must
	// name it (plain HTTP).
	directOrigin string
	// storageErrors counts storage errors answered to clients, by kind.
	storageErrors *prometheus.CounterVec
	// concatUnfinished is set when the store keeps final uploads waiting
	// for unfinished partial uploads (safestore.Options.Waiting).
	concatUnfinished bool

	http       *http.Server
	metrics    *http.Server
	inflight   inflight
	cancelBase context.CancelCauseFunc
	cleanup    cleanups
}

// New builds everything or fails: nothing half-initialised serves traffic,
// and what was built before a failure is cleaned up. Dependencies that are
// merely unreachable do not fail New; they keep /readyz at 503 until they
// answer.
func New(ctx context.Context, cfg *config.Config, lookupEnv func(string) (string, bool), log *slog.Logger) (_ *Server, err error) {
	s := &Server{cfg: cfg, log: log, ready: readiness.New(log), limits: quota.Limits{Uploads: cfg.QuotaUploads, Bytes: cfg.QuotaBytes}}
	defer func() {
		if err != nil {
			s.close()
		}
	}()

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
		return nil, err
	}
	b, err := s.openBackend(ctx, lookupEnv, reg)
	if err != nil {
		return nil, err
	}
	s.quota = &quota.Gate{Limits: s.limits, Counter: b.Usage()}
	if err := s.setupDirect(b, reg); err != nil {
		return nil, err
	}
	if s.composer, err = s.buildStore(ctx, b, reg); err != nil {
		return nil, err
	}

	// Interrupted requests get this long to save what they received; the
	// rest of the shutdown budget lets them finish on their own.
	reserve := cfg.SaveReserve()
	tusLog := tusLogger(log.Handler()).With("component", "tusd")
	tus, err := handler.NewHandler(handler.Config{
		StoreComposer:                    s.composer,
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
		return nil, fmt.Errorf("creating the tus handler: %w", err)
	}
	reg.MustRegister(prometheuscollector.New(tus.Metrics))

	// The upload routes' middleware, outermost first; docs/architecture.md
	// shows this list.
	var expires func(http.Handler) http.Handler
	if ttl := cfg.Lifecycle.UploadTTL; ttl > 0 {
		expires = func(h http.Handler) http.Handler {
			return lifecycle.UploadExpires(ttl, time.Now, s.lifecycle.ExpiresAt, h)
		}
	}
	var draft func(http.Handler) http.Handler
	if cfg.IETFDraft {
		d := ietfdraft.New(ietfdraft.Config{
			Composer:       s.composer,
			BasePath:       cfg.BasePath,
			MaxSize:        cfg.MaxSize,
			BehindProxy:    cfg.BehindProxy,
			NetworkTimeout: cfg.NetworkTimeout,
			SaveReserve:    reserve,
			PreCreate:      s.preCreate,
			TTL:            cfg.Lifecycle.UploadTTL,
			ExpiresAt:      s.lifecycle.ExpiresAt,
			Log:            log.With("component", "ietfdraft"),
		})
		draft = func(h http.Handler) http.Handler { return ietfdraft.Route(d, h) }
	}
	var sums func(http.Handler) http.Handler
	if src, ok := b.(objectChecksums); ok {
		sums = func(h http.Handler) http.Handler { return objectChecksum(src, log, h) }
	}
	uploads := chain(tus,
		func(h http.Handler) http.Handler { return cors(cfg.CORSOrigins, cfg.BehindProxy, h) },
		authenticate, // nil without authentication
		func(h http.Handler) http.Handler { return tusRules(cfg.IETFDraft, s.concatUnfinished, h) },
		func(h http.Handler) http.Handler { return checkRequestHeaders(cfg.IETFDraft, cfg.BasePath, h) },
		expires, // nil without --upload-ttl
		checksum.Middleware,
		sums, // nil for backends without object checksums (disk)
		objectSHA256,
		lockScope,
		bodyLength,
		draft, // nil with --ietf-draft=false
	)

	base := strings.TrimSuffix(cfg.BasePath, "/")
	mux.Handle(base+"/", http.StripPrefix(base+"/", uploads))
	mux.Handle(base, http.StripPrefix(base, uploads))
	s.directRoutes(mux, authenticate)
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

	// Every request's middleware, outermost first.
	root := chain(mux,
		func(h http.Handler) http.Handler { return accessLog(log, h) },
		s.inflight.wrap,
		guard,
		func(h http.Handler) http.Handler { return recoverPanics(log, h) },
	)

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

// chain wraps h in the middleware mws, the first outermost; nil entries
// (middleware the settings turn off) are skipped.
func chain(h http.Handler, mws ...func(http.Handler) http.Handler) http.Handler {
	for i := len(mws) - 1; i >= 0; i-- {
		if mws[i] != nil {
			h = mws[i](h)
		}
	}
	return h
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
	go func() { s.lifecycle.Run(lifecycleCtx); close(lifecycleDone) }()
	// Webhooks and the janitor stop before the stores they use close.
	s.cleanup.add(func() error { stopLifecycle(); <-lifecycleDone; return nil })

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

// close runs the cleanups of everything built, in reverse order.
func (s *Server) close() {
	if err := s.cleanup.run(); err != nil {
		s.log.Warn("cleaning up", "error", err.Error())
	}
}
