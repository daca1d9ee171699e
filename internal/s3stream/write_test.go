package s3stream

import (
	"bytes"
	"errors"
	"testing"
	"time"

	"github.com/tusgate/tusgate/internal/tlsbatch"
)

// TestFillBodyPassesOnATrickle: a part body waits for a full chunk only a
// moment; bytes of a slow client still reach S3 (which would otherwise
// time the request out).
func TestFillBodyPassesOnATrickle(t *testing.T) {
	buf := make([]byte, 4<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	b := newFillBody(buf, 0, nil)
	b.advance(1000, false)
	got := make(chan int, 1)
	go func() {
		n, _ := b.Read(make([]byte, 256<<10))
		got <- n
	}()
	select {
	case n := <-got:
		if n != 1000 {
			t.Fatalf("Read passed on %d bytes, want the 1000 that arrived", n)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Read still waits for more bytes after 5 s")
	}
	// A full chunk goes at once, whole.
	b.advance(1000+tlsbatch.ChunkSize+10, false)
	p := make([]byte, 256<<10)
	if n, err := b.Read(p); err != nil || n != tlsbatch.ChunkSize+10 {
		t.Fatalf("Read = %d, %v; want %d", n, err, tlsbatch.ChunkSize+10)
	}
	if !bytes.Equal(p[:10], buf[1000:1010]) {
		t.Fatal("Read passed on the wrong bytes")
	}
	b.detach()
	if _, err := b.Read(p); !errors.Is(err, errDetached) {
		t.Fatalf("Read after detach: %v, want errDetached", err)
	}
}
