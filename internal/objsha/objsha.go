// Package objsha keeps the SHA-256 of a whole upload, computed as its bytes
// arrive (--object-sha256, and every upload whose IETF-draft creation stated
// a Repr-Digest), so that a finished upload's SHA-256 is known without
// reading the object back.
//
// Go's SHA-256 can save its state (encoding.BinaryMarshaler): a Snapshot is
// that state after the first Offset bytes of the upload. The stores keep
// one in the upload's .info (StateKey), taken at a point whose bytes can no
// longer change: on S3 the end of the last stored part, where the .part
// tail starts (the tail's bytes are readable and are hashed again when the
// next write reads them); on disk the end of the data file. A write resumes
// the hash from it, on any instance, and stores the new one when it ends.
// When the snapshot does not fit what the store holds (a process killed
// between storing parts and storing the snapshot, a concatenation, an
// upload begun before --object-sha256), the state is lost: S3 computes the
// SHA-256 from the finished object, the disk store from the file. A
// snapshot is only ever used where it fits exactly, so the SHA-256 a store
// reports is the SHA-256 of the stored bytes or nothing, never a stale one.
//
// Once known, the SHA-256 goes into the .info (SumKey), from where the
// HTTP layer (Upload-Object-SHA256, Repr-Digest) and the webhooks
// (upload.storage.sha256) read it.
package objsha

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding"
	"encoding/base64"
	"encoding/binary"
	"fmt"
	"hash"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Keys in an upload's FileInfo.
const (
	// StateKey (Storage) is the running state: a Snapshot, encoded.
	StateKey = "TusgateSHA256State"
	// SumKey (Storage) is the SHA-256 of the whole upload, in standard
	// base64, once all its bytes are stored.
	SumKey = "TusgateSHA256"
	// PendingKey (Storage) marks an upload whose SHA-256 is being computed
	// from its finished object (its state was lost), since the time it
	// holds (RFC 3339).
	PendingKey = "TusgateSHA256Pending"
	// ReprKey (MetaData) is the SHA-256 the client stated for the whole
	// upload at its creation (the IETF draft's Repr-Digest), in standard
	// base64. A reserved key: clients cannot set it in Upload-Metadata.
	ReprKey = "tusgate-repr-sha256"
)

// Size is the length of a SHA-256.
const Size = sha256.Size

// Snapshot is the state of the SHA-256 of an upload's first Offset bytes.
type Snapshot struct {
	Offset int64
	// Parts and ETag tie a snapshot on S3 to the parts that hold its bytes:
	// their number and the last one's ETag (without quotes). The disk store
	// leaves them empty.
	Parts int
	ETag  string
	// State is what crypto/sha256's digest marshals to.
	State []byte
}

// stateLen is the length of a marshalled SHA-256 state: "sha\x03", eight
// 32-bit words, a 64-byte block, the length as a 64-bit integer.
const stateLen = 4 + 8*4 + 64 + 8

// Fresh is the snapshot of no bytes.
func Fresh() Snapshot {
	s, _ := sha256.New().(encoding.BinaryMarshaler).MarshalBinary()
	return Snapshot{State: s}
}

// check reports whether s is a state of Offset bytes.
func (s Snapshot) check() error {
	if len(s.State) != stateLen || s.Offset < 0 || binary.BigEndian.Uint64(s.State[stateLen-8:]) != uint64(s.Offset) {
		return fmt.Errorf("not a SHA-256 state of %d bytes", s.Offset)
	}
	return nil
}

// Encode writes s as "1 <offset> <parts> <etag or -> <base64 state>".
func (s Snapshot) Encode() string {
	etag := s.ETag
	if etag == "" {
		etag = "-"
	}
	return fmt.Sprintf("1 %d %d %s %s", s.Offset, s.Parts, etag, base64.StdEncoding.EncodeToString(s.State))
}

// Decode reads what Encode wrote.
func Decode(v string) (Snapshot, error) {
	f := strings.Fields(v)
	if len(f) != 5 || f[0] != "1" {
		return Snapshot{}, fmt.Errorf("%s is %q", StateKey, v)
	}
	var s Snapshot
	var err error
	if s.Offset, err = strconv.ParseInt(f[1], 10, 64); err != nil {
		return Snapshot{}, fmt.Errorf("%s: offset %q", StateKey, f[1])
	}
	if s.Parts, err = strconv.Atoi(f[2]); err != nil || s.Parts < 0 {
		return Snapshot{}, fmt.Errorf("%s: parts %q", StateKey, f[2])
	}
	if f[3] != "-" {
		s.ETag = f[3]
	}
	if s.State, err = base64.StdEncoding.DecodeString(f[4]); err != nil {
		return Snapshot{}, fmt.Errorf("%s: state: %w", StateKey, err)
	}
	if err := s.check(); err != nil {
		return Snapshot{}, fmt.Errorf("%s: %w", StateKey, err)
	}
	return s, nil
}

// TrimETag is an ETag without its quotes, as snapshots keep it.
func TrimETag(etag string) string { return strings.Trim(etag, `"`) }

// State reads the snapshot in info; ok is false without one. A malformed
// one is an error (callers treat it as lost).
func State(info handler.FileInfo) (s Snapshot, ok bool, err error) {
	v, ok := info.Storage[StateKey]
	if !ok {
		return Snapshot{}, false, nil
	}
	s, err = Decode(v)
	return s, err == nil, err
}

// withStorage returns info with a copy of its Storage map changed by set.
func withStorage(info handler.FileInfo, set func(m map[string]string)) handler.FileInfo {
	m := maps.Clone(info.Storage)
	if m == nil {
		m = map[string]string{}
	}
	set(m)
	info.Storage = m
	return info
}

// WithState returns info carrying s (nil: none).
func WithState(info handler.FileInfo, s *Snapshot) handler.FileInfo {
	return withStorage(info, func(m map[string]string) {
		if s == nil {
			delete(m, StateKey)
		} else {
			m[StateKey] = s.Encode()
		}
	})
}

// Encode writes a SHA-256 as it is reported: standard base64.
func Encode(sum []byte) string { return base64.StdEncoding.EncodeToString(sum) }

// parseSum reads a SHA-256 in standard base64.
func parseSum(v string) ([]byte, error) {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) != Size {
		return nil, fmt.Errorf("%q is not a SHA-256 in base64", v)
	}
	return b, nil
}

// Sum is the SHA-256 of the whole upload recorded in info, if any.
func Sum(info handler.FileInfo) ([]byte, bool) {
	b, err := parseSum(info.Storage[SumKey])
	return b, err == nil
}

// WithSum returns info carrying sum as the upload's SHA-256, without a
// running state or a pending mark.
func WithSum(info handler.FileInfo, sum []byte) handler.FileInfo {
	return withStorage(info, func(m map[string]string) {
		delete(m, StateKey)
		delete(m, PendingKey)
		m[SumKey] = Encode(sum)
	})
}

// Pending reports since when the upload's SHA-256 is being computed from
// its finished object, if it is.
func Pending(info handler.FileInfo) (time.Time, bool) {
	v, ok := info.Storage[PendingKey]
	if !ok {
		return time.Time{}, false
	}
	t, err := time.Parse(time.RFC3339, v)
	return t, err == nil
}

// WithPending returns info marked as computing its SHA-256 since t.
func WithPending(info handler.FileInfo, t time.Time) handler.FileInfo {
	return withStorage(info, func(m map[string]string) {
		delete(m, StateKey)
		m[PendingKey] = t.UTC().Format(time.RFC3339)
	})
}

// Expected is the SHA-256 the client stated at the upload's creation
// (Repr-Digest), if any; a malformed value is an error.
func Expected(info handler.FileInfo) (sum []byte, ok bool, err error) {
	v, ok := info.MetaData[ReprKey]
	if !ok {
		return nil, false, nil
	}
	sum, err = parseSum(v)
	if err != nil {
		return nil, false, fmt.Errorf("%s: %w", ReprKey, err)
	}
	return sum, true, nil
}

// Wanted reports whether an upload keeps a running SHA-256: with
// --object-sha256 (all) every upload does, otherwise those that stated a
// Repr-Digest.
func Wanted(all bool, info handler.FileInfo) bool {
	_, stated := info.MetaData[ReprKey]
	return all || stated
}

// Errors answered when the upload's bytes do not have the SHA-256 stated
// at its creation.
var (
	// ErrReprMismatch: the upload is complete, not finished, and can be
	// deleted.
	ErrReprMismatch = handler.NewError("ERR_REPR_DIGEST_MISMATCH",
		"the upload's SHA-256 does not match the Repr-Digest stated when it was created; it was not finished: delete it and upload the file again", 400)
	// ErrReprUnverified: the SHA-256 could be known only once the object
	// was assembled, and then not computed; the upload was deleted rather
	// than kept unverified.
	ErrReprUnverified = handler.NewError("ERR_REPR_DIGEST_UNVERIFIED",
		"the upload's SHA-256 could not be checked against its Repr-Digest, so it was deleted: upload the file again", 500)
)

// Digester is an upload of a store that keeps the SHA-256 of its bytes
// (internal/s3stream, internal/diskbackend).
type Digester interface {
	// SHA256 is the SHA-256 of all the upload's bytes, once they are all
	// stored. ok is false when the store can only know it once the upload
	// is assembled (S3, after the running state was lost), or keeps none.
	// Of an assembled upload whose SHA-256 was being computed from its
	// object when the process died (Pending), it computes it again.
	SHA256(ctx context.Context) (sum []byte, ok bool, err error)
}

// Hash is a running SHA-256 of an upload's bytes from some offset on. It
// keeps its state at the offsets marked before their bytes arrive (the
// ends of parts), so that the state at the end of what was stored is known
// even when more was read. It is safe for concurrent use.
type Hash struct {
	mu     sync.Mutex
	h      hash.Hash
	off    int64
	marks  []int64 // ascending, all past off
	states map[int64][]byte
}

// Resume returns a Hash going on from s.
func Resume(s Snapshot) (*Hash, error) {
	if err := s.check(); err != nil {
		return nil, err
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(s.State); err != nil {
		return nil, err
	}
	return &Hash{h: h, off: s.Offset, states: map[int64][]byte{s.Offset: slices.Clone(s.State)}}, nil
}

// Offset is how many bytes of the upload were hashed.
func (h *Hash) Offset() int64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.off
}

// Mark keeps the state at upload offset off, which must not be passed yet.
func (h *Hash) Mark(off int64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	switch i, found := slices.BinarySearch(h.marks, off); {
	case off < h.off || found:
	case off == h.off:
		h.states[off] = h.marshal()
	default:
		h.marks = slices.Insert(h.marks, i, off)
	}
}

// Write hashes the next bytes of the upload.
func (h *Hash) Write(p []byte) (int, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := len(p)
	for len(p) > 0 {
		k := len(p)
		if len(h.marks) > 0 {
			k = int(min(int64(k), h.marks[0]-h.off))
		}
		h.h.Write(p[:k])
		h.off += int64(k)
		p = p[k:]
		if len(h.marks) > 0 && h.marks[0] == h.off {
			h.states[h.off] = h.marshal()
			h.marks = h.marks[1:]
		}
	}
	return n, nil
}

func (h *Hash) marshal() []byte {
	s, _ := h.h.(encoding.BinaryMarshaler).MarshalBinary()
	return s
}

// At is the snapshot at upload offset off: one marked (or resumed from),
// or the current state; false if the Hash passed off without a mark.
func (h *Hash) At(off int64) (Snapshot, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	s, ok := h.states[off]
	if !ok && off == h.off {
		s, ok = h.marshal(), true
	}
	return Snapshot{Offset: off, State: s}, ok
}

// Sum is the SHA-256 of the bytes hashed so far.
func (h *Hash) Sum() []byte {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.h.Sum(nil)
}

// Reader returns r, hashing what is read from it.
func (h *Hash) Reader(r io.Reader) io.Reader { return &reader{r: r, h: h} }

type reader struct {
	r io.Reader
	h *Hash
}

func (r *reader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	if n > 0 {
		r.h.Write(p[:n])
	}
	return n, err
}

// Of is the SHA-256 of what r holds from upload offset from on, continued
// from s (which must be at from); it reads r to its end.
func Of(s Snapshot, r io.Reader) ([]byte, int64, error) {
	h, err := Resume(s)
	if err != nil {
		return nil, 0, err
	}
	n, err := io.Copy(h, r)
	if err != nil {
		return nil, n, err
	}
	return h.Sum(), n, nil
}

// Equal reports whether a and b are the same SHA-256.
func Equal(a, b []byte) bool { return len(a) == Size && bytes.Equal(a, b) }
