package s3stream

import (
	"bytes"
	"context"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// TestWindowPartOverHTTP: a streamed part over plain HTTP goes with the
// CRC32 trailer, or, where the operator turned request checksums off, as
// an unsigned payload (the SDK could not hash the unseekable body and
// failed every such request).
func TestWindowPartOverHTTP(t *testing.T) {
	want := map[aws.RequestChecksumCalculation]string{
		aws.RequestChecksumCalculationWhenSupported: "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
		aws.RequestChecksumCalculationWhenRequired:  "UNSIGNED-PAYLOAD",
	}
	for _, calc := range []aws.RequestChecksumCalculation{aws.RequestChecksumCalculationWhenSupported, aws.RequestChecksumCalculationWhenRequired} {
		c, got := newPartServer(t, calc, false)
		buf := bytes.Repeat([]byte("x"), 70000)
		_, err := c.UploadPart(context.Background(), &s3.UploadPartInput{
			Bucket: aws.String("b"), Key: aws.String("k"), UploadId: aws.String("u"), PartNumber: aws.Int32(1),
			Body: newFillBody(buf, len(buf), len(buf), nil), ContentLength: aws.Int64(int64(len(buf))),
		}, withCRCTrailer, noRetries)
		if err != nil {
			t.Errorf("calc %v: UploadPart: %v", calc, err)
			continue
		}
		r := <-got
		if h := r.header.Get("X-Amz-Content-Sha256"); h != want[calc] {
			t.Errorf("calc %v: X-Amz-Content-Sha256 %q, want %q", calc, h, want[calc])
		}
		if calc == aws.RequestChecksumCalculationWhenRequired && !bytes.Equal(r.body, buf) {
			t.Errorf("calc %v: the body is not the part's %d bytes as they are", calc, len(buf))
		}
	}
}
