package s3stream

import (
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"os"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// ConcatUploads assembles the final upload from finished partials. When
// every partial is at least a part's minimum size, each becomes one part,
// copied by S3 (UploadPartCopy), and the upload is completed like any other
// (see complete), with its full-object checksum: s3store would complete it
// without the parts' checksums, which S3 refuses for an upload created with
// a checksum algorithm. Smaller partials are joined in the temp dir and
// stored with one PutObject (joinInTempDir).
func (u *upload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	keys := make([]string, len(partials))
	sizes := make([]int64, len(partials))
	small := false
	for i, p := range partials {
		w, ok := p.(*upload)
		if !ok {
			return fmt.Errorf("s3stream: concatenating an upload of another store (%T)", p)
		}
		info, err := w.GetInfo(ctx)
		if err != nil {
			return err
		}
		small = small || info.Size < u.s.Inner.MinPartSize
		sizes[i] = info.Size
		objectID, _ := layout.SplitID(w.id)
		keys[i] = u.s.key(objectID)
	}
	shaInfo, err := u.beforeConcat(ctx)
	if err != nil {
		return err
	}
	u.st = nil
	if small || len(partials) == 0 {
		return u.joinInTempDir(ctx, keys, shaInfo)
	}
	objectID, multipartID := layout.SplitID(u.id)
	key := u.s.key(objectID)
	copies := copyPlan(keys, sizes, u.s.Inner.MaxPartSize)
	if len(copies) > int(u.s.Inner.MaxMultipartParts) {
		return storeerr.Permanent(fmt.Errorf("s3stream: concatenating %s would take %d parts, more than %d", objectID, len(copies), u.s.Inner.MaxMultipartParts))
	}
	parts := make([]types.CompletedPart, len(copies))
	errs := make([]error, len(copies))
	sem := make(chan struct{}, concatCopies)
	var wg sync.WaitGroup
	for i, c := range copies {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			n := int32(i + 1)
			in := &s3.UploadPartCopyInput{
				Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
				PartNumber: aws.Int32(n), CopySource: aws.String(u.s.Inner.Bucket + "/" + c.src),
			}
			if c.rng != "" {
				in.CopySourceRange = aws.String(c.rng)
			}
			out, err := u.s.Objects.UploadPartCopy(ctx, in)
			if err == nil && (out.CopyPartResult == nil || out.CopyPartResult.ETag == nil) {
				err = errors.New("S3 answered without an ETag")
			}
			if err != nil {
				what := c.src
				if c.rng != "" {
					what += " (" + c.rng + ")"
				}
				errs[i] = fmt.Errorf("s3stream: copying %s into part %d of %s: %w", what, n, key, err)
				return
			}
			parts[i] = types.CompletedPart{ETag: out.CopyPartResult.ETag, PartNumber: aws.Int32(n)}
		})
	}
	wg.Wait()
	if copiesRefused(errs) {
		// MinIO copies no part into a multipart upload created with a
		// checksum algorithm ("checksum missing"): join the partials in
		// the temp dir instead (MinIO takes a PutObject of up to 5 TiB).
		u.s.Log.Warn("S3 refused to copy the partial uploads into the final one (MinIO does with checksums): joining them in the temp dir", "upload", objectID, "error", errs[0])
		return u.joinInTempDir(ctx, keys, shaInfo)
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	if err := u.s.complete(ctx, key, multipartID, parts); err != nil {
		return err
	}
	u.afterConcat(ctx, shaInfo)
	return nil
}

// copiesRefused tells whether S3 refused every copy because the multipart
// upload has a checksum algorithm and copies carry no checksum, as MinIO
// does (InvalidArgument "checksum missing"). Then no part was copied.
func copiesRefused(errs []error) bool {
	for _, err := range errs {
		var api smithy.APIError
		if !errors.As(err, &api) || api.ErrorCode() != "InvalidArgument" || !strings.Contains(api.ErrorMessage(), "checksum missing") {
			return false
		}
	}
	return len(errs) > 0
}

// joinInTempDir joins the objects keys in a temp file (in s3store's
// TemporaryDirectory), stores it as the final upload's object with one
// PutObject and aborts the final upload's multipart upload, as s3store
// does for small partials. Written here because s3store's join is not
// exported, copies partials of MinPartSize and more with UploadPartCopy
// (what MinIO refuses), and lets the SDK send the file as one aws-chunked
// chunk with a CRC32 trailer (MinIO refuses chunks over 16 MiB).
func (u *upload) joinInTempDir(ctx context.Context, keys []string, shaInfo *handler.FileInfo) error {
	objectID, multipartID := layout.SplitID(u.id)
	key := u.s.key(objectID)
	f, err := os.CreateTemp(u.s.Inner.TemporaryDirectory, "tusgate-concat-")
	if err != nil {
		return fmt.Errorf("s3stream: joining the partials of %s: %w", objectID, err)
	}
	defer func() {
		f.Close()
		os.Remove(f.Name())
	}()
	// The CRC32 goes with the PutObject as a header: the SDK would
	// otherwise send the file as one aws-chunked chunk with the CRC32 in a
	// trailer, and MinIO refuses chunks over 16 MiB.
	sum := crc32.NewIEEE()
	for _, src := range keys {
		out, err := u.s.Objects.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(src)})
		if err != nil {
			return fmt.Errorf("s3stream: reading partial %s: %w", src, err)
		}
		_, err = io.Copy(io.MultiWriter(f, sum), out.Body)
		out.Body.Close()
		if err != nil {
			return fmt.Errorf("s3stream: joining partial %s: %w", src, err)
		}
	}
	size, err := f.Seek(0, io.SeekCurrent)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		return fmt.Errorf("s3stream: joining the partials of %s: %w", objectID, err)
	}
	_, err = u.s.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(key), Body: f, ContentLength: aws.Int64(size),
		ChecksumCRC32: aws.String(crc32Value(sum.Sum32())),
	})
	if err != nil {
		return fmt.Errorf("s3stream: storing the joined partials of %s: %w", objectID, err)
	}
	// The object is there: a multipart upload left behind only costs
	// storage until the janitor or a lifecycle rule aborts it.
	if _, err := u.s.Objects.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(u.s.Inner.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID),
	}); err != nil {
		u.s.Log.Warn("aborting the multipart upload of a concatenation stored with PutObject", "upload", objectID, "error", err)
	}
	u.afterConcat(ctx, shaInfo)
	return nil
}

// concatCopies is the most UploadPartCopy requests of one concatenation
// at once.
const concatCopies = 8

// partCopy is one UploadPartCopy of a concatenation: the object src, or the
// byte range rng of it ("bytes=first-last"; "" for all of it).
type partCopy struct{ src, rng string }

// copyPlan lists the copies that make the parts of a concatenation of the
// objects keys, of sizes bytes, in order. S3 copies at most maxCopy bytes
// (5 GiB, its largest part) with one UploadPartCopy: a larger partial is
// copied in ranges of equal size (the last smaller), each at least half
// of maxCopy, so above S3's minimum part size.
func copyPlan(keys []string, sizes []int64, maxCopy int64) []partCopy {
	var plan []partCopy
	for i, src := range keys {
		size := sizes[i]
		if size <= maxCopy {
			plan = append(plan, partCopy{src: src})
			continue
		}
		n := (size + maxCopy - 1) / maxCopy
		step := (size + n - 1) / n
		for first := int64(0); first < size; first += step {
			last := min(first+step, size) - 1
			plan = append(plan, partCopy{src: src, rng: fmt.Sprintf("bytes=%d-%d", first, last)})
		}
	}
	return plan
}
