package s3backend

import (
	"bytes"
	"context"
	"net/http"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// Waiting implements backend.Backend: the records of final uploads that
// wait for partial uploads are empty objects under the internal folder
// (layout.WaitingDir), so that every instance finds them.
func (b *Backend) Waiting() safestore.Waiting { return waiting{b} }

type waiting struct{ b *Backend }

func (w waiting) dir(partialID string) string { return w.b.Prefix() + layout.WaitingDir(partialID) }

// Add implements safestore.Waiting. The object is written through the
// guarded client, which adds the configured encryption.
func (w waiting) Add(ctx context.Context, partialID, finalID string) error {
	_, err := w.b.Objects.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(w.b.Bucket), Key: aws.String(w.dir(partialID) + layout.WaitingName(finalID)),
		Body: bytes.NewReader(nil), ContentLength: aws.Int64(0),
	})
	return err
}

// Finals implements safestore.Waiting.
func (w waiting) Finals(ctx context.Context, partialID string) ([]string, error) {
	dir := w.dir(partialID)
	var finals []string
	p := s3.NewListObjectsV2Paginator(w.b.Client, &s3.ListObjectsV2Input{Bucket: aws.String(w.b.Bucket), Prefix: aws.String(dir), Delimiter: aws.String("/")})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return nil, err
		}
		for _, o := range page.Contents {
			if id, ok := layout.WaitingFinal(aws.ToString(o.Key)[len(dir):]); ok {
				finals = append(finals, id)
			}
		}
	}
	return finals, nil
}

// Remove implements safestore.Waiting.
func (w waiting) Remove(ctx context.Context, partialID, finalID string) error {
	_, err := w.b.Client.DeleteObject(ctx, &s3.DeleteObjectInput{
		Bucket: aws.String(w.b.Bucket), Key: aws.String(w.dir(partialID) + layout.WaitingName(finalID)),
	})
	if storeerr.HTTPStatus(err) == http.StatusNotFound {
		return nil
	}
	return err
}
