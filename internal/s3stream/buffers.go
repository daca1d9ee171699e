package s3stream

import (
	"context"
	"sync"
	"time"
)

// Buffers hands out part buffers within a memory budget. A write either
// gets its first buffer up front or none (and then takes tusd's temp-file
// path), so a write never waits for memory while holding some: the budget
// cannot deadlock, and it bounds what buffers add to the process's RSS.
// Further (extra) buffers, for parts in parallel, come only from the first
// half of the budget; when a write waits for its first buffer, the writes
// holding extras give them back at their next part.
//
// Sizes are rounded up to a class (powers of two up to 1 MiB, whole MiB
// above). Returned buffers are kept for reuse, within the same budget. The
// memory is mapped outside the Go heap where the system allows (see
// allocBuffer), so buffers neither inflate the garbage collector's heap goal
// nor need collecting.
type Buffers struct {
	limit int64

	mu        sync.Mutex
	allocated int64 // bytes held: in use or free
	inUse     int64
	extra     int64 // of inUse, extra buffers
	waiters   int
	freed     chan struct{} // closed by the next Put while waiters > 0
	free      map[int][][]byte
	onWait    func() // tests: called when a GetWait starts waiting

	windows     int // windows handed out
	idleWindows [][]byte
}

// firstWait is how long GetWait waits for extra buffers to come back.
const firstWait = time.Second

// NewBuffers returns a pool that holds at most limit bytes.
func NewBuffers(limit int64) *Buffers {
	return &Buffers{limit: limit, free: map[int][][]byte{}}
}

const minClass = 64 << 10

// class is the size a request for n bytes is rounded up to.
func class(n int64) int {
	if n <= minClass {
		return minClass
	}
	if n <= 1<<20 {
		c := minClass
		for int64(c) < n {
			c <<= 1
		}
		return c
	}
	return int((n + 1<<20 - 1) &^ (1<<20 - 1))
}

// Get returns a buffer of length n, or false if the budget does not have n
// bytes (rounded up) left. Return it with Put.
func (b *Buffers) Get(n int64) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.get(n, b.limit)
}

// GetWait is Get for a write's first buffer. If the budget is spent while
// other writes hold extra buffers, it waits for one of those to come back,
// at most firstWait (or until ctx ends).
func (b *Buffers) GetWait(ctx context.Context, n int64) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if buf, ok := b.get(n, b.limit); ok || b.extra == 0 {
		return buf, ok
	}
	b.waiters++
	defer func() { b.waiters-- }()
	if b.onWait != nil {
		b.onWait()
	}
	timer := time.NewTimer(firstWait)
	defer timer.Stop()
	for {
		if b.freed == nil {
			b.freed = make(chan struct{})
		}
		freed := b.freed
		b.mu.Unlock()
		select {
		case <-freed:
		case <-timer.C:
			b.mu.Lock()
			return nil, false
		case <-ctx.Done():
			b.mu.Lock()
			return nil, false
		}
		b.mu.Lock()
		if buf, ok := b.get(n, b.limit); ok {
			return buf, true
		}
		if b.extra == 0 {
			return nil, false // what is in use will not come back soon
		}
	}
}

// GetExtra is Get for a write's further buffers: it succeeds only while the
// buffers in use stay within half the budget and no write waits for its
// first buffer, so that one write's parallel parts never take the buffers
// other writes need to start. Return it with PutExtra.
func (b *Buffers) GetExtra(n int64) ([]byte, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.waiters > 0 {
		return nil, false
	}
	buf, ok := b.get(n, b.limit/2)
	if ok {
		b.extra += int64(cap(buf))
	}
	return buf, ok
}

// Crowded reports whether a write should give back an extra buffer rather
// than reuse it: more than half the budget is in use, or a write waits.
func (b *Buffers) Crowded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse > b.limit/2 || b.waiters > 0
}

// get hands out a buffer if the bytes in use stay within limit. b.mu is
// held.
func (b *Buffers) get(n, limit int64) ([]byte, bool) {
	c := class(n)
	if b.inUse+int64(c) > limit {
		return nil, false
	}
	if list := b.free[c]; len(list) > 0 {
		buf := list[len(list)-1]
		b.free[c] = list[:len(list)-1]
		b.inUse += int64(c)
		return buf[:n], true
	}
	// Make room by dropping free buffers of other sizes.
	for size, list := range b.free {
		for len(list) > 0 && b.allocated+int64(c) > b.limit {
			freeBuffer(list[len(list)-1])
			list = list[:len(list)-1]
			b.allocated -= int64(size)
		}
		b.free[size] = list
	}
	buf := allocBuffer(c)
	if buf == nil {
		return nil, false
	}
	b.allocated += int64(c)
	b.inUse += int64(c)
	return buf[:n], true
}

// Put returns a buffer from Get or GetWait to the pool.
func (b *Buffers) Put(buf []byte) { b.put(buf, false) }

// PutExtra returns a buffer from GetExtra to the pool.
func (b *Buffers) PutExtra(buf []byte) { b.put(buf, true) }

func (b *Buffers) put(buf []byte, extra bool) {
	c := cap(buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free[c] = append(b.free[c], buf[:c])
	b.inUse -= int64(c)
	if extra {
		b.extra -= int64(c)
	}
	if b.freed != nil {
		close(b.freed)
		b.freed = nil
	}
}

// Limit is the budget's size in bytes.
func (b *Buffers) Limit() int64 { return b.limit }

// windowSize is the size of a window (see writer.writeWindow): one batch
// of the S3 connection (tlsbatch.ChunkSize). It is the memory a write in
// flight beyond the part buffer budget adds: at 256 uploads at once, 256
// KiB windows peaked tusgate at 264-269 MiB of RSS, 128 KiB ones at
// 213-229 MiB (BenchmarkConcurrentUploadsMemory).
const windowSize = 128 << 10

// maxIdleWindows bounds the windows kept for reuse.
const maxIdleWindows = 64

// GetWindow returns a window. Windows are small and come from outside the
// budget: a write that gets no part buffer still needs one, so memory grows
// by windowSize per write in flight beyond the budget. Return it with
// PutWindow.
func (b *Buffers) GetWindow() []byte {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.windows++
	if n := len(b.idleWindows); n > 0 {
		w := b.idleWindows[n-1]
		b.idleWindows = b.idleWindows[:n-1]
		return w
	}
	if w := allocBuffer(windowSize); w != nil {
		return w
	}
	return make([]byte, windowSize, windowSize+1) // PutWindow leaves it to the GC
}

// PutWindow returns a window from GetWindow.
func (b *Buffers) PutWindow(w []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.windows--
	if len(b.idleWindows) < maxIdleWindows {
		b.idleWindows = append(b.idleWindows, w)
		return
	}
	if cap(w) == windowSize {
		freeBuffer(w)
	}
}

// Windows reports the windows handed out and not yet returned.
func (b *Buffers) Windows() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.windows
}

// InUse reports the bytes handed out and not yet returned.
func (b *Buffers) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}
