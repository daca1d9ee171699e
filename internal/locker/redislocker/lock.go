package redislocker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tus/tusd/v2/pkg/handler"
)

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
