package redislocker

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/tuserror"
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
			"Retry-After":  tuserror.RetryAfter,
		},
	},
}

// errClosed is wrapped in the errors of a closed Locker.
var errClosed = errors.New("locker closed")

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

// waiter is one Lock call in progress; guarded by Locker.mu.
type waiter struct {
	wake  chan struct{} // receives a token when the lock was freed
	asked bool          // a release request arrived since the last SET attempt
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
