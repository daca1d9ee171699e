package s3backend

import (
	"context"
	"fmt"
	"net/http"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tus/tusd/v2/pkg/handler"
	"golang.org/x/sync/errgroup"

	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/webhook"
)

var _ backend.Backend = (*Backend)(nil)

// Name implements backend.Backend.
func (b *Backend) Name() string { return "s3" }

// UseIn implements backend.Backend: tusgate's S3 store (internal/s3stream).
func (b *Backend) UseIn(c *handler.StoreComposer) { b.Writer.UseIn(c) }

// Close implements backend.Backend: it releases the temp dir.
func (b *Backend) Close() error { return b.TempDir.Close() }

// Prefix is the key prefix of every object, "" or ending in "/".
func (b *Backend) Prefix() string {
	if b.Store.ObjectPrefix == "" {
		return ""
	}
	return b.Store.ObjectPrefix + "/"
}

// Storage implements backend.Backend: bucket and key, the upload's SHA-256
// if recorded, and with object the finished object's ETag and the checksum
// S3 keeps with it (see objectChecksum).
func (b *Backend) Storage(ctx context.Context, info handler.FileInfo, object bool) (webhook.Storage, error) {
	st := webhook.Storage{Type: "s3", Bucket: b.Bucket, Key: info.Storage["Key"]}
	if sum, ok := objsha.Sum(info); ok {
		st.SHA256 = objsha.Encode(sum)
	}
	if !object || st.Key == "" {
		return st, nil
	}
	out, err := b.headObject(ctx, st.Key)
	if err != nil {
		return st, err
	}
	st.ETag = aws.ToString(out.ETag)
	st.Checksum = objectChecksum(out)
	return st, nil
}

// Outbox implements backend.Backend: records under the internal folder.
func (b *Backend) Outbox() webhook.Outbox {
	return &webhook.S3Outbox{Client: b.Objects, Bucket: b.Bucket, Prefix: b.Prefix() + layout.InternalFolder + "/webhooks/"}
}

// Expiry implements backend.Backend: the bucket's multipart uploads and
// .info objects, and tombstones under the internal folder.
func (b *Backend) Expiry() (expiry.Inventory, expiry.Tombstones) {
	st := &expiry.S3{Client: janitorClient{Client: b.Client, objects: b.Objects, b: b}, Bucket: b.Bucket, Prefix: b.Store.ObjectPrefix}
	return st, st
}

// janitorClient is the janitor's S3 client: plain reads and deletes, and
// writes (tombstones) through the guarded client, which adds the
// configured encryption.
type janitorClient struct {
	*s3.Client
	objects *GuardedClient
	b       *Backend
}

func (c janitorClient) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	return c.b.ListMultipartUploads(ctx, in, opts...)
}

func (c janitorClient) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	return c.objects.PutObject(ctx, in, opts...)
}

// Assembly implements backend.Backend.
func (b *Backend) Assembly() safestore.AssemblyChecker { return assembly{b} }

// assembly answers what became of uploads in S3.
type assembly struct{ b *Backend }

var _ safestore.AssemblyRecorder = assembly{}

// Assembly reports what became of an upload whose bytes are all stored:
// assembled (the final object exists), not assembled (its multipart upload
// still exists; a CompleteMultipartUpload failed), or gone (neither: a
// lifecycle rule or the S3 server aborted the multipart upload). s3store
// reports all three as complete, so safestore asks here.
func (a assembly) Assembly(ctx context.Context, info handler.FileInfo) (safestore.Assembly, error) {
	b := a.b
	key := info.Storage["Key"]
	_, multipartID := layout.SplitID(info.ID)
	if key == "" || multipartID == "" {
		return safestore.Assembled, nil
	}
	_, err := b.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key)})
	if err == nil {
		return safestore.Assembled, nil
	}
	if storeerr.HTTPStatus(err) != http.StatusNotFound {
		return 0, err
	}
	_, err = b.Client.ListParts(ctx, &s3.ListPartsInput{
		Bucket: aws.String(b.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID), MaxParts: aws.Int32(1),
	})
	switch {
	case err == nil:
		return safestore.NotAssembled, nil
	case storeerr.HTTPStatus(err) == http.StatusNotFound:
		return safestore.Gone, nil
	default:
		return 0, err
	}
}

// MarkAssembled finishes what s3store leaves running after it concatenates
// small partials with a PutObject: it aborts the final upload's multipart
// upload in the background, with the request's context, and until that
// abort lands (never, if it fails) the finished upload reads as empty.
// Aborting it before the request is answered closes both gaps. It
// implements safestore.AssemblyRecorder.
func (a assembly) MarkAssembled(ctx context.Context, info handler.FileInfo) error {
	b := a.b
	key := info.Storage["Key"]
	_, multipartID := layout.SplitID(info.ID)
	if !info.IsFinal || key == "" || multipartID == "" {
		return nil
	}
	_, err := b.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(b.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
	})
	if err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
		return fmt.Errorf("aborting the multipart upload of concatenated %s: %w", key, err)
	}
	return nil
}

// Forget implements safestore.AssemblyRecorder; S3 keeps no records.
func (assembly) Forget(context.Context, handler.FileInfo) error { return nil }

// Usage implements backend.Backend.
func (b *Backend) Usage() quota.Counter { return usage{b} }

type usage struct{ b *Backend }

// Usage counts an owner's unfinished uploads: the in-progress multipart
// uploads under <prefix>/<owner>/, with the sizes declared in their .info
// objects. It implements quota.Counter.
func (c usage) Usage(ctx context.Context, ownerFolder string) (quota.Usage, error) {
	b := c.b
	var u quota.Usage
	prefix := b.Prefix() + ownerFolder + "/"
	var keys []string
	p := s3.NewListMultipartUploadsPaginator(b, &s3.ListMultipartUploadsInput{Bucket: aws.String(b.Bucket), Prefix: aws.String(prefix)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return u, err
		}
		for _, up := range page.Uploads {
			keys = append(keys, aws.ToString(up.Key))
		}
	}
	// The .info objects are read side by side: the owner's creations wait
	// for this count (quota.Gate), and one after another an owner with
	// many unfinished uploads would hold them up for seconds.
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(usageReads)
	for _, key := range keys {
		g.Go(func() error {
			out, err := b.Client.GetObject(gctx, &s3.GetObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key + ".info")})
			if err != nil {
				if storeerr.HTTPStatus(err) == http.StatusNotFound {
					return nil // being created or terminated right now
				}
				return err
			}
			info, err := layout.DecodeInfo(out.Body)
			out.Body.Close()
			if err != nil {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			u.Uploads++
			if !info.SizeIsDeferred && !info.IsFinal {
				u.Bytes += info.Size
			}
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return quota.Usage{}, err
	}
	return u, nil
}

// usageReads is how many .info objects Usage reads at once.
const usageReads = 16
