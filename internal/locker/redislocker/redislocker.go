// Package redislocker is a tusd Locker whose locks are shared through Redis,
// so that several tusgate instances behind a load balancer without sticky
// sessions never work on the same upload at the same time.
//
// # Locks
//
// A lock is the key <Prefix><upload ID> holding a random token of the Lock
// object that took it. It is taken with SET key token NX PX LeaseTTL, renewed
// every Renew by a Lua compare-and-PEXPIRE, and freed by a Lua
// compare-and-delete, so an instance never extends or frees a lock it no
// longer owns.
//
// # Release requests
//
// tusd's contract (handler.Lock) is that a caller who wants a held lock makes
// the holder's requestUnlock run; tusd then stops reading the holder's
// request body, saves what it received and unlocks. Across instances this
// goes through Redis pub/sub:
//
//   - A Lock that finds the key held publishes on <Prefix><id>:release. It
//     publishes again right after every failed attempt that followed a
//     "released" notification (the lock changed hands in between: the new
//     holder is asked too, as tusd's memorylocker does) and otherwise every
//     2 s, in case the request was lost (pub/sub delivers at most once).
//   - The holder's instance calls the holder's requestUnlock (once per
//     holding; repeated requests are not forwarded).
//   - Unlock's compare-and-delete script publishes on <Prefix><id>:released
//     when it deleted the key. Waiters retry their SET NX on that message and,
//     as a safety net for holders that die without unlocking, every 500 ms.
//   - A waiter gives up with handler.ErrLockTimeout when its context ends
//     (tusd's AcquireLockTimeout, 20 s by default).
//
// Each Locker has exactly one subscription: one PSUBSCRIBE of <Prefix>* on
// one dedicated connection (started by the first Lock), whatever the number
// of locks held or awaited; messages are dispatched in memory to the Lock
// objects concerned. The subscription is pinged after 1 s of silence and
// replaced on a new connection (back-off 50 ms doubling up to 1 s) when
// reading fails, a ping goes unanswered for 1 s, or Redis does not confirm
// it within 2 s. A Lock returns only once the subscription is confirmed, so
// a release request published after Lock returned reaches the holder unless
// the subscription breaks later (the waiter's repeats then cover it). Every
// instance sees every release message, and every waiter of an upload
// publishes on its own: one message per waiter per hand-over, a handful per
// contended tus request.
//
// # Leases and their margin
//
// S3 has no fencing tokens: an instance that lost its lock but keeps writing
// parts can corrupt an upload. The only protection is timing. Let the last
// successful renewal start at t. The lease then expires in Redis no earlier
// than t+LeaseTTL, when another instance may take the lock. The holder
// attempts the next renewal at t+Renew, and that attempt fails after at most
// the renewal timeout R (1 s, or Renew if smaller; enforced by a local timer
// even if the Redis client ignores context deadlines), so it learns of the
// failure by t+Renew+R and at once calls requestUnlock. From then tusd may
// still write for its graceful completion time G (GracefulRequestCompletionTimeout,
// at most 10 s in tusgate) plus one part upload P already in flight. Safety
// therefore needs
//
//	LeaseTTL > Renew + R + G + P
//
// With the defaults, 30 s > 5 s + 1 s + 10 s + P holds for P < 14 s: a
// 50 MiB part at 4 MB/s or faster. Raise LeaseTTL for slower links to S3
// or larger parts; a longer lease only delays the takeover of uploads whose
// holder died without unlocking (a killed process), which then waits up to
// LeaseTTL.
//
// When a renewal fails, because Redis did not answer in time or the key no
// longer holds our token, the lease is counted as lost
// (tusgate_lock_lease_lost_total), a warning is logged and requestUnlock is
// called; renewals of that holding stop.
//
// # Redis down
//
// Lock gives each Redis command a budget of 2 s (also bounded by its
// context) and answers ErrUnavailable (503, Retry-After: 5) when Redis cannot
// be reached, rather than waiting for the lock timeout. For the budget to
// hold against a black-holed connection (not only a refused one), create
// the client with ContextTimeoutEnabled: true; otherwise go-redis waits for
// its ReadTimeout (3 s by default), and resubscribing after the outage takes
// seconds longer. With go-redis's default retries (3 retries, 5 dial
// attempts each) a refused connection also uses most of the 2 s; fewer
// retries (MaxRetries, DialerRetries) answer sooner. Renewals do not depend
// on the client's settings: their timeout is enforced by a local timer.
package redislocker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"
)

// Defaults of Options.
const (
	DefaultPrefix   = "tusgate:lock:"
	DefaultLeaseTTL = 30 * time.Second
)

// Timings that are not options; see the package documentation.
const (
	// opTimeout bounds every Redis command of Lock, Unlock, Ping and Close,
	// and the wait for the subscription in Lock.
	opTimeout = 2 * time.Second
	// maxRenewTimeout bounds a renewal (R in the package documentation);
	// the renewal timeout is the smaller of it and Renew.
	maxRenewTimeout = time.Second
	// pollInterval is how often a waiter retries without a notification.
	pollInterval = 500 * time.Millisecond
	// resendInterval is how often a waiter repeats its release request
	// without a sign that the lock changed hands.
	resendInterval = 2 * time.Second
	// subIdle is how long the subscription may stay silent before it is
	// pinged; no answer within another subIdle means the connection is dead.
	subIdle = time.Second
	// subMaxBackoff caps the wait between attempts to resubscribe.
	subMaxBackoff = time.Second
	// minLeaseTTL is the shortest lease New accepts.
	minLeaseTTL = 100 * time.Millisecond
)

// Suffixes of the pub/sub channels: <prefix><id><suffix>.
const (
	releaseSuffix  = ":release"
	releasedSuffix = ":released"
)

// ErrUnavailable is what Lock answers when Redis cannot be reached (or the
// Locker is closed). Lock returns an error wrapping it: errors.Is and
// errors.As find it, and so does tusd, which sends its HTTPResponse to the
// client.
var ErrUnavailable = handler.Error{
	ErrorCode: "ERR_LOCK_UNAVAILABLE",
	Message:   "the upload lock service is temporarily unavailable; retry later",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_LOCK_UNAVAILABLE: the upload lock service is temporarily unavailable; retry later\n",
		Header: handler.HTTPHeader{
			"Content-Type": "text/plain; charset=utf-8",
			"Retry-After":  "5",
		},
	},
}

// errClosed is wrapped in the errors of a closed Locker.
var errClosed = errors.New("locker closed")

// unlockScript deletes KEYS[1] if it still holds the token ARGV[1], and then
// announces it on the channel ARGV[2]. It returns 1 if it deleted the key.
var unlockScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	redis.call("DEL", KEYS[1])
	redis.call("PUBLISH", ARGV[2], ARGV[1])
	return 1
end
return 0
`)

// renewScript sets the time to live of KEYS[1] to ARGV[2] milliseconds if it
// still holds the token ARGV[1]. It returns 1 if it did.
var renewScript = redis.NewScript(`
if redis.call("GET", KEYS[1]) == ARGV[1] then
	return redis.call("PEXPIRE", KEYS[1], ARGV[2])
end
return 0
`)

// defaultRenew is the renewal interval of a lease when Options.Renew is 0.
func defaultRenew(lease time.Duration) time.Duration { return lease / 6 }

// renewalTimeout is R of the package documentation for a renewal interval.
func renewalTimeout(renew time.Duration) time.Duration { return min(maxRenewTimeout, renew) }

// RenewalWindow is how long a holder with the default renewal interval
// (LeaseTTL/6) may take, after the start of its last successful renewal, to
// learn that its lease is lost: Renew + R in the package documentation. A
// lease must exceed it by the time the holder's request may still write
// after being interrupted (G + P).
func RenewalWindow(lease time.Duration) time.Duration {
	renew := defaultRenew(lease)
	return renew + renewalTimeout(renew)
}

// Options configure New.
type Options struct {
	// Client reaches Redis (required). It is not closed by Close. Create it
	// with ContextTimeoutEnabled: true; see the package documentation.
	Client redis.UniversalClient
	// Prefix of the lock keys and pub/sub channels (default
	// DefaultPrefix). All instances sharing uploads must use the same.
	Prefix string
	// LeaseTTL is how long a lock outlives its last renewal (default
	// DefaultLeaseTTL); see the package documentation for the margin it
	// must leave. At least 100 ms.
	LeaseTTL time.Duration
	// Renew is the renewal interval (default LeaseTTL/6). Renew plus the
	// renewal timeout (1 s, or Renew if smaller) must be below LeaseTTL.
	Renew time.Duration
	// Log receives operational messages (default slog.Default()).
	Log *slog.Logger
	// Registerer, if set, receives the metrics: tusgate_lock_wait_seconds,
	// tusgate_lock_release_requests_total, tusgate_lock_lease_lost_total
	// and tusgate_lock_acquire_errors_total{reason}.
	Registerer prometheus.Registerer
}

// Locker hands out locks shared through Redis. It is safe for concurrent
// use. Close it when done.
type Locker struct {
	client       redis.UniversalClient
	prefix       string
	pattern      string // PSUBSCRIBE pattern matching all our channels
	ttl          time.Duration
	renew        time.Duration
	renewTimeout time.Duration
	log          *slog.Logger
	m            metrics

	ctx    context.Context // ended by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup // the subscriber and the renewal goroutines

	subOnce sync.Once

	mu      sync.Mutex
	closed  bool
	ps      *redis.PubSub // current subscription, if any
	live    chan struct{} // closed while the subscription is confirmed
	isLive  bool          // live is closed
	wasLive bool          // the subscription has been live once
	held    map[string]map[*holding]struct{}
	waiters map[string]map[*waiter]struct{}
}

// holding is one acquisition of a lock, from Lock to Unlock.
type holding struct {
	id, key, token string
	requestUnlock  func()
	leased         time.Time // when the SET that took the lock was sent
	acquired       time.Time // when it answered

	asked atomic.Bool   // requestUnlock has been called
	stop  chan struct{} // closed by whoever removes the holding from Locker.held
	done  chan struct{} // closed when its renewal goroutine has returned
}

// waiter is one Lock call in progress; guarded by Locker.mu.
type waiter struct {
	wake  chan struct{} // receives a token when the lock was freed
	asked bool          // a release request arrived since the last SET attempt
}

// metrics are the Locker's Prometheus metrics.
type metrics struct {
	wait            prometheus.Histogram
	releaseRequests prometheus.Counter
	leaseLost       prometheus.Counter
	acquireErrors   *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (metrics, error) {
	m := metrics{
		wait: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "tusgate_lock_wait_seconds",
			Help:    "Time from the start of Lock to the acquisition of an upload lock (successful acquisitions only).",
			Buckets: []float64{.001, .005, .01, .05, .1, .25, .5, 1, 2.5, 5, 10, 20, 30},
		}),
		releaseRequests: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_lock_release_requests_total",
			Help: "Release requests published to holders of upload locks (including repeats).",
		}),
		leaseLost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "tusgate_lock_lease_lost_total",
			Help: "Held upload locks whose renewal failed (Redis unreachable or the key taken over); their requests were interrupted.",
		}),
		acquireErrors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "tusgate_lock_acquire_errors_total",
			Help: "Lock calls that failed, by reason: unavailable (Redis unreachable, 503) or timeout (lock still held when the context ended).",
		}, []string{"reason"}),
	}
	m.acquireErrors.WithLabelValues("unavailable")
	m.acquireErrors.WithLabelValues("timeout")
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.wait, m.releaseRequests, m.leaseLost, m.acquireErrors} {
		if err := reg.Register(c); err != nil {
			return m, fmt.Errorf("registering lock metrics: %w", err)
		}
	}
	return m, nil
}

// New checks options and returns the locker. It does not contact Redis: the
// subscription starts with the first Lock.
func New(opts Options) (*Locker, error) {
	if opts.Client == nil {
		return nil, errors.New("redislocker: Options.Client is required")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	if opts.LeaseTTL < minLeaseTTL {
		return nil, fmt.Errorf("redislocker: LeaseTTL %v is below the minimum %v", opts.LeaseTTL, minLeaseTTL)
	}
	if opts.Renew == 0 {
		opts.Renew = defaultRenew(opts.LeaseTTL)
	}
	if opts.Renew < 0 {
		return nil, fmt.Errorf("redislocker: Renew %v is negative", opts.Renew)
	}
	renewTimeout := renewalTimeout(opts.Renew)
	if opts.Renew+renewTimeout >= opts.LeaseTTL {
		return nil, fmt.Errorf("redislocker: Renew %v plus the renewal timeout %v must be below LeaseTTL %v",
			opts.Renew, renewTimeout, opts.LeaseTTL)
	}
	if opts.Log == nil {
		opts.Log = slog.Default()
	}
	m, err := newMetrics(opts.Registerer)
	if err != nil {
		return nil, fmt.Errorf("redislocker: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	return &Locker{
		client:       opts.Client,
		prefix:       opts.Prefix,
		pattern:      globEscape(opts.Prefix) + "*",
		ttl:          opts.LeaseTTL,
		renew:        opts.Renew,
		renewTimeout: renewTimeout,
		log:          opts.Log,
		m:            m,
		ctx:          ctx,
		cancel:       cancel,
		live:         make(chan struct{}),
		held:         map[string]map[*holding]struct{}{},
		waiters:      map[string]map[*waiter]struct{}{},
	}, nil
}

// globEscape escapes the characters special in Redis glob patterns.
func globEscape(s string) string {
	var b strings.Builder
	for _, r := range s {
		switch r {
		case '*', '?', '[', ']', '\\':
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// UseIn installs the locker in a tusd store composer.
func (l *Locker) UseIn(c *handler.StoreComposer) {
	c.UseLocker(l)
}

// NewLock returns an unlocked lock for the upload id with its own random
// token. It does not contact Redis.
func (l *Locker) NewLock(id string) (handler.Lock, error) {
	if id == "" {
		return nil, errors.New("redislocker: empty upload ID")
	}
	return &lock{l: l, id: id, key: l.prefix + id, token: rand.Text()}, nil
}

// Held reports whether any instance holds the lock of upload id now.
func (l *Locker) Held(ctx context.Context, id string) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	n, err := l.client.Exists(ctx, l.prefix+id).Result()
	if err != nil {
		return false, fmt.Errorf("redislocker: checking the lock of %s: %w", id, err)
	}
	return n > 0, nil
}

// Ping reports whether Redis answers (for /readyz), within ctx and at most
// 2 s.
func (l *Locker) Ping(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := l.client.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("redislocker: ping redis: %w", err)
	}
	return nil
}

// Close stops background work: the subscription and the renewals. Locks
// still held are released best-effort: their holders' requestUnlock is
// called and their keys are deleted (if still theirs); a later Unlock of
// such a lock does nothing. Lock calls in progress, and later ones, fail
// with ErrUnavailable. Close does not close the Redis client. It returns
// an error if some held keys could not be deleted (they expire after
// LeaseTTL); further calls return nil.
func (l *Locker) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	var hs []*holding
	for _, set := range l.held {
		for h := range set {
			hs = append(hs, h)
			close(h.stop)
		}
	}
	clear(l.held)
	ps := l.ps
	l.mu.Unlock()

	l.cancel()
	if ps != nil {
		_ = ps.Close() // unblocks the subscriber's read
	}
	l.wg.Wait()

	for _, h := range hs {
		h.ask(l.log, "locker closing")
	}
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	var errs []error
	for _, h := range hs {
		if err := unlockScript.Run(ctx, l.client, []string{h.key}, h.token, h.key+releasedSuffix).Err(); err != nil {
			errs = append(errs, fmt.Errorf("upload %s: %w", h.id, err))
		}
	}
	if len(errs) > 0 {
		return fmt.Errorf("redislocker: close: releasing %d of %d held locks failed (they expire within %v): %w",
			len(errs), len(hs), l.ttl, errors.Join(errs...))
	}
	return nil
}

// lock is a handler.Lock. Its Lock and Unlock must not be called
// concurrently with each other (tusd never does).
type lock struct {
	l              *Locker
	id, key, token string

	mu sync.Mutex
	h  *holding // while held
}

// Lock takes the lock, asking its holder to release it if needed; see the
// package documentation. It returns an error wrapping
// handler.ErrLockTimeout when ctx ends first, and one wrapping
// ErrUnavailable when Redis cannot be reached.
func (lk *lock) Lock(ctx context.Context, requestUnlock func()) error {
	l := lk.l
	start := time.Now()
	lk.mu.Lock()
	held := lk.h != nil
	lk.mu.Unlock()
	if held {
		return fmt.Errorf("redislocker: lock upload %s: already locked by this Lock", lk.id)
	}
	if requestUnlock == nil {
		requestUnlock = func() {}
	}

	w, err := l.addWaiter(lk.id)
	if err != nil {
		return lk.fail(ctx, "start", err)
	}
	defer l.removeWaiter(lk.id, w)
	l.startSubscriber()

	poll := time.NewTicker(pollInterval)
	defer poll.Stop()
	var (
		asked    bool      // a release request has been published
		lastAsk  time.Time // when
		released bool      // woken by a "released" notification
	)
	for {
		l.mu.Lock()
		w.asked = false
		l.mu.Unlock()

		attempt := time.Now()
		ok, err := lk.trySet(ctx)
		if err != nil {
			return lk.fail(ctx, "SET NX", err)
		}
		if ok {
			return lk.acquired(ctx, w, requestUnlock, start, attempt)
		}

		if !asked || released || time.Since(lastAsk) >= resendInterval {
			if err := lk.askRelease(ctx); err != nil {
				return lk.fail(ctx, "PUBLISH release request", err)
			}
			asked, lastAsk = true, time.Now()
		}
		released = false
		select {
		case <-ctx.Done():
			return lk.fail(ctx, "wait", ctx.Err())
		case <-l.ctx.Done():
			return lk.fail(ctx, "wait", errClosed)
		case <-w.wake:
			released = true
		case <-poll.C:
		}
	}
}

// trySet makes one SET key token NX PX ttl attempt; it reports whether it
// took the lock.
func (lk *lock) trySet(ctx context.Context) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	err := lk.l.client.Do(ctx, "SET", lk.key, lk.token, "NX", "PX", lk.l.ttl.Milliseconds()).Err()
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, redis.Nil):
		return false, nil
	default:
		return false, err
	}
}

// askRelease publishes a release request for the lock.
func (lk *lock) askRelease(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, opTimeout)
	defer cancel()
	if err := lk.l.client.Publish(ctx, lk.key+releaseSuffix, lk.token).Err(); err != nil {
		return err
	}
	lk.l.m.releaseRequests.Inc()
	lk.l.log.DebugContext(ctx, "upload lock held elsewhere: release requested", "upload", lk.id)
	return nil
}

// acquired completes a successful SET sent at leased: it registers the
// holding, starts its renewal and makes sure release requests can reach it.
// start is when Lock was called.
func (lk *lock) acquired(ctx context.Context, w *waiter, requestUnlock func(), start, leased time.Time) error {
	l := lk.l
	h := &holding{
		id: lk.id, key: lk.key, token: lk.token,
		requestUnlock: requestUnlock,
		leased:        leased,
		acquired:      time.Now(),
		stop:          make(chan struct{}),
		done:          make(chan struct{}),
	}
	// lk.h first: requestUnlock may call Unlock as soon as h is registered.
	lk.mu.Lock()
	lk.h = h
	lk.mu.Unlock()
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		lk.mu.Lock()
		lk.h = nil
		lk.mu.Unlock()
		lk.deleteKey()
		return lk.fail(ctx, "register", errClosed)
	}
	set := l.held[lk.id]
	if set == nil {
		set = map[*holding]struct{}{}
		l.held[lk.id] = set
	}
	set[h] = struct{}{}
	// A release request that arrived after our SET was sent was meant for
	// us (or the waiter will ask us anyway once it fails to take the lock).
	askNow := w.asked
	l.wg.Add(1)
	l.mu.Unlock()
	go l.renewLoop(h)

	if err := l.awaitSubscription(ctx); err != nil {
		_ = lk.Unlock()
		return lk.fail(ctx, "pub/sub subscription", err)
	}
	if askNow {
		h.ask(l.log, "release requested while acquiring")
	}
	wait := time.Since(start)
	l.m.wait.Observe(wait.Seconds())
	l.log.DebugContext(ctx, "upload lock acquired", "upload", lk.id, "wait", wait)
	return nil
}

// fail turns an error of Lock into what tusd should see: ErrLockTimeout if
// ctx has ended, ErrUnavailable otherwise.
func (lk *lock) fail(ctx context.Context, op string, err error) error {
	if ctx.Err() != nil {
		lk.l.m.acquireErrors.WithLabelValues("timeout").Inc()
		return fmt.Errorf("redislocker: lock upload %s: %w", lk.id, handler.ErrLockTimeout)
	}
	lk.l.m.acquireErrors.WithLabelValues("unavailable").Inc()
	lk.l.log.WarnContext(ctx, "upload lock unavailable", "upload", lk.id, "op", op, "error", err.Error())
	return fmt.Errorf("redislocker: lock upload %s: %s: %w: %w", lk.id, op, ErrUnavailable, err)
}

// deleteKey deletes the lock's key if it still holds our token
// (best-effort; used when Lock fails after its SET succeeded).
func (lk *lock) deleteKey() {
	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	if err := unlockScript.Run(ctx, lk.l.client, []string{lk.key}, lk.token, lk.key+releasedSuffix).Err(); err != nil {
		lk.l.log.Warn("could not delete upload lock key", "upload", lk.id, "error", err.Error())
	}
}

// Unlock releases the lock: it stops the renewals and deletes the key if it
// still holds this lock's token (announcing it to waiters). Unlocking a lock
// that is not held, or was released by Close, does nothing. If Redis cannot
// be reached the error is returned; the key then expires after LeaseTTL.
func (lk *lock) Unlock() error {
	lk.mu.Lock()
	h := lk.h
	lk.h = nil
	lk.mu.Unlock()
	if h == nil {
		return nil
	}
	l := lk.l
	if !l.dropHolding(h) {
		return nil // released by Close
	}
	<-h.done

	ctx, cancel := context.WithTimeout(context.Background(), opTimeout)
	defer cancel()
	n, err := unlockScript.Run(ctx, l.client, []string{h.key}, h.token, h.key+releasedSuffix).Int64()
	if err != nil {
		l.log.Warn("could not release upload lock", "upload", h.id, "error", err.Error())
		return fmt.Errorf("redislocker: unlock upload %s (the lease expires within %v): %w", h.id, l.ttl, err)
	}
	if n == 0 {
		l.log.Info("upload lock was no longer ours at unlock", "upload", h.id, "held", time.Since(h.acquired))
		return nil
	}
	l.notifyReleased(h.id) // local waiters need not wait for the message
	l.log.Debug("upload lock released", "upload", h.id, "held", time.Since(h.acquired))
	return nil
}

// ask calls the holder's requestUnlock, once per holding, in a goroutine of
// its own (it may call Unlock).
func (h *holding) ask(log *slog.Logger, reason string) {
	if !h.asked.CompareAndSwap(false, true) {
		return
	}
	log.Debug("asking the holder to release the upload lock", "upload", h.id, "reason", reason)
	go h.requestUnlock()
}

// addWaiter registers a Lock call waiting for id.
func (l *Locker) addWaiter(id string) (*waiter, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return nil, errClosed
	}
	w := &waiter{wake: make(chan struct{}, 1)}
	set := l.waiters[id]
	if set == nil {
		set = map[*waiter]struct{}{}
		l.waiters[id] = set
	}
	set[w] = struct{}{}
	return w, nil
}

// removeWaiter undoes addWaiter.
func (l *Locker) removeWaiter(id string, w *waiter) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.waiters[id], w)
	if len(l.waiters[id]) == 0 {
		delete(l.waiters, id)
	}
}

// dropHolding removes h from the held locks and stops its renewal; it
// reports false if it was already removed (by Close).
func (l *Locker) dropHolding(h *holding) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.held[h.id]
	if _, ok := set[h]; !ok {
		return false
	}
	delete(set, h)
	if len(set) == 0 {
		delete(l.held, h.id)
	}
	close(h.stop)
	return true
}

// notifyReleased wakes the waiters for id.
func (l *Locker) notifyReleased(id string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for w := range l.waiters[id] {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// releaseRequested forwards a release request for id to its local holders
// and notes it for the local waiters (one of which may be acquiring it).
func (l *Locker) releaseRequested(id string) {
	l.mu.Lock()
	var hs []*holding
	for h := range l.held[id] {
		hs = append(hs, h)
	}
	for w := range l.waiters[id] {
		w.asked = true
	}
	l.mu.Unlock()
	for _, h := range hs {
		h.ask(l.log, "release requested")
	}
}

// renewLoop renews h every l.renew until it is stopped, the Locker is
// closed or a renewal fails (the lease is then lost).
func (l *Locker) renewLoop(h *holding) {
	defer l.wg.Done()
	defer close(h.done)
	// Each attempt starts Renew after the start of the last successful
	// one (the SET at first), which is when the lease was last extended.
	last := h.leased
	t := time.NewTimer(time.Until(last.Add(l.renew)))
	defer t.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-l.ctx.Done():
			return
		case <-t.C:
		}
		started := time.Now()
		err := l.renewOnce(h)
		if err == nil {
			last = started
			t.Reset(time.Until(last.Add(l.renew)))
			continue
		}
		select {
		case <-h.stop:
			return // unlocked meanwhile: not a loss
		case <-l.ctx.Done():
			return
		default:
		}
		l.m.leaseLost.Inc()
		l.log.Warn("upload lock lease lost; interrupting its request",
			"upload", h.id, "error", err.Error(),
			"since_last_renewal", time.Since(last), "lease_ttl", l.ttl, "held", time.Since(h.acquired))
		h.ask(l.log, "lease lost")
		return
	}
}

// errNotOwner means the lock key no longer holds our token.
var errNotOwner = errors.New("the lock key no longer holds our token (expired or taken over)")

// renewOnce runs the renewal script. It gives up after l.renewTimeout even
// if the client does not honour context deadlines; the abandoned command
// then finishes in the background.
func (l *Locker) renewOnce(h *holding) error {
	ctx, cancel := context.WithTimeout(l.ctx, l.renewTimeout)
	defer cancel()
	res := make(chan error, 1)
	go func() {
		n, err := renewScript.Run(ctx, l.client, []string{h.key}, h.token, l.ttl.Milliseconds()).Int64()
		switch {
		case err != nil:
			res <- fmt.Errorf("renewing: %w", err)
		case n == 0:
			res <- errNotOwner
		default:
			res <- nil
		}
	}()
	select {
	case err := <-res:
		return err
	case <-ctx.Done():
		return fmt.Errorf("renewing: no answer within %v: %w", l.renewTimeout, ctx.Err())
	case <-h.stop:
		return errors.New("stopped")
	}
}

// startSubscriber starts the subscription goroutine on first use.
func (l *Locker) startSubscriber() {
	l.subOnce.Do(func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		if l.closed {
			return
		}
		l.wg.Add(1)
		go l.subscribeLoop()
	})
}

// awaitSubscription waits until the subscription is live, at most opTimeout.
func (l *Locker) awaitSubscription(ctx context.Context) error {
	l.mu.Lock()
	live := l.live
	l.mu.Unlock()
	select {
	case <-live:
		return nil
	default:
	}
	t := time.NewTimer(opTimeout)
	defer t.Stop()
	select {
	case <-live:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-l.ctx.Done():
		return errClosed
	case <-t.C:
		return fmt.Errorf("not subscribed to %s within %v", l.pattern, opTimeout)
	}
}

// setLive records whether the subscription is confirmed.
func (l *Locker) setLive(live bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case live && !l.isLive:
		close(l.live)
		if l.wasLive {
			l.log.Info("redis pub/sub subscription for upload locks re-established", "pattern", l.pattern)
		}
		l.isLive, l.wasLive = true, true
	case !live && l.isLive:
		l.live = make(chan struct{})
		l.isLive = false
	}
}

// subscribeLoop keeps the Locker's one subscription alive until Close.
func (l *Locker) subscribeLoop() {
	defer l.wg.Done()
	backoff := 50 * time.Millisecond
	for {
		ps := l.client.PSubscribe(l.ctx) // no pattern yet: does not connect
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			_ = ps.Close()
			return
		}
		l.ps = ps
		l.mu.Unlock()

		// Connect and subscribe within a deadline (the client honours it
		// if created with ContextTimeoutEnabled); the confirmation is read
		// by receive.
		ctx, cancel := context.WithTimeout(l.ctx, 2*subIdle)
		err := ps.PSubscribe(ctx, l.pattern)
		cancel()
		wasLive := false
		if err == nil {
			wasLive, err = l.receive(ps)
		} else {
			err = fmt.Errorf("subscribing: %w", err)
		}
		_ = ps.Close()
		l.mu.Lock()
		l.ps = nil
		l.mu.Unlock()
		l.setLive(false)
		if l.ctx.Err() != nil {
			return
		}
		if wasLive {
			backoff = 50 * time.Millisecond
			l.log.Warn("redis pub/sub subscription for upload locks lost; resubscribing", "error", err.Error())
		} else {
			l.log.Debug("redis pub/sub subscription for upload locks failed", "error", err.Error(), "retry_in", backoff)
		}
		t := time.NewTimer(backoff)
		select {
		case <-l.ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, subMaxBackoff)
	}
}

// receive reads ps until an error; it pings a silent connection and gives
// up if the ping goes unanswered, or if Redis does not confirm the
// subscription within 2*subIdle (the command may have been lost while
// later ones went through). It reports whether the subscription was
// confirmed.
func (l *Locker) receive(ps *redis.PubSub) (confirmed bool, err error) {
	pinged := false
	start := time.Now()
	for {
		if !confirmed && time.Since(start) > 2*subIdle {
			return false, fmt.Errorf("subscription to %s not confirmed within %v", l.pattern, 2*subIdle)
		}
		msg, err := ps.ReceiveTimeout(l.ctx, subIdle)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() && !pinged && l.ctx.Err() == nil {
				ctx, cancel := context.WithTimeout(l.ctx, subIdle)
				err = ps.Ping(ctx)
				cancel()
				if err == nil {
					pinged = true
					continue
				}
			}
			return confirmed, fmt.Errorf("receiving from the subscription: %w", err)
		}
		pinged = false
		switch m := msg.(type) {
		case *redis.Subscription:
			if m.Kind == "psubscribe" && m.Channel == l.pattern {
				confirmed = true
				l.setLive(true)
			}
		case *redis.Message:
			l.dispatch(m.Channel)
		}
	}
}

// dispatch handles a message on one of our channels.
func (l *Locker) dispatch(channel string) {
	rest, ok := strings.CutPrefix(channel, l.prefix)
	if !ok {
		return
	}
	if id, ok := strings.CutSuffix(rest, releasedSuffix); ok {
		l.notifyReleased(id)
		return
	}
	if id, ok := strings.CutSuffix(rest, releaseSuffix); ok {
		l.releaseRequested(id)
	}
}
