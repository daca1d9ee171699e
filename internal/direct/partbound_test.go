package direct

import (
	"math"
	"testing"
)

// partBound admits every cut into parts of equal size (the last smaller,
// every other at least MinPartSize), and bounds what all part numbers
// together can hold to about ln N + 1 times the declared size.
func TestPartBound(t *testing.T) {
	const MiB = 1 << 20
	for _, d := range []int64{0, 1, 5 * MiB, 5*MiB + 1, 12 * MiB, 100*MiB + 7, 1 << 30, 5<<30 + 3} {
		for _, p := range []int64{MinPartSize, MinPartSize + 1, 8 * MiB, 64*MiB - 1, d} {
			if p < MinPartSize && p != d {
				continue
			}
			n := int64(1)
			if p > 0 {
				n = max(1, (d+p-1)/p)
			}
			for i := int64(1); i <= n; i++ {
				size := p
				if i == n {
					size = d - (n-1)*p
				}
				if b, ok := partBound(d, int(i)); !ok || size > b {
					t.Fatalf("upload of %d bytes in parts of %d: part %d of %d bytes refused (bound %d, %v)", d, p, i, size, b, ok)
				}
			}
		}
		most := mostParts(d)
		if _, ok := partBound(d, int(most)+1); ok && most < MaxParts {
			t.Errorf("upload of %d bytes: part %d allowed, but it has at most %d parts", d, most+1, most)
		}
		var total int64
		for i := 1; i <= int(min(most, MaxParts)); i++ {
			b, _ := partBound(d, i)
			total += b
		}
		if limit := float64(d) * (math.Log(float64(most)) + 1); float64(total) > limit {
			t.Errorf("upload of %d bytes: its part URLs can bind %d bytes in all, over %.0f", d, total, limit)
		}
	}
}
