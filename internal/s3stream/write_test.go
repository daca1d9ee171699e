package s3stream

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"regexp"
	"runtime"
	"strings"
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
	b := newFillBody(buf, len(buf), 0, nil)
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

// wantAWSChunked is S3's aws-chunked encoding of payload with a CRC32
// trailer, in chunks of 1 MiB.
func wantAWSChunked(payload []byte) string {
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(payload))
	var b strings.Builder
	for rest := payload; len(rest) > 0; {
		chunk := rest[:min(len(rest), 1<<20)]
		fmt.Fprintf(&b, "%x\r\n%s\r\n", len(chunk), chunk)
		rest = rest[len(chunk):]
	}
	fmt.Fprintf(&b, "0\r\nx-amz-checksum-crc32:%s\r\n\r\n", base64.StdEncoding.EncodeToString(crc[:]))
	return b.String()
}

// recordingSealer keeps what a body seals, and checks that the body's
// bytes are given back before they are sent.
type recordingSealer struct {
	t      *testing.T
	body   *fillBody
	out    bytes.Buffer
	sealed [][]byte // every slice Seal was given
}

func (s *recordingSealer) Write(p []byte) (int, error) { return s.out.Write(p) }

func (s *recordingSealer) Seal(p []byte) error {
	s.sealed = append(s.sealed, p)
	s.out.Write(p)
	return nil
}

func (s *recordingSealer) Send() error {
	s.body.mu.Lock()
	defer s.body.mu.Unlock()
	if s.body.lent != 0 {
		s.t.Errorf("Send while %d bytes of the part buffer are on loan", s.body.lent)
	}
	return nil
}

// chunkHeader is what a body seals between runs of the part buffer.
var chunkHeader = regexp.MustCompile(`^(\r\n)?[0-9a-f]+\r\n$`)

// TestCRCTrailerBody: a streamed part's body is the aws-chunked encoding the
// SDK would send, whether read or written; written to a tlsbatch.Sealer,
// the payload is sealed from the part buffer itself, not from a copy.
func TestCRCTrailerBody(t *testing.T) {
	for _, n := range []int{1, tlsbatch.ChunkSize, 3*tlsbatch.ChunkSize + 17, 1 << 20, 2<<20 + 3*tlsbatch.ChunkSize + 5} {
		buf := make([]byte, n)
		for i := range buf {
			buf[i] = byte(i * 7)
		}
		want := wantAWSChunked(buf)
		full := func() *fillBody { return newFillBody(buf, len(buf), n, nil) }

		read, err := io.ReadAll(newCRCTrailerBody(full()))
		if err != nil || string(read) != want {
			t.Fatalf("%d bytes: Read gave %d bytes (%v), want %d", n, len(read), err, len(want))
		}
		if l := newCRCTrailerBody(full()).Len(); l != int64(len(want)) {
			t.Fatalf("%d bytes: Len = %d, want %d", n, l, len(want))
		}
		var plain bytes.Buffer
		if k, err := newCRCTrailerBody(full()).WriteTo(&plain); err != nil || plain.String() != want || k != int64(len(want)) {
			t.Fatalf("%d bytes: WriteTo a buffer = %d, %v; bytes equal: %v", n, k, err, plain.String() == want)
		}
		b := full()
		s := &recordingSealer{t: t, body: b}
		if k, err := newCRCTrailerBody(b).WriteTo(s); err != nil || s.out.String() != want || k != int64(len(want)) {
			t.Fatalf("%d bytes: WriteTo a Sealer = %d, %v; bytes equal: %v", n, k, err, s.out.String() == want)
		}
		off := 0
		for _, p := range s.sealed {
			if chunkHeader.Match(p) {
				continue
			}
			if off >= n || &p[0] != &buf[off] {
				t.Fatalf("%d bytes: sealed run at %d is a copy, not the part buffer", n, off)
			}
			off += len(p)
		}
		if off != n {
			t.Fatalf("%d bytes: sealed %d bytes of the part buffer", n, off)
		}
	}
}

// TestDetachWaitsForLoan: the part buffer is not taken back while bytes of
// it are on loan to the S3 connection.
func TestDetachWaitsForLoan(t *testing.T) {
	buf := make([]byte, 1<<20)
	b := newFillBody(buf, len(buf), len(buf), nil)
	if _, err := b.lend(1000); err != nil {
		t.Fatal(err)
	}
	started, done := make(chan struct{}), make(chan struct{})
	go func() {
		close(started)
		b.detach()
		close(done)
	}()
	<-started
	for range 100 {
		runtime.Gosched()
		select {
		case <-done:
			t.Fatal("detach returned while bytes were on loan")
		default:
		}
	}
	b.giveBack()
	<-done
	if _, err := b.lend(1000); !errors.Is(err, errDetached) {
		t.Fatalf("lend after detach: %v, want errDetached", err)
	}
}
