package direct

import (
	"context"
	"net/http"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	smithyhttp "github.com/aws/smithy-go/transport/http"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/tusgate/tusgate/internal/expiry"
)

// completedS3 answers as S3 does for a multipart upload completed
// meanwhile: aborting it finds no such upload.
type completedS3 struct {
	stubS3
	deleted []string
}

func (completedS3) AbortMultipartUpload(context.Context, *s3.AbortMultipartUploadInput, ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	return nil, &smithyhttp.ResponseError{Response: &smithyhttp.Response{Response: &http.Response{StatusCode: http.StatusNotFound}}}
}

func (c *completedS3) DeleteObject(_ context.Context, in *s3.DeleteObjectInput, _ ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	c.deleted = append(c.deleted, *in.Key)
	return &s3.DeleteObjectOutput{}, nil
}

// The janitor's removal of an upload that was completed meanwhile drops
// its record and does not count it as expired.
func TestRemoveCompletedMeanwhileIsNotExpired(t *testing.T) {
	s := newTestService(t)
	fake := &completedS3{}
	s.o.S3 = fake
	rel := "owner/d-" + strings.Repeat("ab", 16)
	if err := s.Inventory().Remove(t.Context(), expiry.Upload{ID: eventID(rel, "mp1")}); err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(s.m.uploads.WithLabelValues("expired")); n != 0 {
		t.Errorf("counted %v expired uploads; the upload was completed", n)
	}
	if len(fake.deleted) != 1 || fake.deleted[0] != s.recordKey(rel) {
		t.Errorf("deleted %v; want the record %s", fake.deleted, s.recordKey(rel))
	}
}
