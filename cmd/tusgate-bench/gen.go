package main

import (
	"encoding/binary"
	"io"
	"math/rand/v2"
)

const (
	// genBufSize is the size of the random buffer the generator repeats.
	genBufSize = 4 << 20
	// genBlock is the distance between two counter stamps. Every 4 KiB block
	// of the stream differs from every other, so neither block-level
	// deduplication nor a compressor with a window under 4 MiB gains much.
	genBlock = 4 << 10
	// genStamp is the length of a stamp at the start of each block.
	genStamp = 8
)

// Generator produces a deterministic, effectively endless byte stream fast
// enough not to limit a benchmark: a 4 MiB random buffer (filled once from
// the seed) repeated, with the first 8 bytes of every 4 KiB block replaced
// by that block's number mixed with the seed. A byte depends only on the
// seed and its offset, so any slice of the stream can be produced on its own
// (ReadAt), e.g. for a chunk or an S3 part.
type Generator struct {
	seed uint64
	base []byte
}

// NewGenerator returns the generator of the stream for seed.
func NewGenerator(seed uint64) *Generator {
	r := rand.NewChaCha8(seedBytes(seed))
	base := make([]byte, genBufSize)
	_, _ = r.Read(base) // ChaCha8.Read never fails
	return &Generator{seed: seed, base: base}
}

func seedBytes(seed uint64) [32]byte {
	var s [32]byte
	for i := range 4 {
		binary.LittleEndian.PutUint64(s[i*8:], seed^(uint64(i)*0x9e3779b97f4a7c15))
	}
	return s
}

// stamp returns the 8 bytes that start block number b.
func (g *Generator) stamp(b uint64) [genStamp]byte {
	var s [genStamp]byte
	// A cheap bijective mix, so consecutive blocks get unrelated stamps.
	x := (b ^ g.seed) * 0xbf58476d1ce4e5b9
	x ^= x >> 31
	binary.LittleEndian.PutUint64(s[:], x)
	return s
}

// ReadAt fills p with the stream's bytes from offset off. It always fills
// p completely; it fails only for a negative offset.
func (g *Generator) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, io.ErrUnexpectedEOF
	}
	for n := 0; n < len(p); {
		pos := (off + int64(n)) % genBufSize
		n += copy(p[n:], g.base[pos:])
	}
	// Stamps whose bytes fall inside [off, off+len(p)).
	end := off + int64(len(p))
	for b := off / genBlock; b*genBlock < end; b++ {
		start := b * genBlock
		if start+genStamp <= off {
			continue
		}
		s := g.stamp(uint64(b))
		lo := max(start, off)
		hi := min(start+genStamp, end)
		copy(p[lo-off:hi-off], s[lo-start:hi-start])
	}
	return len(p), nil
}

// Section returns a reader of n bytes of the stream starting at off. It is
// an io.ReadSeeker (the AWS SDK rewinds part bodies on retries).
func (g *Generator) Section(off, n int64) *io.SectionReader {
	return io.NewSectionReader(g, off, n)
}
