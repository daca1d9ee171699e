package integration

import (
	"bytes"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/s3backend"
	"github.com/tusgate/tusgate/test/testenv"
)

// s3backend lists an owner's unfinished uploads (for quotas, and the
// janitors theirs), also after the S3 server restarted. MinIO takes the
// prefix of ListMultipartUploads as an exact key, and answers the listing
// without a prefix from its process's memory: uploads begun before a
// restart (or on another node) are missing there.
func TestUnfinishedUploadsListedAfterS3Restart(t *testing.T) {
	s := testenv.StartS3(t, testenv.S3Options{TLS: true})
	s.CreateBucket(t, testBucket)
	ctx := t.Context()
	key := "owner/0123456789abcdef0123456789abcdef"
	if _, err := s.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Client.PutObject(ctx, &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key + ".info"), Body: bytes.NewReader([]byte(`{"ID":"x","Size":1}`))}); err != nil {
		t.Fatal(err)
	}
	listed := func() []string {
		b := &s3backend.Backend{Client: s.Client, Bucket: testBucket}
		if err := b.Check(ctx); err != nil {
			t.Fatal(err)
		}
		var keys []string
		for _, prefix := range []string{"owner/", ""} {
			out, err := b.ListMultipartUploads(ctx, &s3.ListMultipartUploadsInput{Bucket: aws.String(testBucket), Prefix: aws.String(prefix)})
			if err != nil {
				t.Fatal(err)
			}
			for _, u := range out.Uploads {
				keys = append(keys, prefix+"→"+aws.ToString(u.Key))
			}
		}
		return keys
	}
	want := []string{"owner/→" + key, "→" + key}
	if got := listed(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("%s: uploads listed %q, want %q", s.Name, got, want)
	}
	s.Restart(t)
	if got := listed(); len(got) != 2 || got[0] != want[0] || got[1] != want[1] {
		t.Fatalf("%s after a restart: uploads listed %q, want %q", s.Name, got, want)
	}
}
