package s3stream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// state is an upload as stored in S3: its multipart upload's parts, and
// the .part tail that holds the bytes after them while they are too few
// for a part.
//
// A tail records where in the upload it starts (tailStartKey). It is kept
// until the part that holds its bytes is stored, and counts only while it
// starts where the parts end: once a part holds its bytes, a tail not yet
// deleted is stale and counts for nothing. So every acknowledged byte is
// always either in a part or in a counting tail, whatever request fails
// and wherever the process dies; and none is counted twice.
type state struct {
	info      handler.FileInfo
	parts     []types.CompletedPart
	partsSize int64
	first     int64 // size of part 1, if stored
	// stale are parts stored past a gap in the part numbers (a part upload
	// that failed or was cut off while a later one got through): they do
	// not count, and a write blanks them before it adds parts, so that they
	// can never look contiguous later.
	stale []int32
	tail  int64 // bytes of the tail that count
	// legacyTail: the counting tail has no tusgate-tail-start (written
	// before it existed); it must get one before a part holds its bytes,
	// or it would count again should its deletion fail (see stampTail).
	legacyTail bool
	staleTail  bool // a .part object exists whose bytes are in parts
	// pending: the .info marks parts as provisional (pendingKey): a write
	// whose body's digest was being checked stored them, and may have
	// died before it knew. They are stale until repaired.
	pending   bool
	completed bool // the multipart upload was completed (or aborted)
	// hashing: the upload keeps a running SHA-256 (see sha.go); sha is its
	// state at the end of the parts, nil if lost.
	hashing bool
	sha     *objsha.Snapshot
}

// offset is how many bytes of the upload are stored.
func (st *state) offset() int64 {
	if st.completed {
		return st.info.Size
	}
	return st.partsSize + st.tail
}

// clone returns a copy whose parts can be appended to independently.
func (st state) clone() state {
	st.parts = append([]types.CompletedPart(nil), st.parts...)
	return st
}

// tailStartKey is the S3 user metadata of a .part tail that holds the
// upload offset of its first byte.
const tailStartKey = "tusgate-tail-start"

// tailStart reads tailStartKey from an object's user metadata; ok is false
// for tails written before it existed, which always started where the parts
// ended (the write that stored them had deleted the tail before).
func tailStart(meta map[string]string) (start int64, ok bool, err error) {
	for k, v := range meta {
		if strings.EqualFold(k, tailStartKey) {
			start, err = strconv.ParseInt(v, 10, 64)
			if err != nil || start < 0 {
				return 0, false, fmt.Errorf("the tail's %s is %q", tailStartKey, v)
			}
			return start, true, nil
		}
	}
	return 0, false, nil
}

// fetchState reads the upload id from S3: its .info, its parts (through
// Objects, with s3backend's repairs) and its tail, side by side.
func (s *Store) fetchState(ctx context.Context, id string) (state, error) {
	objectID, multipartID := layout.SplitID(id)
	key := s.key(objectID)
	var (
		listed                     []types.Part
		st                         state
		wg                         sync.WaitGroup
		infoErr, partsErr, tailErr error
		tailSize                   int64
		tailMeta                   map[string]string
		tailFound                  bool
	)
	wg.Add(3)
	go func() {
		defer wg.Done()
		out, err := s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key + ".info")})
		if err != nil {
			infoErr = err
			return
		}
		defer out.Body.Close()
		st.info, infoErr = layout.DecodeInfo(out.Body)
	}()
	go func() {
		defer wg.Done()
		listing, err := s.listParts(ctx, key, multipartID)
		if err != nil {
			partsErr = err
			return
		}
		listed, st.stale = contiguousParts(listing.Parts)
	}()
	go func() {
		defer wg.Done()
		out, err := s.Objects.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key + ".part")})
		switch {
		case isNotFound(err):
		case err != nil:
			tailErr = fmt.Errorf("s3stream: looking for the tail of %s: %w", objectID, err)
		default:
			tailFound, tailSize, tailMeta = true, aws.ToInt64(out.ContentLength), out.Metadata
		}
	}()
	wg.Wait()

	if infoErr != nil {
		if isNotFound(infoErr) {
			return st, handler.ErrNotFound
		}
		return st, fmt.Errorf("s3stream: reading the info of %s: %w", objectID, infoErr)
	}
	if partsErr != nil {
		if isNoSuchUpload(partsErr) && st.info.SizeIsDeferred {
			// An upload whose length was never declared cannot have been
			// completed: its multipart upload was aborted (a lifecycle
			// rule), and its bytes are gone.
			return st, handler.ErrNotFound
		}
		if isNoSuchUpload(partsErr) {
			// The .info exists, the multipart upload does not: it was
			// completed (safestore tells completed from aborted).
			st.parts, st.partsSize, st.first = nil, 0, 0
			st.completed = true
			st.info.Offset = st.info.Size
			return st, nil
		}
		return st, fmt.Errorf("s3stream: listing the parts of %s: %w", objectID, partsErr)
	}
	if tailErr != nil {
		return st, tailErr
	}
	if n, ok, err := pendingCount(st.info); err != nil {
		return st, storeerr.Permanent(fmt.Errorf("s3stream: the info of %s: %w", objectID, err))
	} else if ok {
		// The parts after the first n are provisional: stale until a
		// write under the lock blanks them (or settle commits them). A
		// cache of the listing must not take them for good ones.
		st.pending = true
		if t, ok := s.Objects.(listTrimmer); ok {
			t.TrimListed(key, multipartID, n)
		}
		for _, p := range listed[min(n, len(listed)):] {
			st.stale = append(st.stale, aws.ToInt32(p.PartNumber))
		}
		listed = listed[:min(n, len(listed))]
	}
	for _, p := range listed {
		st.parts = append(st.parts, types.CompletedPart{ETag: p.ETag, PartNumber: p.PartNumber})
		st.partsSize += aws.ToInt64(p.Size)
	}
	if len(listed) > 0 {
		st.first = aws.ToInt64(listed[0].Size)
	}
	if tailFound {
		start, ok, err := tailStart(tailMeta)
		if err != nil {
			return st, storeerr.Permanent(fmt.Errorf("s3stream: the tail of %s: %w", objectID, err))
		}
		if !ok {
			start = st.partsSize
		}
		switch {
		case start == st.partsSize:
			st.tail, st.legacyTail = tailSize, !ok
		case start < st.partsSize:
			st.staleTail = true // its bytes are in the parts
		default:
			return st, storeerr.Permanent(fmt.Errorf("s3stream: the tail of %s starts at %d, after the %d bytes in parts", objectID, start, st.partsSize))
		}
	}
	s.resumeSHA(&st)
	st.info.Offset = st.offset()
	return st, nil
}

// listTrimmer is an Objects client that caches listings (s3backend's
// GuardedClient).
type listTrimmer interface {
	TrimListed(key, uploadID string, n int)
}

// contiguousParts splits parts into the run 1, 2, … k of non-empty parts
// and the numbers of the non-empty parts after the first gap.
func contiguousParts(parts []types.Part) (keep []types.Part, stale []int32) {
	parts = slices.Clone(parts)
	slices.SortFunc(parts, func(a, b types.Part) int { return int(aws.ToInt32(a.PartNumber)) - int(aws.ToInt32(b.PartNumber)) })
	next, gap := int32(1), false
	for _, p := range parts {
		n, size := aws.ToInt32(p.PartNumber), aws.ToInt64(p.Size)
		switch {
		case size == 0:
			gap = gap || n == next
		case !gap && n == next:
			keep = append(keep, p)
			next++
		default:
			gap = true
			stale = append(stale, n)
		}
	}
	return keep, stale
}

// blankStale overwrites the stale parts with empty ones, which never count
// (the repair of what a part upload that failed past a gap left). It runs
// in writes only, under the upload's lock.
func (s *Store) blankStale(ctx context.Context, st *state, key, multipartID string) error {
	if len(st.stale) == 0 {
		return nil
	}
	for _, n := range st.stale {
		_, err := s.Parts.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
			PartNumber: aws.Int32(n), Body: bytes.NewReader(nil), ContentLength: aws.Int64(0),
		})
		if err != nil {
			return fmt.Errorf("s3stream: blanking stale part %d of %s: %w", n, key, err)
		}
	}
	s.Log.WarnContext(ctx, "discarded S3 parts stored past a gap (an interrupted part upload); the client resends those bytes",
		"key", key, "kept_parts", len(st.parts), "discarded_parts", st.stale)
	st.stale = nil
	return nil
}

// isNotFound reports whether err is S3's answer for a missing object.
func isNotFound(err error) bool {
	var nsk *types.NoSuchKey
	var nf *types.NotFound
	return errors.As(err, &nsk) || errors.As(err, &nf) || hasCode(err, "NoSuchKey", "NotFound")
}

// isNoSuchUpload reports whether err is S3's answer for a multipart upload
// that was completed or aborted. (Some S3-compatible servers answer
// NoSuchKey, as s3store notes.)
func isNoSuchUpload(err error) bool {
	var nsu *types.NoSuchUpload
	return errors.As(err, &nsu) || hasCode(err, "NoSuchUpload") || isNotFound(err)
}

func hasCode(err error, codes ...string) bool {
	var ae smithy.APIError
	if !errors.As(err, &ae) {
		return false
	}
	for _, c := range codes {
		if ae.ErrorCode() == c {
			return true
		}
	}
	return false
}
