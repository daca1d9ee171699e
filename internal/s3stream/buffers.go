package s3stream

import "sync"

// Buffers hands out part buffers within a memory budget. A write either
// gets its whole buffer up front or none (and then takes tusd's temp-file
// path), so a write never waits for memory while holding some: the budget
// cannot deadlock, and it bounds what buffers add to the process's RSS.
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
	free      map[int][][]byte
}

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
func (b *Buffers) Get(n int64) ([]byte, bool) { return b.get(n, b.limit) }

// GetExtra is Get for a write's further buffers: it succeeds only while the
// buffers in use stay within half the budget, so that one write's parallel
// parts never take the buffers other writes need to start.
func (b *Buffers) GetExtra(n int64) ([]byte, bool) { return b.get(n, b.limit/2) }

// Crowded reports whether more than half the budget is in use: a write
// then gives extra buffers back rather than reuse them.
func (b *Buffers) Crowded() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse > b.limit/2
}

// get hands out a buffer if the bytes in use stay within limit.
func (b *Buffers) get(n, limit int64) ([]byte, bool) {
	c := class(n)
	b.mu.Lock()
	defer b.mu.Unlock()
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

// Put returns a buffer from Get to the pool.
func (b *Buffers) Put(buf []byte) {
	c := cap(buf)
	b.mu.Lock()
	defer b.mu.Unlock()
	b.free[c] = append(b.free[c], buf[:c])
	b.inUse -= int64(c)
}

// InUse reports the bytes handed out and not yet returned.
func (b *Buffers) InUse() int64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.inUse
}
