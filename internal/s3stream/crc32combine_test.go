package s3stream

import (
	"hash/crc32"
	"math/rand/v2"
	"testing"
)

// combineCRC32 agrees with crc32 of the concatenation, for random sizes
// (empty pieces included) and random splits.
func TestCombineCRC32(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(rng.Uint32())
	}
	for range 300 {
		n := rng.IntN(len(buf) + 1)
		if rng.IntN(4) == 0 {
			n = rng.IntN(64)
		}
		cut := rng.IntN(n + 1)
		a, b := buf[:cut], buf[cut:n]
		got := combineCRC32(crc32.ChecksumIEEE(a), crc32.ChecksumIEEE(b), int64(len(b)))
		if want := crc32.ChecksumIEEE(buf[:n]); got != want {
			t.Fatalf("combine of %d and %d bytes: %08x, want %08x", len(a), len(b), got, want)
		}
	}
	if got := combineCRC32(0, 0, 0); got != 0 {
		t.Errorf("two empty pieces: %08x", got)
	}
}

// crc32Combiner over many pieces, some empty, some of one repeated size
// (its cached operator), equals crc32 of the whole.
func TestCRC32CombinerPieces(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	data := make([]byte, 3<<20+12345)
	for i := range data {
		data[i] = byte(rng.Uint32())
	}
	var c crc32Combiner
	for off := 0; off < len(data); {
		n := 256 << 10
		switch rng.IntN(5) {
		case 0:
			n = 0
		case 1:
			n = rng.IntN(100 << 10)
		}
		n = min(n, len(data)-off)
		c.add(crc32.ChecksumIEEE(data[off:off+n]), int64(n))
		off += n
	}
	if want := crc32.ChecksumIEEE(data); c.sum != want {
		t.Fatalf("combined %08x, want %08x", c.sum, want)
	}
	if len(c.ops) > 40 {
		t.Errorf("%d operators kept for mostly equal pieces", len(c.ops))
	}
}

// Lengths far beyond what a test can hash. zerosCRC derives the CRC32 of
// n zero bytes from one zero byte by combines alone; it must agree with
// crc32 where that can be computed, with 1 MiB of zeros doubled up to
// 8 TiB, and with the same 8 TiB split differently. And a message, a huge
// run of zeros and another message combine the same whichever pair is
// combined first.
func TestCombineCRC32LargeLengths(t *testing.T) {
	zeros := make([]byte, 3<<20+7)
	for _, n := range []int{0, 1, 2, 3, 1000, 4097, 1 << 20, len(zeros)} {
		if got, want := zerosCRC(int64(n)), crc32.ChecksumIEEE(zeros[:n]); got != want {
			t.Fatalf("%d zeros: %08x, want %08x", n, got, want)
		}
	}
	sum, size := crc32.ChecksumIEEE(zeros[:1<<20]), int64(1<<20)
	for size < 8<<40 {
		sum = combineCRC32(sum, sum, size)
		size *= 2
	}
	if got := zerosCRC(8 << 40); got != sum {
		t.Fatalf("8 TiB of zeros: %08x by doubling 1 MiB, %08x from one byte", sum, got)
	}
	var c crc32Combiner
	var total int64
	for _, n := range []int64{1 << 20, 3<<20 + 1, 1 << 30, 7<<30 - 1, 8<<40 - 4<<20 - 8<<30} {
		c.add(zerosCRC(n), n)
		total += n
	}
	if total != 8<<40 || c.sum != sum {
		t.Fatalf("8 TiB of zeros in pieces: %08x over %d bytes, want %08x", c.sum, total, sum)
	}

	a, b := []byte("tus"), []byte("gate")
	const gap = 5<<40 + 3
	left := combineCRC32(combineCRC32(crc32.ChecksumIEEE(a), zerosCRC(gap), gap), crc32.ChecksumIEEE(b), int64(len(b)))
	right := combineCRC32(crc32.ChecksumIEEE(a), combineCRC32(zerosCRC(gap), crc32.ChecksumIEEE(b), int64(len(b))), gap+int64(len(b)))
	if left != right {
		t.Fatalf("a‖zeros‖b: %08x one way, %08x the other", left, right)
	}
}

// zerosCRC is the CRC32 of n zero bytes, by repeated doubling from one
// zero byte (only combines, no hashing of n bytes).
func zerosCRC(n int64) uint32 {
	one := crc32.ChecksumIEEE([]byte{0})
	var sum uint32
	pow, powLen := one, int64(1)
	for n > 0 {
		if n&1 != 0 {
			sum = combineCRC32(sum, pow, powLen)
		}
		pow = combineCRC32(pow, pow, powLen)
		powLen *= 2
		n >>= 1
	}
	return sum
}

// BenchmarkCompletionCRC32 is the cost of the full-object CRC32 at
// completion for the largest upload: 10,000 parts of one size and a
// shorter last one.
func BenchmarkCompletionCRC32(b *testing.B) {
	for b.Loop() {
		var c crc32Combiner
		for i := range 10000 {
			n := int64(524 << 20)
			if i == 9999 {
				n = 12345
			}
			c.add(uint32(i)*2654435761, n)
		}
	}
}
