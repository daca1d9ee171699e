package s3stream

// CRC32 of a concatenation from the CRC32s of its pieces.
//
// A finished object's full-object checksum (see completion) is the CRC32 of
// all its bytes, but tusgate never holds them all: parts are sent by
// different requests, instances and processes, and a restarted upload only
// has what S3's ListParts reports, each part's CRC32 and size. zlib's
// crc32_combine derives crc(A‖B) from crc(A), crc(B) and len(B); Go's
// hash/crc32 has no such function, so this is zlib's, in its classic GF(2)
// matrix form (zlib 1.2.11, crc32.c), for the IEEE polynomial that S3's
// CRC32 and Go's crc32.ChecksumIEEE use.
//
// Appending n zero bytes to a message is a linear map of its (raw) CRC
// register over GF(2): a 32×32 bit matrix, built by squaring the matrix of
// one zero bit. Then crc(A‖B) = zeros(len(B))·crc(A) ⊕ crc(B) (the pre- and
// post-conditioning of the CRC cancel out). The matrix for a length costs
// about a thousand word operations per doubling; the parts of an upload
// mostly share one size, so crc32Combiner keeps the matrix of each length
// it met, and each further part costs 32 word operations.

// crc32Poly is the IEEE polynomial, bit-reversed (crc32.IEEE).
const crc32Poly = 0xedb88320

// gf2Matrix is a 32×32 bit matrix over GF(2): column i is row[i].
type gf2Matrix [32]uint32

// times returns m·vec.
func (m *gf2Matrix) times(vec uint32) uint32 {
	var sum uint32
	for i := 0; vec != 0; i, vec = i+1, vec>>1 {
		if vec&1 != 0 {
			sum ^= m[i]
		}
	}
	return sum
}

// square sets m to sq·sq.
func (m *gf2Matrix) square(sq *gf2Matrix) {
	for i := range m {
		m[i] = sq.times(sq[i])
	}
}

// zerosOperator returns the matrix that appends n > 0 zero bytes to a
// CRC32 register (zlib's crc32_combine_ without the final ⊕ crc2, applied
// to each unit vector).
func zerosOperator(n int64) *gf2Matrix {
	var odd, even gf2Matrix
	// The operator for one zero bit.
	odd[0] = crc32Poly
	row := uint32(1)
	for i := 1; i < 32; i++ {
		odd[i] = row
		row <<= 1
	}
	even.square(&odd) // two zero bits
	odd.square(&even) // four zero bits

	// result starts as the identity and collects the powers n's bits pick:
	// even and odd alternate as 8, 16, 32 … zero bits, i.e. 1, 2, 4 … bytes.
	var result gf2Matrix
	for i := range result {
		result[i] = 1 << i
	}
	apply := func(op *gf2Matrix) {
		var next gf2Matrix
		for i := range next {
			next[i] = op.times(result[i])
		}
		result = next
	}
	for {
		even.square(&odd)
		if n&1 != 0 {
			apply(&even)
		}
		n >>= 1
		if n == 0 {
			break
		}
		odd.square(&even)
		if n&1 != 0 {
			apply(&odd)
		}
		n >>= 1
		if n == 0 {
			break
		}
	}
	return &result
}

// combineCRC32 returns the CRC32 of A‖B from crc1 = CRC32(A), crc2 =
// CRC32(B) and len2 = len(B) (zlib's crc32_combine).
func combineCRC32(crc1, crc2 uint32, len2 int64) uint32 {
	if len2 <= 0 {
		return crc1
	}
	return zerosOperator(len2).times(crc1) ^ crc2
}

// crc32Combiner accumulates the CRC32 of a sequence of pieces from their
// CRC32s and lengths.
type crc32Combiner struct {
	sum uint32
	ops map[int64]*gf2Matrix // by length
}

// add appends a piece of n bytes whose CRC32 is crc.
func (c *crc32Combiner) add(crc uint32, n int64) {
	if n <= 0 {
		return
	}
	op := c.ops[n]
	if op == nil {
		if c.ops == nil {
			c.ops = map[int64]*gf2Matrix{}
		}
		op = zerosOperator(n)
		c.ops[n] = op
	}
	c.sum = op.times(c.sum) ^ crc
}
