package objsha

import (
	"bytes"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

func data(n int) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(uint64(n), 7))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// The state at every marked offset, saved and resumed elsewhere, goes on
// to the SHA-256 of the whole, however the bytes are cut into writes.
func TestMarksResumeAnywhere(t *testing.T) {
	all := data(1000)
	want := sha256.Sum256(all)
	h, err := Resume(Fresh())
	if err != nil {
		t.Fatal(err)
	}
	marks := []int64{0, 1, 63, 64, 65, 300, 999, 1000}
	for _, m := range marks {
		h.Mark(m)
	}
	// Writes that straddle marks.
	for off := 0; off < len(all); off += 77 {
		h.Write(all[off:min(off+77, len(all))])
	}
	if got := h.Sum(); !bytes.Equal(got, want[:]) {
		t.Fatalf("Sum %x, want %x", got, want)
	}
	for _, m := range marks {
		s, ok := h.At(m)
		if !ok {
			t.Fatalf("no state at mark %d", m)
		}
		s, err := Decode(s.Encode()) // as kept in the .info
		if err != nil {
			t.Fatal(err)
		}
		sum, n, err := Of(s, bytes.NewReader(all[m:]))
		if err != nil || n != int64(len(all))-m || !bytes.Equal(sum, want[:]) {
			t.Fatalf("resumed at %d: %x (%d bytes, %v), want %x", m, sum, n, err, want)
		}
	}
	if _, ok := h.At(500); ok {
		t.Fatal("a state at an offset passed without a mark")
	}
}

// A snapshot whose state holds another length than its offset says is
// refused: it could only give a wrong SHA-256.
func TestSnapshotChecksItsLength(t *testing.T) {
	h, _ := Resume(Fresh())
	h.Write([]byte("hello"))
	s, _ := h.At(5)
	s.Offset = 4
	if _, err := Decode(s.Encode()); err == nil {
		t.Fatal("a state of 5 bytes decoded as one of 4")
	}
	if _, err := Resume(s); err == nil {
		t.Fatal("resumed a state of 5 bytes as one of 4")
	}
	for _, bad := range []string{"", "1 0 0 - x", "2 0 0 - " + strings.Repeat("A", 144), "1 a 0 - AAAA"} {
		if _, err := Decode(bad); err == nil {
			t.Errorf("Decode(%q) succeeded", bad)
		}
	}
}

func TestInfoKeys(t *testing.T) {
	info := handler.FileInfo{Storage: map[string]string{"Key": "k"}}
	s := Fresh()
	with := WithState(info, &s)
	if _, ok, _ := State(info); ok {
		t.Fatal("WithState changed the info it was given")
	}
	if got, ok, err := State(with); !ok || err != nil || got.Offset != 0 {
		t.Fatalf("State: %+v %v %v", got, ok, err)
	}
	pending := WithPending(with, time.Now())
	if _, ok := Pending(pending); !ok {
		t.Fatal("not pending")
	}
	if _, ok, _ := State(pending); ok {
		t.Fatal("a pending upload keeps a running state")
	}
	sum := sha256.Sum256([]byte("x"))
	done := WithSum(pending, sum[:])
	if got, ok := Sum(done); !ok || !Equal(got, sum[:]) {
		t.Fatalf("Sum: %x %v", got, ok)
	}
	if _, ok := Pending(done); ok || done.Storage["Key"] != "k" {
		t.Fatalf("WithSum: %v", done.Storage)
	}

	if _, ok, err := Expected(info); ok || err != nil {
		t.Fatal("an expectation out of nothing")
	}
	stated := handler.FileInfo{MetaData: handler.MetaData{ReprKey: Encode(sum[:])}}
	if got, ok, err := Expected(stated); !ok || err != nil || !Equal(got, sum[:]) {
		t.Fatalf("Expected: %x %v %v", got, ok, err)
	}
	if !Wanted(false, stated) || Wanted(false, info) || !Wanted(true, info) {
		t.Fatal("Wanted")
	}
	stated.MetaData[ReprKey] = "short"
	if _, _, err := Expected(stated); err == nil {
		t.Fatal("a malformed expectation")
	}
}

// BenchmarkHash is the CPU cost of the running SHA-256 per byte, as a
// write pays it: 256 KiB reads through Reader, a mark per 8 MiB part.
func BenchmarkHash(b *testing.B) {
	buf := data(256 << 10)
	b.SetBytes(int64(len(buf)))
	h, _ := Resume(Fresh())
	r := h.Reader(&repeat{b: buf})
	p := make([]byte, len(buf))
	for i := 0; b.Loop(); i++ {
		if i%32 == 0 {
			h.Mark(h.Offset() + 8<<20)
		}
		io.ReadFull(r, p)
	}
}

type repeat struct{ b []byte }

func (r *repeat) Read(p []byte) (int, error) { return copy(p, r.b), nil }
