package server

import (
	"context"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/locker/redislocker"
)

// useRedisLocker installs the Redis-backed upload lock, so that several
// instances can serve the same uploads without sticky sessions.
func (s *Server) useRedisLocker(ctx context.Context, composer *handler.StoreComposer, reg prometheus.Registerer) error {
	opts, err := redis.ParseURL(s.cfg.RedisURL)
	if err != nil {
		return &StartupError{config.Problems{fmt.Sprintf("--redis-url: %v", err)}}
	}
	if s.cfg.RedisPassword != "" {
		opts.Password = s.cfg.RedisPassword
	}
	// Fail fast rather than let a request wait out go-redis's retries: the
	// locker answers 503 with Retry-After and clients come back.
	opts.ContextTimeoutEnabled = true
	opts.MaxRetries = 1
	opts.DialTimeout = time.Second
	redis.SetLogger(redisLog{s.log.With("component", "redis")})
	client := redis.NewClient(opts)
	locker, err := redislocker.New(redislocker.Options{Client: client, Log: s.log, Registerer: reg, LeaseTTL: s.cfg.RedisLockLease})
	if err != nil {
		client.Close()
		return fmt.Errorf("setting up the Redis locker: %w", err)
	}
	s.cleanup.add(client.Close)
	s.cleanup.add(locker.Close)
	locker.UseIn(composer)
	s.redis, s.redisLocker = client, locker
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	err = locker.Ping(pctx)
	cancel()
	if err != nil {
		s.log.Warn("Redis is not reachable yet; starting anyway, /readyz answers 503 until it is", "reason", err.Error())
	}
	s.ready.Add("redis", locker.Ping, err)
	s.log.Info("upload locks shared through Redis", "addr", opts.Addr, "db", opts.DB)
	return nil
}

// redisLog routes go-redis's internal messages (reconnects) to slog.
type redisLog struct{ log *slog.Logger }

func (l redisLog) Printf(ctx context.Context, format string, v ...any) {
	l.log.WarnContext(ctx, fmt.Sprintf(format, v...))
}
