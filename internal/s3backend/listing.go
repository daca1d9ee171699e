package s3backend

import (
	"context"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	awsmiddleware "github.com/aws/aws-sdk-go-v2/aws/middleware"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// ListMultipartUploads lists in-progress multipart uploads as S3 does, also
// on MinIO, whose ListMultipartUploads takes Prefix as an exact object key:
// there the prefix "owner/" lists nothing though uploads exist under it
// (and "" lists all). tusgate lists uploads under folders (an owner's, for
// quotas; --s3-object-prefix, for the janitors), so on MinIO it lists the
// whole bucket and keeps the keys under the prefix, page by page. Check
// learns the server from HeadBucket's Server header.
func (b *Backend) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	prefix := aws.ToString(in.Prefix)
	if prefix == "" || !b.exactKeyListing.Load() {
		return b.Client.ListMultipartUploads(ctx, in, opts...)
	}
	all := *in
	all.Prefix = nil
	out, err := b.Client.ListMultipartUploads(ctx, &all, opts...)
	if err != nil {
		return nil, err
	}
	kept := out.Uploads[:0]
	for _, u := range out.Uploads {
		if strings.HasPrefix(aws.ToString(u.Key), prefix) {
			kept = append(kept, u)
		}
	}
	out.Uploads, out.Prefix = kept, in.Prefix
	return out, nil
}

// listsByExactKey tells from an answer's Server header whether the S3
// server is MinIO (see ListMultipartUploads).
func listsByExactKey(md middleware.Metadata) bool {
	raw, ok := awsmiddleware.GetRawResponse(md).(*smithyhttp.Response)
	return ok && raw != nil && strings.HasPrefix(strings.ToLower(raw.Header.Get("Server")), "minio")
}
