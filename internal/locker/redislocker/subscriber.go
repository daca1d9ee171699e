package redislocker

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

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
