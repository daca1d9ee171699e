package direct

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// limit is the most bytes the upload may hold.
func (s *Service) limit(rec *record) int64 {
	l := s.o.MaxSize
	if rec.Size >= 0 {
		l = min(l, rec.Size)
	}
	if s.o.Limits.Bytes > 0 {
		l = min(l, s.o.Limits.Bytes)
	}
	return l
}

// signPart presigns one UploadPart. With ?size= the URL binds exactly that
// Content-Length; S3 refuses any other.
func (s *Service) signPart(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "sign", err)
		return
	}
	q := r.URL.Query()
	pn, err := strconv.Atoi(r.PathValue("partNumber"))
	if err != nil || pn < 1 || pn > MaxParts {
		s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_PART_NUMBER", "part numbers go from 1 to %d", MaxParts))
		return
	}
	size := int64(-1)
	if v := q.Get("size"); v != "" {
		size, err = strconv.ParseInt(v, 10, 64)
		if err != nil || size < 0 || size > MaxPartSize {
			s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_SIZE", "size must be a part size in bytes, 0 to %d", int64(MaxPartSize)))
			return
		}
	}
	if size < 0 && s.o.Limits.Bytes > 0 {
		s.fail(w, r, "sign", errSizeRequired)
		return
	}
	sum := q.Get("sha256")
	if sum != "" {
		if b, err := base64.StdEncoding.DecodeString(sum); err != nil || len(b) != sha256.Size {
			s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_CHECKSUM", "sha256 must be the part's SHA-256 in base64 (44 characters)"))
			return
		}
	}
	if size == 0 {
		// The signer leaves a Content-Length of 0 out of the signature:
		// the empty body's SHA-256 binds it instead.
		if sum != "" && sum != emptySHA256 {
			s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_CHECKSUM", "an empty part's sha256 is %s", emptySHA256))
			return
		}
		sum = emptySHA256
	}
	u, err := s.resolve(r.Context(), p, q.Get("key"), r.PathValue("uploadId"))
	if err != nil {
		s.fail(w, r, "sign", err)
		return
	}
	if l := s.limit(u.rec); size > l {
		s.fail(w, r, "sign", errorf(http.StatusRequestEntityTooLarge, "ERR_MAX_SIZE_EXCEEDED", "a part of %d bytes exceeds this upload's limit of %d bytes", size, l))
		return
	}
	if d := u.rec.Size; s.o.Limits.Bytes > 0 && d >= 0 {
		bound, ok := partBound(d, pn)
		if !ok {
			s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_PART_NUMBER", "an upload of %d bytes has at most %d parts (every part but the last holds at least %d bytes)", d, mostParts(d), int64(MinPartSize)))
			return
		}
		if size > bound {
			s.fail(w, r, "sign", errorf(http.StatusRequestEntityTooLarge, "ERR_PART_TOO_LARGE", "part %d of an upload of %d bytes may hold at most %d bytes under this server's byte quota (the upload's size over the part number); cut the file into parts of equal size", pn, d, bound))
			return
		}
	}
	in := &s3.UploadPartInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key), UploadId: aws.String(u.rec.UploadID), PartNumber: aws.Int32(int32(pn))}
	if size >= 0 {
		in.ContentLength = aws.Int64(size)
	}
	if sum != "" {
		// Signed as x-amz-checksum-sha256: S3 stores the part only if the
		// body has that hash.
		in.ChecksumSHA256 = aws.String(sum)
	}
	signed, err := s.o.Presign.PresignUploadPart(r.Context(), in, s.presignOptions)
	if err != nil {
		s.fail(w, r, "PresignUploadPart", err)
		return
	}
	s.m.signed.WithLabelValues("part").Inc()
	writeJSON(w, http.StatusOK, signature{URL: signed.URL, Expires: int64(s.o.URLExpiry / time.Second), Headers: browserHeaders(signed)})
}

// partBound is the most bytes part pn of an upload of d declared bytes
// may hold under a byte quota, and false if the upload cannot have a part
// pn. A URL that binds its size bounds one part, but S3 keeps one part per
// part number until completion, so URLs of d bytes for every part number
// let S3 hold 10,000 times d past the quota until the janitor aborts the
// upload. Every part but the last holds at least MinPartSize, so an upload
// has at most ceil(d / MinPartSize) parts (one if d is 0); and in every cut
// into parts of equal size (the last smaller), part n holds at most d/n
// bytes. All part numbers together then bind at most d·(1 + 1/2 + … + 1/N),
// under d·(ln N + 1): less than 10 times d.
func partBound(d int64, pn int) (int64, bool) {
	if int64(pn) > mostParts(d) {
		return 0, false
	}
	return d / int64(pn), true
}

// mostParts is how many parts an upload of d bytes can have.
func mostParts(d int64) int64 { return max(1, (d+MinPartSize-1)/MinPartSize) }

// errSizeRequired refuses an unsized part URL under --quota-bytes: S3
// would take up to MaxPartSize for it, past the quota, until completion
// or the janitor. Stock @uppy/aws-s3 signs without sizes; with a byte
// quota its signPart must add &size= (as tusgate's /uppy-s3/ page does).
var errSizeRequired = errorf(http.StatusBadRequest, "ERR_SIZE_REQUIRED", "with a byte quota, sign each part with &size=<bytes>: the URL then takes exactly that many")

// emptySHA256 is the SHA-256 of no bytes, in base64. The SDK's signer
// signs Content-Length only when it is above 0 (and the presigned
// PutObject drops Content-Type then too): a URL signed for 0 bytes binds
// its size through this checksum, which S3 verifies (400 BadDigest for
// any other body).
const emptySHA256 = "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="

// maxBatch bounds the parts one batch request signs.
const maxBatch = 1000

// signBatch presigns several parts at once (?partNumbers=1,2,3), as
// Companion's batch route does for older Uppy clients: without sizes, so
// each URL takes up to MaxPartSize (refused under --quota-bytes).
func (s *Service) signBatch(w http.ResponseWriter, r *http.Request) {
	p, err := caller(r)
	if err != nil {
		s.fail(w, r, "sign", err)
		return
	}
	if s.o.Limits.Bytes > 0 {
		s.fail(w, r, "sign", errSizeRequired)
		return
	}
	q := r.URL.Query()
	list := strings.Split(q.Get("partNumbers"), ",")
	if len(list) > maxBatch {
		s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_PART_NUMBER", "sign at most %d parts at once", maxBatch))
		return
	}
	numbers := make([]int, len(list))
	for i, v := range list {
		if numbers[i], err = strconv.Atoi(v); err != nil || numbers[i] < 1 || numbers[i] > MaxParts {
			s.fail(w, r, "sign", errorf(http.StatusBadRequest, "ERR_INVALID_PART_NUMBER", "partNumbers is a comma-separated list of part numbers from 1 to %d", MaxParts))
			return
		}
	}
	u, err := s.resolve(r.Context(), p, q.Get("key"), r.PathValue("uploadId"))
	if err != nil {
		s.fail(w, r, "sign", err)
		return
	}
	urls := make(map[string]string, len(numbers))
	for _, pn := range numbers {
		in := &s3.UploadPartInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(u.key), UploadId: aws.String(u.rec.UploadID), PartNumber: aws.Int32(int32(pn))}
		signed, err := s.o.Presign.PresignUploadPart(r.Context(), in, s.presignOptions)
		if err != nil {
			s.fail(w, r, "PresignUploadPart", err)
			return
		}
		urls[strconv.Itoa(pn)] = signed.URL
	}
	s.m.signed.WithLabelValues("part").Add(float64(len(numbers)))
	writeJSON(w, http.StatusOK, map[string]any{"presignedUrls": urls})
}

// signature is a presigned request as @uppy/aws-s3 takes it.
type signature struct {
	Method  string            `json:"method,omitempty"`
	URL     string            `json:"url"`
	Expires int64             `json:"expires"` // seconds
	Fields  map[string]string `json:"fields,omitempty"`
	Headers map[string]string `json:"headers,omitempty"`
	// Key and Bucket say where a single PUT goes (tusgate's addition).
	Key    string `json:"key,omitempty"`
	Bucket string `json:"bucket,omitempty"`
}

// presignOptions sets the URLs' lifetime and keeps the SDK from adding a
// checksum of an empty body to them: checksums would bind only as headers
// the browser sends.
func (s *Service) presignOptions(o *s3.PresignOptions) {
	o.Expires = s.o.URLExpiry
	o.ClientOptions = append(o.ClientOptions, func(so *s3.Options) {
		so.RequestChecksumCalculation = aws.RequestChecksumCalculationWhenRequired
	})
}

// browserHeaders are the signed headers the browser must send itself:
// all but Host and Content-Length, which it sets on its own.
func browserHeaders(req *v4.PresignedHTTPRequest) map[string]string {
	out := map[string]string{}
	for k, v := range req.SignedHeader {
		switch strings.ToLower(k) {
		case "host", "content-length":
			continue
		}
		out[strings.ToLower(k)] = strings.Join(v, ",")
	}
	if len(out) == 0 {
		return nil
	}
	return out
}
