package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"testing"
)

func TestGeneratorDeterministic(t *testing.T) {
	a, b := NewGenerator(7), NewGenerator(7)
	pa, pb := make([]byte, 1<<20), make([]byte, 1<<20)
	a.ReadAt(pa, 12345)
	b.ReadAt(pb, 12345)
	if !bytes.Equal(pa, pb) {
		t.Fatal("same seed and offset gave different bytes")
	}
	NewGenerator(8).ReadAt(pb, 12345)
	if bytes.Equal(pa, pb) {
		t.Fatal("different seeds gave the same bytes")
	}
}

// ReadAt of any slice must agree with one long sequential read, including
// slices that cut a stamp or cross the 4 MiB repetition.
func TestGeneratorReadAtMatchesStream(t *testing.T) {
	g := NewGenerator(1)
	const total = 2*genBufSize + 3*genBlock
	all, err := io.ReadAll(g.Section(0, total))
	if err != nil || len(all) != total {
		t.Fatalf("ReadAll: %d bytes, %v", len(all), err)
	}
	cases := []struct{ off, n int64 }{
		{0, 1}, {3, 2}, {genBlock - 1, 3}, {genBlock + 4, 4}, {genBlock + 7, 1},
		{genBufSize - 5, 20}, {genBufSize - genBlock, 3 * genBlock}, {total - 9, 9},
		{12345, 3 << 20}, {1, total - 1},
	}
	for _, c := range cases {
		p := make([]byte, c.n)
		if n, err := g.ReadAt(p, c.off); n != len(p) || err != nil {
			t.Fatalf("ReadAt(%d bytes at %d) = %d, %v", c.n, c.off, n, err)
		}
		if !bytes.Equal(p, all[c.off:c.off+c.n]) {
			t.Errorf("ReadAt(%d bytes at %d) differs from the stream", c.n, c.off)
		}
	}
	// Reading in odd-sized pieces gives the same stream too.
	var got bytes.Buffer
	r := g.Section(0, total)
	buf := make([]byte, 4093)
	for {
		n, err := r.Read(buf)
		got.Write(buf[:n])
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if !bytes.Equal(got.Bytes(), all) {
		t.Error("reading in 4093-byte pieces differs from ReadAll")
	}
	if _, err := g.ReadAt(make([]byte, 1), -1); err == nil {
		t.Error("ReadAt at a negative offset succeeded")
	}
}

// Every 4 KiB block differs from every other, even across the repetition
// of the random buffer, and the stream does not compress.
func TestGeneratorNotRepetitive(t *testing.T) {
	g := NewGenerator(1)
	const total = 3 * genBufSize
	data := make([]byte, total)
	g.ReadAt(data, 0)
	seen := map[string]int64{}
	for off := int64(0); off < total; off += genBlock {
		k := string(data[off : off+genBlock])
		if prev, ok := seen[k]; ok {
			t.Fatalf("block at %d repeats the block at %d", off, prev)
		}
		seen[k] = off
	}
	var z bytes.Buffer
	w, _ := gzip.NewWriterLevel(&z, gzip.BestSpeed)
	w.Write(data[:8<<20])
	w.Close()
	if ratio := float64(z.Len()) / float64(8<<20); ratio < 0.99 {
		t.Errorf("gzip shrank 8 MiB of generated data to %.1f %%", ratio*100)
	}
}

func BenchmarkGenerator(b *testing.B) {
	g := NewGenerator(1)
	p := make([]byte, 256<<10)
	b.SetBytes(int64(len(p)))
	off := int64(0)
	for b.Loop() {
		g.ReadAt(p, off)
		off += int64(len(p))
	}
}
