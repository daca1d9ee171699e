package redislocker

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/test/testenv"
)

// testLog is the logger of the lockers under test: warnings and errors only,
// to the test's output.
// REDISLOCKER_TEST_DEBUG=1 shows debug messages too.
func testLog(t *testing.T) *slog.Logger {
	level := slog.LevelWarn
	if os.Getenv("REDISLOCKER_TEST_DEBUG") == "1" {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: level}))
}

type testWriter struct{ t *testing.T }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// newLocker returns a Locker on client, closed when the test ends.
func newLocker(t *testing.T, client redis.UniversalClient, opts Options) *Locker {
	t.Helper()
	opts.Client = client
	if opts.Log == nil {
		opts.Log = testLog(t)
	}
	l, err := New(opts)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	t.Cleanup(func() { _ = l.Close() })
	return l
}

// mustNewLock returns a new lock of l for id.
func mustNewLock(t *testing.T, l *Locker, id string) *lock {
	t.Helper()
	lk, err := l.NewLock(id)
	if err != nil {
		t.Fatalf("NewLock(%q): %v", id, err)
	}
	return lk.(*lock)
}

// lockWithin locks lk with a context ending after d.
func lockWithin(lk handler.Lock, d time.Duration, requestUnlock func()) error {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	return lk.Lock(ctx, requestUnlock)
}

// waitFor polls cond every 10 ms until it holds or d passes.
func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// receiveWithin waits for a value from ch for at most d.
func receiveWithin[T any](t *testing.T, ch <-chan T, d time.Duration, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(d):
		t.Fatalf("timed out after %v waiting for %s", d, what)
		panic("unreachable")
	}
}

// metricValue sums the values (counters) or sample counts (histograms) of c.
func metricValue(t *testing.T, c prometheus.Collector) float64 {
	t.Helper()
	ch := make(chan prometheus.Metric, 16)
	c.Collect(ch)
	close(ch)
	var sum float64
	for m := range ch {
		var d dto.Metric
		if err := m.Write(&d); err != nil {
			t.Fatal(err)
		}
		switch {
		case d.Counter != nil:
			sum += d.Counter.GetValue()
		case d.Histogram != nil:
			sum += float64(d.Histogram.GetSampleCount())
		}
	}
	return sum
}

// pubsubClients counts the connections to r that hold pattern subscriptions.
func pubsubClients(t *testing.T, c *redis.Client) int {
	t.Helper()
	list, err := c.ClientList(t.Context()).Result()
	if err != nil {
		t.Fatalf("CLIENT LIST: %v", err)
	}
	n := 0
	for line := range strings.Lines(list) {
		for f := range strings.FieldsSeq(line) {
			if strings.HasPrefix(f, "psub=") && f != "psub=0" {
				n++
			}
		}
	}
	return n
}

func TestNewChecksOptionsWithoutContactingRedis(t *testing.T) {
	t.Parallel()
	// Nothing listens on port 1: New must not care.
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer client.Close()

	for name, opts := range map[string]Options{
		"no client":           {},
		"short lease":         {Client: client, LeaseTTL: 50 * time.Millisecond},
		"negative renew":      {Client: client, Renew: -time.Second},
		"renew too long":      {Client: client, LeaseTTL: 10 * time.Second, Renew: 9500 * time.Millisecond},
		"renew equals lease":  {Client: client, LeaseTTL: 2 * time.Second, Renew: 2 * time.Second},
		"renew+timeout=lease": {Client: client, LeaseTTL: 2 * time.Second, Renew: time.Second},
	} {
		if l, err := New(opts); err == nil {
			_ = l.Close()
			t.Errorf("%s: New succeeded", name)
		}
	}

	start := time.Now()
	reg := prometheus.NewRegistry()
	l, err := New(Options{Client: client, Registerer: reg})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	if d := time.Since(start); d > 100*time.Millisecond {
		t.Errorf("New took %v", d)
	}
	if l.prefix != DefaultPrefix || l.ttl != DefaultLeaseTTL || l.renew != 5*time.Second || l.renewTimeout != time.Second {
		t.Errorf("defaults: prefix %q ttl %v renew %v renewTimeout %v", l.prefix, l.ttl, l.renew, l.renewTimeout)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, mf := range mfs {
		names = append(names, mf.GetName())
	}
	want := "tusgate_lock_acquire_errors_total tusgate_lock_lease_lost_total tusgate_lock_release_requests_total tusgate_lock_wait_seconds"
	if got := strings.Join(names, " "); got != want {
		t.Errorf("metrics %q, want %q", got, want)
	}
	if _, err := New(Options{Client: client, Registerer: reg}); err == nil {
		t.Error("New registering the same metrics twice succeeded")
	}
	if _, err := l.NewLock(""); err == nil {
		t.Error("NewLock(\"\") succeeded")
	}
	if err := l.Close(); err != nil {
		t.Errorf("Close of an unused Locker: %v", err)
	}
	if err := l.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	// A closed Locker answers 503 at once.
	lk, _ := l.NewLock("x")
	if err := lockWithin(lk, time.Second, nil); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock on a closed Locker: %v, want ErrUnavailable", err)
	}

	if got := globEscape(`a*b?c[d]e\f`); got != `a\*b\?c\[d\]e\\f` {
		t.Errorf("globEscape = %q", got)
	}
}

// TestMutualExclusion: 50 goroutines on two Lockers with their own clients
// (as two processes would have) take the same lock; nobody is ever inside
// the critical section together with someone else.
func TestMutualExclusion(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	lockers := []*Locker{newLocker(t, r.Client(), Options{}), newLocker(t, r.Client(), Options{})}

	const n = 50
	var inside atomic.Bool
	var violations, entered atomic.Int64
	errs := make(chan error, n)
	start := time.Now()
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			lk, err := lockers[i%2].NewLock("contended")
			if err != nil {
				errs <- err
				return
			}
			if err := lockWithin(lk, 60*time.Second, func() {}); err != nil {
				errs <- fmt.Errorf("goroutine %d: Lock: %w", i, err)
				return
			}
			if inside.Swap(true) {
				violations.Add(1)
			}
			entered.Add(1)
			time.Sleep(time.Millisecond) // widen the window for an overlap
			if !inside.CompareAndSwap(true, false) {
				violations.Add(1)
			}
			if err := lk.Unlock(); err != nil {
				errs <- fmt.Errorf("goroutine %d: Unlock: %w", i, err)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("%d lock/unlock cycles through 2 Lockers in %v; release requests sent: %v + %v",
		n, time.Since(start), metricValue(t, lockers[0].m.releaseRequests), metricValue(t, lockers[1].m.releaseRequests))
	if v := violations.Load(); v != 0 {
		t.Errorf("%d mutual exclusion violations", v)
	}
	if e := entered.Load(); e != n {
		t.Errorf("%d of %d goroutines got the lock", e, n)
	}
	for i, l := range lockers {
		l.mu.Lock()
		if len(l.held) != 0 || len(l.waiters) != 0 {
			t.Errorf("Locker %d: held %v waiters %v after all unlocked", i, l.held, l.waiters)
		}
		l.mu.Unlock()
		if got := metricValue(t, l.m.wait); got != n/2 {
			t.Errorf("Locker %d: wait histogram has %v samples, want %d", i, got, n/2)
		}
	}
	if n, err := r.Client().Exists(t.Context(), DefaultPrefix+"contended").Result(); err != nil || n != 0 {
		t.Errorf("EXISTS lock key after all unlocked = %d, %v", n, err)
	}
}

// TestReleaseRequest: a holder that unlocks when asked lets a Lock on
// another instance (or the same one) through within 1 s.
func TestReleaseRequest(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	la := newLocker(t, r.Client(), Options{})
	lb := newLocker(t, r.Client(), Options{})

	for _, tc := range []struct {
		name   string
		holder *Locker
		waiter *Locker
	}{
		{"other instance", la, lb},
		{"other instance reversed", lb, la},
		{"same instance", la, la},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var worst time.Duration
			for round := range 5 {
				id := fmt.Sprintf("%s-%d", tc.name, round)
				holder := mustNewLock(t, tc.holder, id)
				var calls atomic.Int32
				unlocked := make(chan error, 1)
				if err := lockWithin(holder, 5*time.Second, func() {
					calls.Add(1)
					unlocked <- holder.Unlock()
				}); err != nil {
					t.Fatalf("holder Lock: %v", err)
				}
				sent := metricValue(t, tc.waiter.m.releaseRequests)

				waiter := mustNewLock(t, tc.waiter, id)
				start := time.Now()
				err := lockWithin(waiter, 5*time.Second, func() {})
				took := time.Since(start)
				if err != nil {
					t.Fatalf("waiter Lock: %v", err)
				}
				worst = max(worst, took)
				// Below resendInterval: the first release request was
				// honoured, not a repeat of it.
				if took >= resendInterval {
					t.Errorf("round %d: waiter got the lock after %v, want < %v", round, took, resendInterval)
				}
				if err := receiveWithin(t, unlocked, time.Second, "the holder's Unlock"); err != nil {
					t.Errorf("holder Unlock: %v", err)
				}
				if got := metricValue(t, tc.waiter.m.releaseRequests) - sent; got < 1 {
					t.Errorf("release requests sent: %v, want ≥ 1", got)
				}
				if err := waiter.Unlock(); err != nil {
					t.Fatalf("waiter Unlock: %v", err)
				}
				if c := calls.Load(); c != 1 {
					t.Errorf("holder's requestUnlock called %d times, want 1", c)
				}
			}
			t.Logf("worst of 5 hand-overs: %v", worst)
		})
	}
}

// TestLockTimeout: a holder that ignores release requests keeps the lock;
// the waiter gives up with tusd's ErrLockTimeout when its context ends.
func TestLockTimeout(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	la := newLocker(t, r.Client(), Options{})
	lb := newLocker(t, r.Client(), Options{})
	holder := mustNewLock(t, la, "stubborn")
	asked := make(chan struct{}, 1)
	if err := lockWithin(holder, 5*time.Second, func() { asked <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	defer holder.Unlock()

	start := time.Now()
	err := lockWithin(mustNewLock(t, lb, "stubborn"), 700*time.Millisecond, nil)
	took := time.Since(start)
	if !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("Lock: %v, want ErrLockTimeout", err)
	}
	var herr handler.Error
	if !errors.As(err, &herr) || herr.HTTPResponse.StatusCode != 500 {
		t.Errorf("Lock error %v is not tusd's ErrLockTimeout", err)
	}
	if took < 700*time.Millisecond || took > 700*time.Millisecond+3*time.Second {
		t.Errorf("Lock gave up after %v, want 700ms (plus scheduling delays)", took)
	}
	receiveWithin(t, asked, time.Second, "the release request")
	if got := metricValue(t, lb.m.acquireErrors); got != 1 {
		t.Errorf("acquire errors = %v, want 1", got)
	}
}

// TestHelperProcess is not a test: run by TestHolderKilled as a separate
// process, it takes a lock (LeaseTTL 2s), prints "LOCKED", prints "ASKED"
// when asked to release (which it ignores) and waits to be killed.
func TestHelperProcess(t *testing.T) {
	if os.Getenv("REDISLOCKER_HELPER") != "1" {
		return
	}
	client := redis.NewClient(&redis.Options{Addr: os.Getenv("REDISLOCKER_ADDR"), ContextTimeoutEnabled: true})
	l, err := New(Options{Client: client, LeaseTTL: 2 * time.Second})
	if err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	lk, _ := l.NewLock(os.Getenv("REDISLOCKER_ID"))
	if err := lockWithin(lk, 5*time.Second, func() { fmt.Println("ASKED") }); err != nil {
		fmt.Println("ERROR", err)
		os.Exit(1)
	}
	fmt.Println("LOCKED", lk.(*lock).token)
	time.Sleep(time.Minute) // the parent kills us long before
	os.Exit(2)
}

// TestHolderKilled: a holder process renews its lock beyond LeaseTTL while
// it lives; after SIGKILL its lease runs out and the waiter gets the lock
// then, not before.
func TestHolderKilled(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	const id = "orphaned"
	const ttl = 2 * time.Second
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
	cmd.Env = append(os.Environ(), "REDISLOCKER_HELPER=1", "REDISLOCKER_ADDR="+r.Addr, "REDISLOCKER_ID="+id)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		<-waited
	})
	lines := make(chan string, 16)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waited <- cmd.Wait()
	}()
	line := receiveWithin(t, lines, 30*time.Second, "the helper to lock")
	token, ok := strings.CutPrefix(line, "LOCKED ")
	if !ok {
		t.Fatalf("helper said %q", line)
	}

	lb := newLocker(t, r.Client(), Options{LeaseTTL: ttl})
	// Alive, the helper renews its lease: after more than LeaseTTL the lock
	// is still its own, although it was asked to release it.
	start := time.Now()
	err = lockWithin(mustNewLock(t, lb, id), ttl+time.Second, nil)
	if !errors.Is(err, handler.ErrLockTimeout) {
		t.Fatalf("Lock while the holder lives: %v, want ErrLockTimeout", err)
	}
	t.Logf("holder alive: Lock timed out after %v", time.Since(start))
	if got := receiveWithin(t, lines, time.Second, "the helper's ASKED"); got != "ASKED" {
		t.Errorf("helper said %q, want ASKED", got)
	}
	raw := r.Client()
	if v, err := raw.Get(t.Context(), DefaultPrefix+id).Result(); err != nil || v != token {
		t.Fatalf("lock key = %q, %v; want the helper's token", v, err)
	}

	// SIGKILL: no Unlock, no "released" message; the lease runs out.
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	killed := time.Now()
	pttl, err := raw.PTTL(t.Context(), DefaultPrefix+id).Result()
	if err != nil || pttl <= 0 || pttl > ttl {
		t.Fatalf("PTTL after the kill = %v, %v", pttl, err)
	}
	lk := mustNewLock(t, lb, id)
	if err := lockWithin(lk, 10*time.Second, nil); err != nil {
		t.Fatalf("Lock after the holder died: %v", err)
	}
	took := time.Since(killed)
	t.Logf("holder killed with %v of lease left; Lock succeeded %v after the kill", pttl, took)
	// pttl, read after the kill, is what was left of the lease; how often
	// the helper actually renewed before that is up to the scheduler.
	if took < pttl-50*time.Millisecond {
		t.Errorf("lock taken %v after the kill, before the lease (%v left) ran out", took, pttl)
	}
	if took > pttl+pollInterval+time.Second {
		t.Errorf("lock taken %v after the kill, long after the lease (%v left) ran out", took, pttl)
	}
	_ = lk.Unlock()
}

// TestLeaseLost: when the key is taken away behind the holder's back, its
// requestUnlock is called within Renew+1s, and its Unlock leaves the new
// owner's key alone.
func TestLeaseLost(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	raw := r.Client()
	const ttl = 2 * time.Second
	la := newLocker(t, r.Client(), Options{LeaseTTL: ttl})
	lb := newLocker(t, r.Client(), Options{LeaseTTL: ttl})

	for _, tc := range []struct {
		name string
		take func(t *testing.T, key string) (owner string)
	}{
		{"overwritten", func(t *testing.T, key string) string {
			if err := raw.Set(t.Context(), key, "intruder", 10*time.Second).Err(); err != nil {
				t.Fatal(err)
			}
			return "intruder"
		}},
		{"expired and taken over", func(t *testing.T, key string) string {
			if err := raw.Del(t.Context(), key).Err(); err != nil {
				t.Fatal(err)
			}
			other := mustNewLock(t, lb, strings.TrimPrefix(key, DefaultPrefix))
			if err := lockWithin(other, time.Second, func() {}); err != nil {
				t.Fatalf("other Lock: %v", err)
			}
			t.Cleanup(func() { _ = other.Unlock() })
			return other.token
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "lease-" + strings.ReplaceAll(tc.name, " ", "-")
			lost := metricValue(t, la.m.leaseLost)
			holder := mustNewLock(t, la, id)
			asked := make(chan time.Time, 1)
			if err := lockWithin(holder, time.Second, func() { asked <- time.Now() }); err != nil {
				t.Fatal(err)
			}
			took := time.Now()
			owner := tc.take(t, holder.key)
			at := receiveWithin(t, asked, la.renew+time.Second+500*time.Millisecond, "requestUnlock after the lease was lost")
			t.Logf("requestUnlock called %v after the key was taken (Renew %v)", at.Sub(took), la.renew)
			if d := at.Sub(took); d > la.renew+time.Second {
				t.Errorf("requestUnlock after %v, want within Renew+1s = %v", d, la.renew+time.Second)
			}
			if got := metricValue(t, la.m.leaseLost) - lost; got != 1 {
				t.Errorf("lease lost counted %v times, want 1", got)
			}
			if err := holder.Unlock(); err != nil {
				t.Errorf("Unlock: %v", err)
			}
			if v, err := raw.Get(t.Context(), holder.key).Result(); err != nil || v != owner {
				t.Errorf("after the old holder's Unlock the key holds %q (%v), want %q", v, err, owner)
			}
		})
	}
}

// TestRedisDown: with Redis stopped, Lock fails fast with ErrUnavailable,
// held locks are interrupted and Ping fails; after a restart the same
// Lockers work again, release requests included.
func TestRedisDown(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	raw := r.Client()
	const ttl = 2 * time.Second
	la := newLocker(t, r.Client(), Options{LeaseTTL: ttl})
	lb := newLocker(t, r.Client(), Options{LeaseTTL: ttl})

	holder := mustNewLock(t, la, "held-during-outage")
	asked := make(chan time.Time, 1)
	if err := lockWithin(holder, time.Second, func() { asked <- time.Now() }); err != nil {
		t.Fatal(err)
	}
	if err := la.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	if got := pubsubClients(t, raw); got != 1 {
		t.Errorf("%d pattern-subscribed connections, want 1 (la's)", got)
	}

	r.Stop()
	stopped := time.Now()

	start := time.Now()
	err := lockWithin(mustNewLock(t, lb, "during-outage"), 20*time.Second, nil)
	took := time.Since(start)
	t.Logf("Lock with Redis down: %v after %v", err, took)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock with Redis down: %v, want ErrUnavailable", err)
	}
	var herr handler.Error
	if !errors.As(err, &herr) || herr.HTTPResponse.StatusCode != 503 || herr.HTTPResponse.Header["Retry-After"] != "5" || herr.ErrorCode != "ERR_LOCK_UNAVAILABLE" {
		t.Errorf("Lock error %#v is not ErrUnavailable", herr)
	}
	if took >= 3*time.Second {
		t.Errorf("Lock with Redis down took %v, want < 3s", took)
	}
	if got := metricValue(t, lb.m.acquireErrors); got != 1 {
		t.Errorf("acquire errors = %v, want 1", got)
	}

	at := receiveWithin(t, asked, la.renew+5*time.Second, "requestUnlock of the holder after Redis stopped")
	t.Logf("holder asked to unlock %v after Redis stopped (Renew %v)", at.Sub(stopped), la.renew)
	if d := at.Sub(stopped); d > la.renew+3*time.Second {
		t.Errorf("holder asked %v after Redis stopped, want within Renew+1s (plus scheduling delays)", d)
	}
	if got := metricValue(t, la.m.leaseLost); got != 1 {
		t.Errorf("lease lost = %v, want 1", got)
	}
	if err := holder.Unlock(); err == nil {
		t.Error("Unlock with Redis down succeeded")
	}

	start = time.Now()
	if err := la.Ping(t.Context()); err == nil {
		t.Error("Ping with Redis down succeeded")
	}
	t.Logf("Ping with Redis down failed after %v", time.Since(start))

	r.Start()
	restarted := time.Now()
	waitFor(t, 10*time.Second, "Ping after the restart", func() bool { return la.Ping(t.Context()) == nil })
	t.Logf("Ping answers %v after the restart", time.Since(restarted))

	// The same Lockers work again, release requests included: la's Lock
	// returns once its subscription is back, so lb's request reaches it.
	h := mustNewLock(t, la, "after-restart")
	unlocked := make(chan error, 1)
	if err := lockWithin(h, 5*time.Second, func() { unlocked <- h.Unlock() }); err != nil {
		t.Fatalf("Lock after the restart: %v", err)
	}
	t.Logf("first Lock succeeded %v after the restart", time.Since(restarted))
	w := mustNewLock(t, lb, "after-restart")
	start = time.Now()
	if err := lockWithin(w, 5*time.Second, nil); err != nil {
		t.Fatalf("second Lock after the restart: %v", err)
	}
	took = time.Since(start)
	t.Logf("release request after the restart honoured in %v", took)
	// Below resendInterval: the first request reached h, not a repeat.
	if took >= resendInterval {
		t.Errorf("release request after the restart took %v, want < %v", took, resendInterval)
	}
	if err := receiveWithin(t, unlocked, time.Second, "the holder's Unlock"); err != nil {
		t.Errorf("holder Unlock: %v", err)
	}
	if err := w.Unlock(); err != nil {
		t.Errorf("Unlock: %v", err)
	}
	waitFor(t, 5*time.Second, "both Lockers to resubscribe", func() bool { return pubsubClients(t, raw) == 2 })
}

func TestPing(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := newLocker(t, r.Client(), Options{})
	if err := l.Ping(t.Context()); err != nil {
		t.Fatalf("Ping: %v", err)
	}
	r.Stop()
	start := time.Now()
	err := l.Ping(t.Context())
	if err == nil {
		t.Fatal("Ping with Redis down succeeded")
	}
	if d := time.Since(start); d > 2500*time.Millisecond {
		t.Errorf("Ping with Redis down took %v", d)
	}
	r.Start()
	waitFor(t, 10*time.Second, "Ping after the restart", func() bool { return l.Ping(t.Context()) == nil })
}

// TestOneSubscriptionNoLeaks: many locks share one subscription; after
// Unlock and Close nothing is left behind (goroutines, map entries).
//
// Not parallel: it counts the goroutines of the whole test binary.
func TestOneSubscriptionNoLeaks(t *testing.T) {
	r := testenv.StartRedis(t)
	raw := r.Client()
	client := r.Client()
	for _, c := range []*redis.Client{raw, client} {
		if err := c.Ping(t.Context()).Err(); err != nil {
			t.Fatal(err)
		}
	}
	before := runtime.NumGoroutine()
	l, err := New(Options{Client: client, Log: testLog(t)})
	if err != nil {
		t.Fatal(err)
	}

	const n = 20
	var locks []*lock
	for i := range n {
		lk := mustNewLock(t, l, fmt.Sprintf("many-%d", i))
		if err := lockWithin(lk, time.Second, nil); err != nil {
			t.Fatal(err)
		}
		locks = append(locks, lk)
	}
	if got := pubsubClients(t, raw); got != 1 {
		t.Errorf("%d locks held: %d pattern-subscribed connections, want 1", n, got)
	}
	if got, err := raw.PubSubNumPat(t.Context()).Result(); err != nil || got != 1 {
		t.Errorf("PUBSUB NUMPAT = %d, %v; want 1", got, err)
	}
	// Some contention, then everything unlocked.
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() {
			lk, _ := l.NewLock(fmt.Sprintf("many-%d", i))
			if err := lockWithin(lk, 5*time.Second, nil); err != nil {
				t.Errorf("contending Lock: %v", err)
				return
			}
			_ = lk.Unlock()
		})
	}
	for _, lk := range locks {
		if err := lk.Unlock(); err != nil {
			t.Error(err)
		}
	}
	wg.Wait()
	l.mu.Lock()
	if len(l.held) != 0 || len(l.waiters) != 0 {
		t.Errorf("held %v waiters %v after all unlocked", l.held, l.waiters)
	}
	l.mu.Unlock()

	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, fmt.Sprintf("goroutines back to %d", before), func() bool { return runtime.NumGoroutine() <= before })
	waitFor(t, 5*time.Second, "the subscription to end", func() bool { return pubsubClients(t, raw) == 0 })
}

// TestCloseReleasesHeld: Close interrupts holders, deletes their keys and
// fails the Lock calls waiting.
func TestCloseReleasesHeld(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	raw := r.Client()
	l := newLocker(t, r.Client(), Options{})
	lk := mustNewLock(t, l, "closing")
	asked := make(chan struct{}, 1)
	if err := lockWithin(lk, time.Second, func() { asked <- struct{}{} }); err != nil {
		t.Fatal(err)
	}
	busy := mustNewLock(t, l, "busy")
	if err := lockWithin(busy, time.Second, func() {}); err != nil {
		t.Fatal(err)
	}
	waiting := make(chan error, 1)
	go func() { waiting <- lockWithin(mustNewLock(t, l, "busy"), 10*time.Second, nil) }()
	waitFor(t, 2*time.Second, "the Lock on busy to wait", func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		return len(l.waiters["busy"]) == 1
	})
	select {
	case <-asked:
		t.Fatal("requestUnlock called before Close")
	default:
	}
	if err := l.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	receiveWithin(t, asked, time.Second, "requestUnlock at Close")
	if err := receiveWithin(t, waiting, time.Second, "the waiting Lock to fail"); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock waiting during Close: %v, want ErrUnavailable", err)
	}
	if n, err := raw.Exists(t.Context(), lk.key, busy.key).Result(); err != nil || n != 0 {
		t.Errorf("EXISTS keys after Close = %d, %v", n, err)
	}
	for _, h := range []*lock{lk, busy} {
		if err := h.Unlock(); err != nil {
			t.Errorf("Unlock after Close: %v", err)
		}
	}
}

func TestHeldSeesLocksOfOtherInstances(t *testing.T) {
	r := testenv.StartRedis(t)
	a := newLocker(t, r.Client(), Options{})
	b := newLocker(t, r.Client(), Options{})
	lk := mustNewLock(t, a, "owner/held")
	if held, err := b.Held(t.Context(), "owner/held"); err != nil || held {
		t.Fatalf("before Lock: Held = %v, %v; want false, nil", held, err)
	}
	if err := lockWithin(lk, 5*time.Second, func() {}); err != nil {
		t.Fatal(err)
	}
	if held, err := b.Held(t.Context(), "owner/held"); err != nil || !held {
		t.Fatalf("while locked: Held = %v, %v; want true, nil", held, err)
	}
	if held, _ := b.Held(t.Context(), "owner/other"); held {
		t.Fatal("Held reports an unrelated upload")
	}
	if err := lk.Unlock(); err != nil {
		t.Fatal(err)
	}
	if held, err := b.Held(t.Context(), "owner/held"); err != nil || held {
		t.Fatalf("after Unlock: Held = %v, %v; want false, nil", held, err)
	}
	r.Stop()
	if _, err := b.Held(t.Context(), "owner/held"); err == nil {
		t.Fatal("Held with Redis down: no error")
	}
}
