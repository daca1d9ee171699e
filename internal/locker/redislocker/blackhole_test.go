package redislocker

import (
	"errors"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tusgate/tusgate/test/testenv"
)

// blackhole is a TCP proxy to a target that can be told to swallow all
// traffic without closing connections, like a network partition.
type blackhole struct {
	addr string

	mu     sync.Mutex
	frozen bool
	conns  map[net.Conn]struct{}
}

func newBlackhole(t *testing.T, target string) *blackhole {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &blackhole{addr: ln.Addr().String(), conns: map[net.Conn]struct{}{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", target)
			if err != nil {
				c.Close()
				continue
			}
			b.mu.Lock()
			b.conns[c], b.conns[s] = struct{}{}, struct{}{}
			b.mu.Unlock()
			wg.Go(func() { b.pipe(s, c) })
			wg.Go(func() { b.pipe(c, s) })
		}
	})
	return b
}

// pipe copies src to dst, dropping what it reads while frozen.
func (b *blackhole) pipe(dst, src net.Conn) {
	defer func() {
		src.Close()
		dst.Close()
		b.mu.Lock()
		delete(b.conns, src)
		delete(b.conns, dst)
		b.mu.Unlock()
	}()
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		b.mu.Lock()
		frozen := b.frozen
		b.mu.Unlock()
		if n > 0 && !frozen {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

func (b *blackhole) setFrozen(frozen bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.frozen = frozen
}

// TestBlackholedRedis: Redis stops answering without closing connections.
// The holder's renewal gives up after its own timeout even with a client
// that ignores context deadlines (go-redis defaults: 3 s ReadTimeout), Lock
// answers ErrUnavailable within its budget with a client honouring them,
// and once traffic flows again the subscription recovers.
func TestBlackholedRedis(t *testing.T) {
	t.Parallel()
	for _, honour := range []bool{false, true} {
		t.Run(fmt.Sprintf("ContextTimeoutEnabled=%v", honour), func(t *testing.T) {
			t.Parallel()
			testBlackholedRedis(t, honour)
		})
	}
}

// testBlackholedRedis runs TestBlackholedRedis with the holder's client
// honouring context deadlines or not.
func testBlackholedRedis(t *testing.T, honour bool) {
	r := testenv.StartRedis(t)
	bh := newBlackhole(t, r.Addr)
	const ttl = 2 * time.Second
	holderClient := redis.NewClient(&redis.Options{Addr: bh.addr, ContextTimeoutEnabled: honour})
	t.Cleanup(func() { _ = holderClient.Close() })
	honouring := redis.NewClient(&redis.Options{Addr: bh.addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = honouring.Close() })
	la := newLocker(t, holderClient, Options{LeaseTTL: ttl})
	lb := newLocker(t, honouring, Options{LeaseTTL: ttl})

	holder := mustNewLock(t, la, "partitioned")
	asked := make(chan time.Time, 1)
	if err := lockWithin(holder, time.Second, func() { asked <- time.Now() }); err != nil {
		t.Fatal(err)
	}
	bh.setFrozen(true)
	frozen := time.Now()

	// With ttl 2s the bound stays below go-redis's 3 s ReadTimeout, which a
	// renewal waiting for the client's answer would run into.
	maxAsk := la.renew + la.renewTimeout + 2*time.Second
	at := receiveWithin(t, asked, maxAsk+3*time.Second, "requestUnlock after the partition")
	t.Logf("holder asked to unlock %v after the partition (Renew %v, renewal timeout %v)", at.Sub(frozen), la.renew, la.renewTimeout)
	if d := at.Sub(frozen); d > maxAsk {
		t.Errorf("holder asked %v after the partition, want within Renew+renewal timeout", d)
	}

	start := time.Now()
	err := lockWithin(mustNewLock(t, lb, "during-partition"), 20*time.Second, nil)
	took := time.Since(start)
	t.Logf("Lock during the partition: %v after %v", err, took)
	if !errors.Is(err, ErrUnavailable) {
		t.Errorf("Lock during the partition: %v, want ErrUnavailable", err)
	}
	// Margin for scheduling delays, short of a second opTimeout.
	if took > opTimeout+2*time.Second {
		t.Errorf("Lock during the partition took %v, want ≈ %v", took, opTimeout)
	}
	waitFor(t, 5*time.Second, "la's subscription to be declared dead", func() bool {
		la.mu.Lock()
		defer la.mu.Unlock()
		return !la.isLive
	})
	t.Logf("la's subscription declared dead %v after the partition", time.Since(frozen))

	bh.setFrozen(false)
	thawed := time.Now()
	// Unlock may fail (on a pooled connection that lost bytes, or with the
	// renewal abandoned but still waiting for its answer); the key expires.
	err = holder.Unlock()
	t.Logf("holder's Unlock after the partition: %v after %v", err, time.Since(thawed))
	h := mustNewLock(t, la, "after-partition")
	unlocked := make(chan error, 1)
	waitFor(t, 15*time.Second, "a Lock to succeed after the partition", func() bool {
		return lockWithin(h, 2*time.Second, func() { unlocked <- h.Unlock() }) == nil
	})
	t.Logf("Lock succeeded %v after the partition ended", time.Since(thawed))
	w := mustNewLock(t, lb, "after-partition")
	start = time.Now()
	if err := lockWithin(w, 5*time.Second, nil); err != nil {
		t.Fatalf("second Lock after the partition: %v", err)
	}
	// Below resendInterval: the first request reached h, not a repeat.
	if took := time.Since(start); took >= resendInterval {
		t.Errorf("release request after the partition took %v, want < %v", took, resendInterval)
	}
	receiveWithin(t, unlocked, time.Second, "the holder's Unlock")
	_ = w.Unlock()
}
