package s3stream

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"net/http"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// TestStreamsUpToMaxSizeFit: uploads of every kind of length (known at
// creation, declared with the last bytes, declared midway) grow to MaxSize
// in writes of many sizes, on a store that allows 20 parts, and complete
// within them: every part but the last at least the minimum, and equal
// where S3 needs equal parts. (Parts of an upload of unknown length used to
// have the preferred size, so that such an upload could never pass
// MaxMultipartParts × PreferredPartSize: here 1,280 bytes.)
func TestStreamsUpToMaxSizeFit(t *testing.T) {
	const maxSize = 4000
	chunkings := []struct {
		name string
		next func(r *rand.Rand) int64
	}{
		{"random", func(r *rand.Rand) int64 { return 1 + r.Int64N(300) }},
		{"minimum parts", func(*rand.Rand) int64 { return testMinPart }},
		{"small", func(r *rand.Rand) int64 { return 1 + r.Int64N(10) }},
		{"one request", func(*rand.Rand) int64 { return maxSize }},
	}
	for _, m := range writeModes {
		for _, equal := range []bool{false, true} {
			for _, kind := range []string{"known", "declared last", "declared midway"} {
				for i, ch := range chunkings {
					t.Run(fmt.Sprintf("%s/equal=%v/%s/%s", m.name, equal, kind, ch.name), func(t *testing.T) {
						e := newEnv(t, m.stream, func(s *s3store.S3Store) {
							s.MaxMultipartParts = 20
							if equal {
								s.MinPartSize = testPartSize
							}
						})
						e.store.Buffers = NewBuffers(m.budget)
						e.store.MaxSize = maxSize
						if equal {
							e.s3.minPart = testPartSize
						}
						rng := rand.New(rand.NewPCG(uint64(i), 3))
						data := testData(maxSize, uint64(i))
						id := e.create(maxSize, kind != "known")
						if kind != "known" {
							id = e.create(0, true)
						}
						for off := int64(0); off < maxSize; {
							n := min(ch.next(rng), maxSize-off)
							r := req{bodyLen: n, uploadLength: -1}
							if (kind != "known" && off+n == maxSize) || (kind == "declared midway" && off >= maxSize/2) {
								if info, _ := e.s3Info(id); info.SizeIsDeferred {
									r.uploadLength = maxSize
								}
							}
							got, err := e.request(id, off, reqBody(data[off:off+n]), r)
							if err != nil || got != n {
								t.Fatalf("WriteChunk of %d at %d = %d, %v; parts so far %v", n, off, got, err, e.s3.partSizes(e.key(id)))
							}
							off += n
						}
						e.checkObject(id, data)
						sizes := e.s3.completedParts(e.key(id))
						if len(sizes) > 20 {
							t.Fatalf("%d parts: %v", len(sizes), sizes)
						}
						for k, sz := range sizes[:len(sizes)-1] {
							if sz < e.store.Inner.MinPartSize || (equal && sz != sizes[0]) {
								t.Fatalf("part %d of %d bytes: %v", k+1, sz, sizes)
							}
						}
					})
				}
			}
		}
	}
}

// TestNoPartsLeft: when an upload has used all the parts S3 allows (here
// because parts may not exceed 100 bytes), the write is refused with a 413,
// which clients do not retry, not with an error that is retried forever.
func TestNoPartsLeft(t *testing.T) {
	for _, m := range writeModes {
		t.Run(m.name, func(t *testing.T) {
			e := newEnv(t, m.stream, func(s *s3store.S3Store) {
				s.MaxMultipartParts = 4
				s.MaxPartSize = 100
			})
			e.store.Buffers = NewBuffers(m.budget)
			e.store.MaxSize = 1000
			data := testData(1000, 1)
			id := e.create(0, true)
			n, err := e.request(id, 0, reqBody(data), req{bodyLen: 1000, uploadLength: -1})
			var tusErr handler.Error
			if !errors.As(err, &tusErr) || tusErr.HTTPResponse.StatusCode != http.StatusRequestEntityTooLarge {
				t.Fatalf("WriteChunk = %d, %v; want a 413", n, err)
			}
			if n != 400 || e.offset(id) != 400 {
				t.Fatalf("WriteChunk stored %d bytes, the upload's offset is %d; want the 400 that fit", n, e.offset(id))
			}
		})
	}
}

// TestBandPlan checks the sizes planned for uploads of unknown length.
func TestBandPlan(t *testing.T) {
	const (
		MiB = 1 << 20
		GiB = 1 << 30
		TiB = 1 << 40
	)
	for _, tt := range []struct {
		preferred, maxSize int64
		minimal            bool // the base is more than the preferred size
	}{
		{8 * MiB, 5 * TiB, true},
		{8 * MiB, 1 * TiB, false},
		{50 * MiB, 5 * TiB, false},
	} {
		s := &Store{Inner: s3store.New("b", nil), MaxSize: tt.maxSize}
		s.Inner.PreferredPartSize = tt.preferred
		p := s.newPlan(handler.FileInfo{SizeIsDeferred: true}, 0)
		if total := p.bandSize(1) + p.bandCapacity(1); total < 2*tt.maxSize {
			t.Errorf("preferred %d, max %d: the bands hold %d", tt.preferred, tt.maxSize, total)
		}
		if !tt.minimal && p.bandBase != tt.preferred {
			t.Errorf("preferred %d, max %d: base %d, want the preferred size", tt.preferred, tt.maxSize, p.bandBase)
		}
		if tt.minimal {
			q := p
			q.bandBase = p.bandBase * 99 / 100
			if total := q.bandSize(1) + q.bandCapacity(1); total >= 2*tt.maxSize {
				t.Errorf("preferred %d, max %d: base %d is not close to the smallest (1 %% less holds %d)", tt.preferred, tt.maxSize, p.bandBase, total)
			}
		}
		if last := p.bandSize(10000); last > 5*GiB {
			t.Errorf("the last part has %d bytes", last)
		}
		if p.bandSize(1000) != p.bandBase || p.bandSize(1001) != 2*p.bandBase {
			t.Errorf("bands: part 1000 %d, part 1001 %d", p.bandSize(1000), p.bandSize(1001))
		}
	}
}
