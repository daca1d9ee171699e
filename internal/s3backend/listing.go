package s3backend

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ListMultipartUploads lists in-progress multipart uploads as S3 does, also
// on MinIO. MinIO takes Prefix as an exact object key (the prefix "owner/"
// lists nothing, though uploads exist under it), and answers a listing
// without a prefix from its process's memory (uploads begun before a MinIO
// restart, or on another node, are missing). tusgate lists uploads under
// folders (an owner's, for quotas; --s3-object-prefix, for the janitors),
// so on MinIO it answers with one page that joins
//
//   - the uploads under the prefix among all MinIO remembers (every page
//     of the listing without a prefix): also multipart uploads without an
//     .info (a crash between the two at creation, direct uploads);
//   - for each .info object under the prefix (every tus upload has one
//     next to its key), the uploads of that exact key, which MinIO reads
//     from its drives: also uploads begun before a restart.
//
// Multipart uploads without an .info that MinIO forgot are not found;
// MinIO removes stale multipart uploads itself (stale_uploads_expiry).
// Check learns the server from HeadBucket's Server header.
func (b *Backend) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	if !b.exactKeyListing.Load() {
		return b.Client.ListMultipartUploads(ctx, in, opts...)
	}
	prefix := aws.ToString(in.Prefix)
	out := &s3.ListMultipartUploadsOutput{Bucket: in.Bucket, Prefix: in.Prefix, IsTruncated: aws.Bool(false)}
	seen := map[string]bool{}
	add := func(u types.MultipartUpload) {
		if id := aws.ToString(u.UploadId); !seen[id] {
			seen[id] = true
			out.Uploads = append(out.Uploads, u)
		}
	}
	all := s3.NewListMultipartUploadsPaginator(b.Client, &s3.ListMultipartUploadsInput{Bucket: in.Bucket},
		func(o *s3.ListMultipartUploadsPaginatorOptions) { o.StopOnDuplicateToken = true })
	for all.HasMorePages() {
		page, err := all.NextPage(ctx, opts...)
		if err != nil {
			return nil, err
		}
		for _, u := range page.Uploads {
			if strings.HasPrefix(aws.ToString(u.Key), prefix) {
				add(u)
			}
		}
	}
	p := s3.NewListObjectsV2Paginator(b.Client, &s3.ListObjectsV2Input{Bucket: in.Bucket, Prefix: in.Prefix})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx, opts...)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			key, ok := strings.CutSuffix(aws.ToString(o.Key), ".info")
			if !ok {
				continue
			}
			ups, err := b.Client.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: in.Bucket, Prefix: aws.String(key)}, opts...)
			if err != nil {
				return nil, err
			}
			for _, u := range ups.Uploads {
				if aws.ToString(u.Key) == key {
					add(u)
				}
			}
		}
	}
	return out, nil
}

// listsByExactKey tells from an answer's Server header whether the S3
// server is MinIO (see ListMultipartUploads).
func listsByExactKey(md middleware.Metadata) bool {
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	return ok && raw != nil && strings.HasPrefix(strings.ToLower(raw.Header.Get("Server")), "minio")
}
