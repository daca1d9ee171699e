package s3backend

import (
	"context"
	"log/slog"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/lockscope"
	"github.com/tusgate/tusgate/internal/metadata"
)

// GuardedClient is the S3 client tusd's s3store and internal/s3stream talk
// to. It passes every call through, except:
//
//   - CreateMultipartUpload (and the PutObject of a concatenated final
//     upload): the object gets the upload's validated metadata as S3 user
//     metadata (non-ASCII values as RFC 2047 words, cut to 2 KiB; the full
//     metadata stays in the .info object), a Content-Disposition carrying
//     the sanitised file name, and the configured storage class and
//     server-side encryption. s3store itself passes a lossy copy of the
//     metadata ("?" for every non-ASCII character) and nothing else;
//     internal/safestore hands the original over in the context. Both ask
//     for a full-object CRC32 of the finished object (see fullObject).
//   - PutObject of .info and .part objects: the configured server-side
//     encryption (they hold metadata and data too).
//   - ListParts: listings of uploads seen before continue after the parts
//     already known (see ListParts). It only reads: repairs of what it
//     finds are internal/s3stream's, under the upload's lock.
type GuardedClient struct {
	*s3.Client
	log      *slog.Logger
	settings objectSettings
	sums     *fullObject

	// listed caches uploads' contiguous parts (see ListParts).
	listed *listCache
}

// objectSettings apply to the objects tusgate writes.
type objectSettings struct {
	StorageClass string // finished objects only
	SSE          string // "", AES256, aws:kms
	SSEKMSKeyID  string
	// Prefix is the key prefix of uploads ("" or ending in "/"): an
	// object key minus it, "+" and the multipart upload ID make the
	// upload's ID (see ListParts).
	Prefix string
}

func newGuardedClient(client *s3.Client, log *slog.Logger, settings objectSettings) *GuardedClient {
	return &GuardedClient{Client: client, log: log, settings: settings, sums: newFullObject(client, log), listed: newListCache(listCacheSize)}
}

func (c *GuardedClient) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	key := aws.ToString(in.Key)
	if !strings.HasSuffix(key, ".info") && !strings.HasSuffix(key, ".part") && !layout.IsInternal(key) {
		c.finalObject(ctx, in)
	}
	if c.settings.SSE != "" {
		in.ServerSideEncryption = types.ServerSideEncryption(c.settings.SSE)
		if c.settings.SSEKMSKeyID != "" {
			in.SSEKMSKeyId = aws.String(c.settings.SSEKMSKeyID)
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
	return c.createMultipartUpload(ctx, in, opts...)
}

// finalObject sets on a PutObject of a finished upload (s3store's
// concatenation of small partials) what CreateMultipartUpload sets. Its
// CRC32, which S3 checks and keeps as the object's full-object checksum,
// the SDK computes from the body (s3store sends a file); it is off only
// where request checksums are.
func (c *GuardedClient) finalObject(ctx context.Context, in *s3.PutObjectInput) {
	if c.Client.Options().RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired {
		in.ChecksumAlgorithm = types.ChecksumAlgorithmCrc32
	}
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

// ListParts lists all the parts of an upload, every page, in one answer.
//
// The run of parts 1…k without a gap listed before is still there: parts
// are only ever added after it (writers number new parts from such a
// listing, and repairs blank only parts past a gap or provisional ones,
// which the run never holds: see TrimListed), by any instance, and a
// completed or aborted upload answers NoSuchUpload whatever the marker. So
// the listing continues after part k, which keeps a HEAD on an upload of
// thousands of parts to one short request on S3s that seek to the marker.
// Only a request that holds the upload's lock (internal/lockscope) uses
// and teaches the cache: a listing without it may race with a write that
// blanks the parts it lists.
func (c *GuardedClient) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	if in.MaxParts != nil && *in.MaxParts == 0 {
		// An existence probe (GetReader), not a listing.
		return c.Client.ListParts(ctx, in, opts...)
	}
	cacheKey := aws.ToString(in.Key) + "\x00" + aws.ToString(in.UploadId)
	locked := lockscope.Holds(ctx, strings.TrimPrefix(aws.ToString(in.Key), c.settings.Prefix)+"+"+aws.ToString(in.UploadId))
	var known []types.Part
	if locked {
		known = c.listed.get(cacheKey)
	}
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
	if in.PartNumberMarker == nil && locked {
		c.listed.put(cacheKey, contiguousRun(all))
	}
	out := *first
	out.Parts = all
	out.IsTruncated = aws.Bool(false)
	out.NextPartNumberMarker = nil
	return &out, nil
}

// TrimListed keeps at most the first n parts of the cached run of the
// upload at key: the parts after them are provisional (a write whose body
// states a checksum, internal/s3stream), and may be blanked and written
// again.
func (c *GuardedClient) TrimListed(key, uploadID string, n int) {
	c.listed.trim(key+"\x00"+uploadID, n)
}

// contiguousRun returns the parts 1, 2, … k of parts (sorted by number)
// that follow each other without a gap or an empty part.
func contiguousRun(parts []types.Part) []types.Part {
	for i, p := range parts {
		if aws.ToInt32(p.PartNumber) != int32(i+1) || aws.ToInt64(p.Size) == 0 {
			return parts[:i]
		}
	}
	return parts
}
