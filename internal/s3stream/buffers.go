package s3stream

import (
	"sync"
	"sync/atomic"
)

// Buffers hands out part buffers within a memory budget. A write either
// gets its whole buffer up front or none (and then takes tusd's temp-file
// path), so a write never waits for memory while holding some: the budget
// cannot deadlock, and it bounds what buffers add to the process's RSS.
//
// Sizes are rounded up to a class (powers of two up to 1 MiB, whole MiB
// above) so that buffers can be reused through one sync.Pool per class; the
// budget counts the rounded sizes.
type Buffers struct {
	limit int64
	used  atomic.Int64

	mu    sync.Mutex
	pools map[int]*sync.Pool
}

// NewBuffers returns a pool that hands out at most limit bytes at once.
func NewBuffers(limit int64) *Buffers {
	return &Buffers{limit: limit, pools: map[int]*sync.Pool{}}
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
	c := class(n)
	if b.used.Add(int64(c)) > b.limit {
		b.used.Add(-int64(c))
		return nil, false
	}
	p := b.pool(c)
	if buf, ok := p.Get().(*[]byte); ok {
		return (*buf)[:n], true
	}
	buf := make([]byte, c)
	return buf[:n], true
}

// Put returns a buffer from Get to the pool.
func (b *Buffers) Put(buf []byte) {
	c := cap(buf)
	buf = buf[:c]
	b.pool(c).Put(&buf)
	b.used.Add(-int64(c))
}

// InUse reports the bytes handed out and not yet returned.
func (b *Buffers) InUse() int64 { return b.used.Load() }

func (b *Buffers) pool(c int) *sync.Pool {
	b.mu.Lock()
	defer b.mu.Unlock()
	p := b.pools[c]
	if p == nil {
		p = &sync.Pool{}
		b.pools[c] = p
	}
	return p
}
