package s3stream

import (
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"
)

// plan sizes the parts of one upload, for every write path, so that every
// upload the server admits fits in S3's limit on parts per multipart upload
// (MaxMultipartParts, 10,000 on S3) and part size (MaxPartSize, 5 GiB):
//
//   - An upload of known length is cut into equal parts: the preferred part
//     size, or more when the length needs more (as s3store cuts it). A
//     length declared late (Upload-Defer-Length) sizes the rest of the
//     parts from what is left.
//   - An upload whose length is not known yet may grow to MaxSize. Its parts
//     grow in bands: the first tenth of the part numbers at the preferred
//     size, each further tenth twice the one before (capped at MaxPartSize),
//     with a base chosen so that all the bands together hold twice MaxSize
//     (room for writes that end short of a full part, see isPart). A
//     stream of a few GB stays in small parts; one of terabytes still fits.
//   - A write that ends short of a full part stores what it has as a part
//     when that is the last of the upload, or when it fills the minimum
//     part size and the bytes the upload may still take fit in the parts
//     after it; otherwise as the .part tail, which the next write prepends.
//   - Where S3 needs equal parts (Cloudflare R2; tusgate reads that from a
//     minimum part size equal to the preferred one), every part but the last
//     has the size of the first, and an upload of unknown length sizes its
//     parts from MaxSize from the start.
type plan struct {
	size                        int64 // the upload's length; -1 while unknown
	maxSize                     int64 // the most an upload of unknown length may grow to
	first                       int64 // the size of part 1 once stored, else 0
	preferred, minPart, maxPart int64
	maxParts                    int32
	equal                       bool  // every part but the last the same size
	bandBase                    int64 // size of the first band's parts (unknown length)
}

// newPlan returns the plan of an upload with info, whose part 1, if
// stored, has first bytes.
func (s *Store) newPlan(info handler.FileInfo, first int64) plan {
	p := plan{
		size: info.Size, maxSize: s.maxSize(), first: first,
		preferred: s.Inner.PreferredPartSize, minPart: s.Inner.MinPartSize, maxPart: s.Inner.MaxPartSize,
		maxParts: int32(s.Inner.MaxMultipartParts),
	}
	if info.SizeIsDeferred {
		p.size = -1
	}
	p.equal = p.minPart >= p.preferred
	p.bandBase = s.bandBase()
	return p
}

// maxSize is the most an upload may hold: MaxSize, at most what
// s3store allows in one object.
func (s *Store) maxSize() int64 {
	if s.MaxSize > 0 && (s.Inner.MaxObjectSize <= 0 || s.MaxSize < s.Inner.MaxObjectSize) {
		return s.MaxSize
	}
	return s.Inner.MaxObjectSize
}

// bands is how many bands the part numbers of an upload of unknown length
// fall into; each band's parts are twice the size of the band before.
const bands = 10

// bandLen is how many part numbers one band has.
func bandLen(maxParts int32) int32 { return max(1, (maxParts+bands-1)/bands) }

// bandBase computes (once) the smallest size of the first band's parts,
// at least the preferred part size, for which all bands hold twice
// maxSize.
func (s *Store) bandBase() int64 {
	s.bandOnce.Do(func() {
		p := plan{maxSize: s.maxSize(), preferred: s.Inner.PreferredPartSize, maxPart: s.Inner.MaxPartSize, maxParts: int32(s.Inner.MaxMultipartParts)}
		base := max(p.preferred, 1)
		for base < p.maxPart {
			p.bandBase = base
			total := p.bandSize(1) + p.bandCapacity(1)
			if total/2 >= p.maxSize {
				break
			}
			// Grow in proportion to what is missing, by at least one byte.
			base = max(base+1, int64(float64(base)*float64(2*p.maxSize)/float64(total)))
		}
		s.bandBaseValue = min(base, p.maxPart)
	})
	return s.bandBaseValue
}

// bandSize is the size of part n of an upload of unknown length.
func (p plan) bandSize(n int32) int64 {
	size := p.bandBase
	for b := (n - 1) / bandLen(p.maxParts); b > 0 && size < p.maxPart; b-- {
		size *= 2
	}
	return min(size, p.maxPart)
}

// bandCapacity is how many bytes the parts after part n hold on the band
// plan.
func (p plan) bandCapacity(n int32) int64 {
	var total int64
	bl := bandLen(p.maxParts)
	for k := n + 1; k <= p.maxParts; {
		end := min(p.maxParts, ((k-1)/bl+1)*bl) // the last part of k's band
		total += int64(end-k+1) * p.bandSize(k)
		k = end + 1
	}
	return total
}

// knownSize is the equal part size of an upload of known length from the
// start: the preferred size, or more when the length needs more.
func (p plan) knownSize() int64 {
	n := int64(p.maxParts)
	return min(p.maxPart, max(p.preferred, (p.size+n-1)/n))
}

// partSize is the size of part n starting at upload offset start: what a
// write cuts its bytes into.
func (p plan) partSize(n int32, start int64) int64 {
	if p.equal {
		switch {
		case p.first > 0:
			return p.first
		case p.size >= 0:
			return p.knownSize()
		default:
			n := int64(p.maxParts)
			return min(p.maxPart, max(p.preferred, (p.maxSize+n-1)/n))
		}
	}
	if p.size < 0 {
		return p.bandSize(n)
	}
	// The equal size of knownSize; after a late length, more if what is
	// left needs more.
	left := int64(max(p.maxParts-n+1, 1))
	return min(p.maxPart, max(p.knownSize(), (p.size-start+left-1)/left))
}

// isPart reports whether length bytes starting at offset start may be
// stored as part n: a full part, the last part of the upload, or (unless
// parts must be equal) at least the minimum part size with room for what
// the upload may still take in the parts after n.
func (p plan) isPart(n int32, start, length int64) bool {
	if length >= p.partSize(n, start) || (p.size >= 0 && start+length == p.size) {
		return true
	}
	if p.equal || length < p.minPart {
		return false
	}
	end := start + length
	if p.size >= 0 {
		return p.size-end <= int64(p.maxParts-n)*p.knownSize()
	}
	return p.maxSize-end <= p.bandCapacity(n)
}

// check refuses part n when S3 has no part numbers left: a client must
// not retry forever what can never be stored.
func (p plan) check(n int32) error {
	if n > p.maxParts {
		return errNoPartsLeft
	}
	return nil
}

var errNoPartsLeft = handler.NewError("ERR_UPLOAD_TOO_LARGE", "this upload has used all the parts S3 allows in one object; it cannot take more bytes", http.StatusRequestEntityTooLarge)
