// Package checksum implements tus 1.0's checksum and checksum-trailer
// extensions: a PATCH (or a creation-with-upload POST) states the digest
// of its body in Upload-Checksum, as a header or as an HTTP trailer of a
// chunked body, and the server stores the body only if the digest matches.
// On a mismatch it answers 460 Checksum Mismatch and none of the request's
// bytes count.
//
// The HTTP layer (Middleware) parses the statement and puts an Expectation
// in the request's context; the store wraps the body in a Verifier, keeps
// what it writes provisional, and commits or rolls back once Verify has
// spoken (internal/s3stream, internal/diskbackend). tusd has no checksum
// support of its own (tus/tusd#81), hence this package.
package checksum

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"slices"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Algorithms are the algorithms tusgate verifies, as OPTIONS lists them in
// Tus-Checksum-Algorithm.
var Algorithms = []string{"sha1", "md5", "crc32", "sha256", "crc32c", "crc64nvme"}

// crc64NVME is the CRC-64/NVME polynomial (reversed), as S3 uses it.
var crc64NVME = crc64.MakeTable(0x9a6c9329ac4bc9b5)

// newHash returns a hash of the algorithm, or false for one tusgate does
// not know. sha512 is known for the IETF draft's Content-Digest (see
// Expect), not offered to tus clients: a trailer would hash every body with
// it too.
func newHash(alg string) (hash.Hash, bool) {
	switch alg {
	case "sha512":
		return sha512.New(), true
	case "sha1":
		return sha1.New(), true
	case "md5":
		return md5.New(), true
	case "crc32":
		return crc32.NewIEEE(), true
	case "sha256":
		return sha256.New(), true
	case "crc32c":
		return crc32.New(crc32.MakeTable(crc32.Castagnoli)), true
	case "crc64nvme":
		return crc64.New(crc64NVME), true
	}
	return nil, false
}

// Errors answered to clients.
var (
	// ErrMismatch: the body's digest is not the one stated; nothing of the
	// request was stored.
	ErrMismatch = handler.NewError("ERR_CHECKSUM_MISMATCH",
		"the checksum of the request body does not match Upload-Checksum; none of its bytes were stored: send them again", 460)
	// ErrUnverified: the body ended before its declared length or without
	// its checksum trailer, so its digest could not be checked; nothing of
	// the request was stored.
	ErrUnverified = handler.NewError("ERR_CHECKSUM_UNVERIFIED",
		"the request body ended before its checksum could be checked; none of its bytes were stored: send them again", 460)
	errBadHeader = handler.NewError("ERR_INVALID_CHECKSUM",
		"Upload-Checksum must be \"<algorithm> <base64 digest>\" with an algorithm of Tus-Checksum-Algorithm: "+strings.Join(Algorithms, ", "), http.StatusBadRequest)
	errUnknownAlgorithm = handler.NewError("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM",
		"the Upload-Checksum algorithm is not supported; use one of "+strings.Join(Algorithms, ", "), http.StatusBadRequest)
	errBoth = handler.NewError("ERR_INVALID_CHECKSUM",
		"send Upload-Checksum as a header or as a trailer, not both", http.StatusBadRequest)
)

// Expectation is the digest a request states for its body.
type Expectation struct {
	alg  string
	want []byte
	// trailer returns Upload-Checksum from the request's trailer, which is
	// there once the whole body was read (checksum-trailer); nil when the
	// header stated it.
	trailer func() string
}

// Algorithm is the stated algorithm ("" until a trailer is read).
func (e *Expectation) Algorithm() string { return e.alg }

// parse reads "<algorithm> <base64 digest>".
func parse(v string) (alg string, digest []byte, err error) {
	alg, enc, ok := strings.Cut(strings.TrimSpace(v), " ")
	if !ok || alg == "" || strings.ContainsAny(enc, " \t") {
		return "", nil, errBadHeader
	}
	h, known := newHash(alg)
	if !known || !slices.Contains(Algorithms, alg) {
		return "", nil, errUnknownAlgorithm
	}
	digest, err = base64.StdEncoding.DecodeString(enc)
	if err != nil || len(digest) != h.Size() {
		return "", nil, errBadHeader
	}
	return alg, digest, nil
}

// FromRequest reads r's Upload-Checksum: nil when r states none, an
// Expectation, or a 400 handler.Error for a statement tusgate cannot check.
func FromRequest(r *http.Request) (*Expectation, error) {
	header := r.Header.Values("Upload-Checksum")
	_, announced := r.Trailer[http.CanonicalHeaderKey("Upload-Checksum")]
	switch {
	case len(header) > 1:
		return nil, errBadHeader
	case len(header) == 1 && announced:
		return nil, errBoth
	case len(header) == 1:
		alg, digest, err := parse(header[0])
		if err != nil {
			return nil, err
		}
		return &Expectation{alg: alg, want: digest}, nil
	case announced:
		return &Expectation{trailer: func() string { return r.Trailer.Get("Upload-Checksum") }}, nil
	}
	return nil, nil
}

// Expect returns the Expectation that a body has digest under algorithm
// alg (one of Algorithms, or sha512): for digests stated otherwise than in
// Upload-Checksum (the IETF draft's Content-Digest).
func Expect(alg string, digest []byte) (*Expectation, error) {
	h, known := newHash(alg)
	if !known {
		return nil, errUnknownAlgorithm
	}
	if len(digest) != h.Size() {
		return nil, errBadHeader
	}
	return &Expectation{alg: alg, want: bytes.Clone(digest)}, nil
}

type key struct{}

// With returns ctx carrying e.
func With(ctx context.Context, e *Expectation) context.Context {
	return context.WithValue(ctx, key{}, e)
}

// From returns the Expectation in ctx, or nil.
func From(ctx context.Context) *Expectation {
	e, _ := ctx.Value(key{}).(*Expectation)
	return e
}

// Verifier is a request body on its way to the store: it hashes every byte
// read through it.
type Verifier struct {
	e      *Expectation
	r      io.Reader
	h      hash.Hash
	length int64 // the body's declared length; -1: until its end
	n      int64
	ended  bool // the body reported its end
	alg    string
}

// Wrap returns a Verifier of body, whose length is length (its
// Content-Length; -1 when not declared).
func (e *Expectation) Wrap(body io.Reader, length int64) *Verifier {
	v := &Verifier{e: e, r: body, length: length, alg: e.alg}
	if e.alg != "" {
		v.h, _ = newHash(e.alg)
	} else {
		v.h = newAll()
	}
	return v
}

func (v *Verifier) Read(p []byte) (int, error) {
	n, err := v.r.Read(p)
	v.h.Write(p[:n])
	v.n += int64(n)
	if err != nil {
		v.ended = true
	}
	return n, err
}

// Verify reports nil when the whole body was read and its digest matches,
// ErrMismatch when it does not, and ErrUnverified when the body ended
// short of its length or without a trailer stating its digest. It can be
// called once the last byte was read.
func (v *Verifier) Verify() error {
	want := v.e.want
	if v.e.trailer != nil {
		// A trailer comes after the body's end, which a store that read
		// just as many bytes as it needed may not have seen yet.
		if !v.ended {
			var one [1]byte
			if n, err := v.Read(one[:]); n > 0 || err == nil {
				return ErrUnverified // more bytes than the upload takes
			}
		}
		t := v.e.trailer()
		if t == "" {
			return ErrUnverified
		}
		alg, digest, err := parse(t)
		if err != nil {
			return err
		}
		v.h, v.alg, want = v.h.(*all).hashes[alg], alg, digest
	}
	if v.length >= 0 && v.n != v.length {
		return ErrUnverified
	}
	if !bytes.Equal(v.h.Sum(nil), want) {
		return ErrMismatch
	}
	return nil
}

// all hashes a body with every algorithm: a trailer names its algorithm
// only after the body, which may be far too large to keep. It costs the
// sum of the algorithms (docs/benchmarks.md), for trailers only.
type all struct {
	hash.Hash
	hashes map[string]hash.Hash
}

func newAll() *all {
	a := &all{hashes: map[string]hash.Hash{}}
	var ws []io.Writer
	for _, alg := range Algorithms {
		h, _ := newHash(alg)
		a.hashes[alg] = h
		ws = append(ws, h)
	}
	a.Hash = multiHash{io.MultiWriter(ws...)}
	return a
}

// multiHash is the writing half of all; its sum is never asked for.
type multiHash struct{ io.Writer }

func (multiHash) Sum(b []byte) []byte { return b }
func (multiHash) Reset()              {}
func (multiHash) Size() int           { return 0 }
func (multiHash) BlockSize() int      { return 1 }
