package s3backend

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusgate/tusgate/internal/metadata"
)

// GuardedClient is the S3 client s3store talks to. It passes every call
// through, except for two repairs s3store needs:
//
//   - CreateMultipartUpload (and the PutObject of a concatenated final
//     upload): the object gets the upload's validated metadata as S3 user
//     metadata (non-ASCII values as RFC 2047 words, cut to 2 KiB; the full
//     metadata stays in the .info object), a Content-Disposition carrying
//     the sanitised file name, and the configured storage class and
//     server-side encryption. s3store itself passes a lossy copy of the
//     metadata ("?" for every non-ASCII character) and nothing else;
//     internal/safestore hands the original over in the context.
//   - PutObject of .info and .part objects: the configured server-side
//     encryption (they hold metadata and data too).
//   - ListParts: s3store uploads an upload's parts concurrently and derives
//     the offset from the sum of the listed parts and the next part number
//     from their count (tus/tusd#1315). A part upload that failed, or a
//     process killed mid-upload, leaves a gap (parts 1, 2, 4), which makes
//     s3store count bytes it does not have in order, number new parts over
//     existing ones and fail with InvalidPartOrder at completion. The list
//     returned is therefore the contiguous run of non-empty parts from 1, and
//     every non-empty part past a gap is overwritten with an empty one
//     first, so that it can never look contiguous later. Parts left out are
//     not named in CompleteMultipartUpload, so S3 drops them.
//   - PutObject of the incomplete part (<id>.part, the tail of a write that
//     is too small for a part): s3store uploads it concurrently with the
//     full parts before it. Had one of those failed, or the process died
//     while they were in flight, the tail would be taken for the bytes right
//     after the last stored part. So the tail waits until every part upload
//     of its upload has ended, and is refused if one failed since the
//     upload's parts were last listed (every write starts with a listing).
//
// All of it runs under tusd's per-upload lock, which s3store's callers hold.
type GuardedClient struct {
	*s3.Client
	log      *slog.Logger
	settings objectSettings

	mu   sync.Mutex
	cond *sync.Cond
	// parts tracks part uploads per object key.
	parts map[string]*partState
	// listed caches uploads' contiguous parts (see ListParts).
	listed *listCache
}

type partState struct {
	inflight int
	failed   bool
}

// objectSettings apply to the objects tusgate writes.
type objectSettings struct {
	StorageClass string // finished objects only
	SSE          string // "", AES256, aws:kms
	SSEKMSKeyID  string
}

func newGuardedClient(client *s3.Client, log *slog.Logger, settings objectSettings) *GuardedClient {
	c := &GuardedClient{Client: client, log: log, settings: settings, parts: map[string]*partState{}, listed: newListCache(listCacheSize)}
	c.cond = sync.NewCond(&c.mu)
	return c
}

func (c *GuardedClient) state(key string) *partState {
	st := c.parts[key]
	if st == nil {
		st = &partState{}
		c.parts[key] = st
	}
	return st
}

func (c *GuardedClient) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	key := aws.ToString(in.Key)
	c.mu.Lock()
	c.state(key).inflight++
	c.mu.Unlock()

	out, err := c.Client.UploadPart(ctx, in, opts...)

	c.mu.Lock()
	st := c.state(key)
	st.inflight--
	if err != nil {
		st.failed = true
	}
	if st.inflight == 0 && !st.failed {
		delete(c.parts, key)
	}
	c.cond.Broadcast()
	c.mu.Unlock()
	return out, err
}

func (c *GuardedClient) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	key := aws.ToString(in.Key)
	if !strings.HasSuffix(key, ".info") && !strings.HasSuffix(key, ".part") && !IsInternal(key) {
		c.finalObject(ctx, in)
	}
	if c.settings.SSE != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(c.settings.SSE)
		if c.settings.SSEKMSKeyID != "" {
			in.SSEKMSKeyId = aws.String(c.settings.SSEKMSKeyID)
		}
	}
	if objectKey, ok := strings.CutSuffix(key, ".part"); ok {
		c.mu.Lock()
		for c.parts[objectKey] != nil && c.parts[objectKey].inflight > 0 {
			c.cond.Wait()
		}
		failed := c.parts[objectKey] != nil && c.parts[objectKey].failed
		c.mu.Unlock()
		if failed {
			return nil, fmt.Errorf("not storing the incomplete part of %s: an earlier part of the same write failed", objectKey)
		}
	}
	return c.Client.PutObject(ctx, in, opts...)
}

func (c *GuardedClient) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	meta := metadata.FromContext(ctx)
	if meta == nil {
		meta = in.Metadata
	}
	in.Metadata = metadata.ForS3(meta)
	if cd := metadata.ContentDisposition(meta); cd != "" {
		in.ContentDisposition = aws.String(cd)
	}
	if c.settings.StorageClass != "" {
		in.StorageClass = types.StorageClass(c.settings.StorageClass)
	}
	if c.settings.SSE != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(c.settings.SSE)
		if c.settings.SSEKMSKeyID != "" {
			in.SSEKMSKeyId = aws.String(c.settings.SSEKMSKeyID)
		}
	}
	return c.Client.CreateMultipartUpload(ctx, in, opts...)
}

// finalObject sets on a PutObject of a finished upload (s3store's
// concatenation of small partials) what CreateMultipartUpload sets.
func (c *GuardedClient) finalObject(ctx context.Context, in *s3.PutObjectInput) {
	meta := metadata.FromContext(ctx)
	if meta == nil {
		return
	}
	in.Metadata = metadata.ForS3(meta)
	if ft := meta["filetype"]; ft != "" {
		in.ContentType = aws.String(ft)
	}
	if cd := metadata.ContentDisposition(meta); cd != "" {
		in.ContentDisposition = aws.String(cd)
	}
	if c.settings.StorageClass != "" {
		in.StorageClass = types.StorageClass(c.settings.StorageClass)
	}
}

func (c *GuardedClient) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	c.mu.Lock()
	if st := c.parts[aws.ToString(in.Key)]; st != nil && st.inflight == 0 {
		delete(c.parts, aws.ToString(in.Key))
	}
	c.mu.Unlock()
	if in.MaxParts != nil && *in.MaxParts == 0 {
		// An existence probe (GetReader), not a listing.
		return c.Client.ListParts(ctx, in, opts...)
	}
	// The run of parts 1…k listed before is still there: parts are only
	// ever added after it (writers number new parts from such a listing,
	// and blanking only hits parts past a gap), by any instance, and a
	// completed or aborted upload answers NoSuchUpload whatever the
	// marker. So the listing continues after part k, which keeps a HEAD on
	// an upload of thousands of parts to one short request on S3s that
	// seek to the marker.
	cacheKey := aws.ToString(in.Key) + "\x00" + aws.ToString(in.UploadId)
	known := c.listed.get(cacheKey)
	req := *in
	all := slices.Clone(known)
	if len(known) > 0 && in.PartNumberMarker == nil {
		req.PartNumberMarker = aws.String(strconv.Itoa(len(known)))
	} else {
		all = nil
	}
	var first *s3.ListPartsOutput
	for {
		out, err := c.Client.ListParts(ctx, &req, opts...)
		if err != nil {
			c.listed.drop(cacheKey)
			return nil, err
		}
		if first == nil {
			first = out
		}
		all = append(all, out.Parts...)
		if out.IsTruncated == nil || !*out.IsTruncated || out.NextPartNumberMarker == nil {
			break
		}
		req.PartNumberMarker = out.NextPartNumberMarker
	}

	keep, stale := contiguousParts(all)
	for _, n := range stale {
		_, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket:        in.Bucket,
			Key:           in.Key,
			UploadId:      in.UploadId,
			PartNumber:    aws.Int32(n),
			Body:          bytes.NewReader(nil),
			ContentLength: aws.Int64(0),
		}, opts...)
		if err != nil {
			return nil, fmt.Errorf("blanking stale part %d of %s: %w", n, aws.ToString(in.Key), err)
		}
	}
	if len(stale) > 0 {
		c.log.WarnContext(ctx, "discarded S3 parts stored past a gap (an interrupted part upload); the client resends those bytes",
			"key", aws.ToString(in.Key), "kept_parts", len(keep), "discarded_parts", stale)
	}
	if in.PartNumberMarker == nil {
		c.listed.put(cacheKey, keep)
	}
	out := *first
	out.Parts = keep
	out.IsTruncated = aws.Bool(false)
	out.NextPartNumberMarker = nil
	return &out, nil
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

// InternalFolder holds tusgate's own objects (webhook outbox, tombstones)
// next to the uploads; no upload ID can start with ".".
const InternalFolder = ".tusgate"

// IsInternal reports whether key lies in an InternalFolder.
func IsInternal(key string) bool {
	return strings.HasPrefix(key, InternalFolder+"/") || strings.Contains(key, "/"+InternalFolder+"/")
}
