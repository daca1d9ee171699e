package testenv

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisStartTimeout bounds how long StartRedis and Redis.Start wait for
// redis-server to answer PING.
const redisStartTimeout = 10 * time.Second

// Redis is a throw-away redis-server on 127.0.0.1 (no persistence), started
// by StartRedis and stopped by the test's cleanup. It can be stopped and
// restarted on the same port to simulate an outage; a restarted server is
// empty.
type Redis struct {
	Addr string // 127.0.0.1:PORT
	Log  string // file receiving redis-server's output

	t    testing.TB
	bin  string
	dir  string
	port int

	mu     sync.Mutex
	pid    int           // 0 while stopped
	exited chan struct{} // closed when the process has been reaped
}

// redisServerPath finds redis-server: $TUSGATE_TEST_REDIS_SERVER, the PATH,
// or /usr/bin/redis-server.
func redisServerPath(t testing.TB) string {
	t.Helper()
	env := toolEnv("redis-server")
	if p := os.Getenv(env); p != "" {
		if fi, err := os.Stat(p); err != nil || fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
			t.Fatalf("testenv: redis-server not usable ($%s=%s: %v): run bash test/tools/deps.sh to install it", env, p, err)
		}
		return p
	}
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	const fallback = "/usr/bin/redis-server"
	if fi, err := os.Stat(fallback); err == nil && !fi.IsDir() && fi.Mode().Perm()&0o111 != 0 {
		return fallback
	}
	t.Fatalf("testenv: redis-server not found (neither on the PATH nor at %s): run bash test/tools/deps.sh to install it", fallback)
	return ""
}

// StartRedis starts redis-server on 127.0.0.1:<free port> with --save ""
// --appendonly no in a temp dir, waits until it answers PING (at most 10 s)
// and registers a cleanup that stops it by PID. A missing redis-server fails
// the test (it is never skipped).
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	r := &Redis{t: t, bin: redisServerPath(t), dir: t.TempDir()}
	r.Log = filepath.Join(r.dir, "redis.log")
	t.Cleanup(r.Stop)

	// FreePort can race with other processes; retry on a lost port.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		r.port = FreePort(t)
		r.Addr = "127.0.0.1:" + strconv.Itoa(r.port)
		err := r.start()
		if err == nil {
			return r
		}
		tail := logTail(r.Log, 4096)
		if attempt < attempts && strings.Contains(tail, "Address already in use") {
			continue
		}
		t.Fatalf("testenv: StartRedis: %v\n--- tail of %s ---\n%s", err, r.Log, tail)
	}
}

// URL returns redis://127.0.0.1:PORT/0.
func (r *Redis) URL() string { return "redis://" + r.Addr + "/0" }

// Client returns a new client for the server (ContextTimeoutEnabled, other
// options at their defaults), closed when the test ends. Each call returns
// a separate client, as separate processes would have.
func (r *Redis) Client() *redis.Client {
	c := redis.NewClient(&redis.Options{Addr: r.Addr, ContextTimeoutEnabled: true})
	r.t.Cleanup(func() { _ = c.Close() })
	return c
}

// Stop stops the server (SIGTERM, SIGKILL after 5 s) and waits for it to
// exit; its data is lost. The port is kept for Start. Stopping a stopped
// server does nothing.
func (r *Redis) Stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid == 0 {
		return
	}
	stopProcess(r.pid, r.exited, 5*time.Second)
	r.pid = 0
}

// Start restarts a stopped server on the same port and waits until it
// answers PING; it fails the test if that does not work. Starting a running
// server does nothing.
func (r *Redis) Start() {
	r.t.Helper()
	if err := r.start(); err != nil {
		r.t.Fatalf("testenv: Redis.Start on %s: %v\n--- tail of %s ---\n%s", r.Addr, err, r.Log, logTail(r.Log, 4096))
	}
}

// start runs redis-server and waits until it answers; on failure it is
// already stopped.
func (r *Redis) start() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pid != 0 {
		return nil
	}
	logf, err := os.OpenFile(r.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own descriptor
	args := []string{
		"--bind", "127.0.0.1", "--port", strconv.Itoa(r.port),
		"--save", "", "--appendonly", "no",
		"--dir", r.dir,
	}
	fmt.Fprintf(logf, "=== %s %q\n", r.bin, args)
	cmd := exec.Command(r.bin, args...)
	cmd.Dir = r.dir
	cmd.Stdout, cmd.Stderr = logf, logf
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(exited)
	}()
	if err := waitRedisReady(r.Addr, exited); err != nil {
		stopProcess(cmd.Process.Pid, exited, 5*time.Second)
		if waitErr != nil {
			err = fmt.Errorf("%w (process: %v)", err, waitErr)
		}
		return err
	}
	r.pid, r.exited = cmd.Process.Pid, exited
	return nil
}

// waitRedisReady polls PING until it answers, the process exits or
// redisStartTimeout passes.
func waitRedisReady(addr string, exited <-chan struct{}) error {
	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, DialTimeout: time.Second, ContextTimeoutEnabled: true})
	defer c.Close()
	deadline := time.Now().Add(redisStartTimeout)
	var lastErr error
	for {
		select {
		case <-exited:
			return fmt.Errorf("redis-server exited during startup (last PING error: %v)", lastErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		err := c.Ping(ctx).Err()
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return errors.Join(fmt.Errorf("redis-server did not answer PING within %v", redisStartTimeout), lastErr)
		}
		select {
		case <-exited:
		case <-time.After(20 * time.Millisecond):
		}
	}
}
