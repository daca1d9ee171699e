package s3stream

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
)

func TestBufferClass(t *testing.T) {
	const kib, mib = 1 << 10, 1 << 20
	tests := []struct {
		n    int64
		want int
	}{
		{0, 64 * kib},
		{1, 64 * kib},
		{64*kib - 1, 64 * kib},
		{64 * kib, 64 * kib},
		{64*kib + 1, 128 * kib},
		{100 * kib, 128 * kib},
		{128 * kib, 128 * kib},
		{200 * kib, 256 * kib},
		{512*kib + 1, mib},
		{mib, mib},
		{mib + 1, 2 * mib},
		{3*mib - 1, 3 * mib},
		{5 * mib, 5 * mib},
		{5*mib + 1, 6 * mib},
		{50 * mib, 50 * mib},
	}
	for _, tt := range tests {
		if got := class(tt.n); got != tt.want {
			t.Errorf("class(%d) = %d, want %d", tt.n, got, tt.want)
		}
	}
}

func TestBuffersGetPut(t *testing.T) {
	b := NewBuffers(256 << 10)
	small, ok := b.Get(100)
	if !ok {
		t.Fatal("Get(100) within the limit failed")
	}
	if len(small) != 100 || cap(small) != 64<<10 {
		t.Errorf("Get(100): len %d cap %d, want 100 and %d", len(small), cap(small), 64<<10)
	}
	if got := b.InUse(); got != 64<<10 {
		t.Errorf("InUse = %d, want %d (the rounded size)", got, 64<<10)
	}
	// 64 KiB + 256 KiB exceeds the limit.
	if buf, ok := b.Get(200 << 10); ok || buf != nil {
		t.Fatalf("Get(200 KiB) beyond the limit = %d bytes, %v; want nil, false", len(buf), ok)
	}
	if got := b.InUse(); got != 64<<10 {
		t.Errorf("InUse after a refused Get = %d, want %d", got, 64<<10)
	}
	b.Put(small)
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse after Put = %d, want 0", got)
	}
	// Put freed the budget.
	big, ok := b.Get(200 << 10)
	if !ok {
		t.Fatal("Get(200 KiB) after Put failed")
	}
	if len(big) != 200<<10 || cap(big) != 256<<10 {
		t.Errorf("Get(200 KiB): len %d cap %d", len(big), cap(big))
	}
	if got := b.InUse(); got != 256<<10 {
		t.Errorf("InUse = %d, want %d", got, 256<<10)
	}
	if _, ok := b.Get(1); ok {
		t.Error("Get(1) with the whole budget handed out succeeded")
	}
	b.Put(big)
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse after Put = %d, want 0", got)
	}
}

func TestBuffersExactLimit(t *testing.T) {
	b := NewBuffers(128 << 10)
	x, ok1 := b.Get(1)
	y, ok2 := b.Get(64 << 10)
	if !ok1 || !ok2 {
		t.Fatalf("two 64 KiB buffers within a 128 KiB budget: %v, %v", ok1, ok2)
	}
	if _, ok := b.Get(1); ok {
		t.Error("a third buffer beyond the limit")
	}
	b.Put(x)
	b.Put(y)
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse = %d, want 0", got)
	}
}

func TestBuffersZeroLimit(t *testing.T) {
	b := NewBuffers(0)
	if buf, ok := b.Get(1); ok || buf != nil {
		t.Errorf("Get(1) with no budget = %d bytes, %v", len(buf), ok)
	}
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse = %d, want 0", got)
	}
}

// TestBuffersReuse: a buffer returned and handed out again has the
// requested length, whatever length it had before.
func TestBuffersReuse(t *testing.T) {
	b := NewBuffers(1 << 20)
	for _, n := range []int64{10, 64 << 10, 1, 30000, 64 << 10} {
		buf, ok := b.Get(n)
		if !ok {
			t.Fatalf("Get(%d) failed", n)
		}
		if int64(len(buf)) != n || cap(buf) != 64<<10 {
			t.Fatalf("Get(%d): len %d cap %d", n, len(buf), cap(buf))
		}
		for i := range buf {
			buf[i] = byte(i)
		}
		b.Put(buf[:1])
	}
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse = %d, want 0", got)
	}
}

// TestBuffersConcurrent: under -race, buffers handed out at once are
// distinct, the budget is never exceeded, and all of it comes back.
func TestBuffersConcurrent(t *testing.T) {
	const limit = 8 * (128 << 10)
	b := NewBuffers(limit)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var out atomic.Int64
	refused, granted := 0, 0
	for g := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sizes := []int64{1, 70 << 10, 64 << 10, 100 << 10, 5000}
			for i := range 200 {
				n := sizes[(g+i)%len(sizes)]
				buf, ok := b.Get(n)
				if !ok {
					mu.Lock()
					refused++
					mu.Unlock()
					continue
				}
				// InUse may count a refused Get for a moment; count
				// what is really handed out.
				if held := out.Add(int64(cap(buf))); held > limit {
					t.Errorf("%d bytes handed out, beyond the limit %d", held, limit)
				}
				mark := byte(g)
				for j := range buf {
					buf[j] = mark
				}
				for j := range buf {
					if buf[j] != mark {
						t.Errorf("goroutine %d's buffer was written by another", g)
						break
					}
				}
				out.Add(-int64(cap(buf)))
				b.Put(buf)
				mu.Lock()
				granted++
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse after all Puts = %d, want 0", got)
	}
	if granted == 0 {
		t.Error("no Get succeeded")
	}
	t.Logf("%d buffers handed out, %d refused", granted, refused)
}

// TestBuffersExtra: extra buffers only come from the first half of the
// budget; the rest is kept for writes' first buffers.
func TestBuffersExtra(t *testing.T) {
	const mib = 1 << 20
	b := NewBuffers(8 * mib)
	first, ok := b.Get(2 * mib)
	if !ok {
		t.Fatal("Get(2 MiB) from an unused budget failed")
	}
	extra, ok := b.GetExtra(2 * mib)
	if !ok {
		t.Fatal("GetExtra(2 MiB) with 2 of 8 MiB in use failed")
	}
	if b.Crowded() {
		t.Error("Crowded with 4 of 8 MiB in use")
	}
	if buf, ok := b.GetExtra(mib); ok {
		t.Fatalf("GetExtra(1 MiB) with 4 of 8 MiB in use = %d bytes; want none (past half the budget)", len(buf))
	}
	second, ok := b.Get(4 * mib)
	if !ok {
		t.Fatal("Get(4 MiB) with 4 of 8 MiB in use failed")
	}
	if !b.Crowded() {
		t.Error("not Crowded with 8 of 8 MiB in use")
	}
	for i, buf := range [][]byte{first, extra, second} {
		for j := range buf {
			buf[j] = byte(i) // the memory is writable
		}
		b.Put(buf)
	}
	if got := b.InUse(); got != 0 {
		t.Errorf("InUse after returning everything = %d", got)
	}
}

// TestBuffersWaitForExtra: a first buffer waits for an extra one to come
// back; meanwhile the budget counts as crowded and refuses extras.
func TestBuffersWaitForExtra(t *testing.T) {
	const mib = 1 << 20
	b := NewBuffers(32 * mib)
	first, _ := b.Get(8 * mib)
	extra, ok := b.GetExtra(8 * mib)
	if !ok {
		t.Fatal("GetExtra with 8 of 32 MiB in use failed")
	}
	others := [][]byte{}
	for range 2 {
		buf, ok := b.Get(8 * mib)
		if !ok {
			t.Fatal("Get within the budget failed")
		}
		others = append(others, buf)
	}
	waiting := make(chan struct{})
	b.onWait = func() { close(waiting) }
	got := make(chan bool, 1)
	go func() {
		buf, ok := b.GetWait(context.Background(), 8*mib)
		if ok {
			b.Put(buf)
		}
		got <- ok
	}()
	select {
	case <-waiting:
	case ok := <-got:
		t.Fatalf("GetWait on a spent budget answered %v at once, while an extra buffer was out", ok)
	}
	if !b.Crowded() {
		t.Error("not Crowded while a write waits for its first buffer")
	}
	if buf, ok := b.GetExtra(mib); ok {
		t.Errorf("GetExtra while a write waits = %d bytes; want none", len(buf))
	}
	b.PutExtra(extra)
	if !<-got {
		t.Fatal("GetWait did not get the extra buffer given back")
	}
	// No extras out: a spent budget answers at once.
	b.onWait = func() { t.Error("GetWait waited with no extra buffer to come back") }
	filler, _ := b.Get(8 * mib)
	if buf, ok := b.GetWait(context.Background(), mib); ok {
		t.Errorf("GetWait on a spent budget = %d bytes", len(buf))
	}
	for _, buf := range append(others, first, filler) {
		b.Put(buf)
	}
	if b.InUse() != 0 {
		t.Errorf("InUse = %d after returning everything", b.InUse())
	}
}
