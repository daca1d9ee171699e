package testenv_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

func TestRedisStartStopRestart(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	if !strings.HasPrefix(r.Addr, "127.0.0.1:") || r.URL() != "redis://"+r.Addr+"/0" {
		t.Errorf("Addr %q URL %q", r.Addr, r.URL())
	}
	c := r.Client()
	ctx := t.Context()
	if err := c.Set(ctx, "k", "v", 0).Err(); err != nil {
		t.Fatalf("SET: %v", err)
	}
	if v, err := c.Get(ctx, "k").Result(); err != nil || v != "v" {
		t.Fatalf("GET = %q, %v", v, err)
	}
	// Not persisted: no dump file, no AOF.
	if cfg, err := c.ConfigGet(ctx, "save").Result(); err != nil || cfg["save"] != "" {
		t.Errorf("CONFIG GET save = %v, %v; want empty", cfg, err)
	}
	if cfg, err := c.ConfigGet(ctx, "appendonly").Result(); err != nil || cfg["appendonly"] != "no" {
		t.Errorf("CONFIG GET appendonly = %v, %v; want no", cfg, err)
	}

	addr := r.Addr
	r.Stop()
	r.Stop() // idempotent
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	err := c.Ping(pctx).Err()
	cancel()
	if err == nil {
		t.Fatal("PING answered after Stop")
	}

	r.Start()
	if r.Addr != addr {
		t.Errorf("restarted on %s, was %s", r.Addr, addr)
	}
	// The same client reconnects (go-redis retries on its dead pooled
	// connection); the restarted server is empty.
	if err := c.Ping(ctx).Err(); err != nil {
		t.Fatalf("PING after Start: %v", err)
	}
	if n, err := c.Exists(ctx, "k").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS k after restart = %d, %v; want 0", n, err)
	}
	r.Start() // running: no-op
}

func TestRedisMissingBinary(t *testing.T) {
	t.Setenv("TUSGATE_TEST_REDIS_SERVER", filepath.Join(t.TempDir(), "missing"))
	msg := expectFatal(t, func(tb testing.TB) { testenv.StartRedis(tb) })
	if !strings.Contains(msg, "run bash test/tools/deps.sh") {
		t.Errorf("StartRedis without redis-server: Fatalf %q", msg)
	}
}
