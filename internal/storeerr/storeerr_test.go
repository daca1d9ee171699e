package storeerr

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tus/tusd/v2/pkg/handler"
)

func TestPermanentMark(t *testing.T) {
	if Permanent(nil) != nil {
		t.Fatal("Permanent(nil) is not nil")
	}
	if IsPermanent(nil) || IsPermanent(errors.New("x")) || IsPermanent(context.DeadlineExceeded) {
		t.Fatal("unmarked errors reported permanent")
	}
	base := errors.New("s3stream: part 3 of k holds 5 bytes, not 7")
	err := fmt.Errorf("writing: %w", Permanent(base))
	if !IsPermanent(err) || !errors.Is(err, base) || err.Error() != "writing: "+base.Error() {
		t.Fatalf("marked error: permanent %v, is base %v, text %q", IsPermanent(err), errors.Is(err, base), err)
	}
	if !IsPermanent(errors.Join(errors.New("other"), err)) {
		t.Fatal("the mark is lost in a joined error")
	}
	var tusErr handler.Error
	if !errors.As(Permanent(handler.ErrNotFound), &tusErr) {
		t.Fatal("a marked error hides what it wraps from errors.As")
	}
}

// s3Answer starts a server answering every request with status and an S3
// XML error document with code and msg (none for HEAD), and returns an S3
// client for it that does not retry.
func s3Answer(t *testing.T, status int, code, msg string) *s3.Client {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/xml")
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			fmt.Fprintf(w, `<?xml version="1.0" encoding="UTF-8"?><Error><Code>%s</Code><Message>%s</Message><RequestId>R1</RequestId></Error>`, code, msg)
		}
	}))
	t.Cleanup(srv.Close)
	return s3.New(s3.Options{
		Region:           "us-east-1",
		BaseEndpoint:     aws.String(srv.URL),
		UsePathStyle:     true,
		Credentials:      credentials.NewStaticCredentialsProvider("k", "s", ""),
		RetryMaxAttempts: 1,
	})
}

const kmsDenied = "User: arn:aws:sts::1:assumed-role/gw/i is not authorized to perform: kms:GenerateDataKey on resource: arn:aws:kms:eu-west-1:1:key/k"

// The classifier sees the errors the AWS SDK really returns for S3's
// answers: wrapped (as s3stream and most of s3store return them) and
// flattened into text (as s3store returns CreateMultipartUpload's).
func TestS3Errors(t *testing.T) {
	for _, tc := range []struct {
		status    int
		code, msg string
		permanent bool
	}{
		{400, "InvalidArgument", "Invalid argument", true},
		{400, "InvalidRequest", "Content-MD5 OR x-amz-checksum- HTTP header is required", true},
		{400, "EntityTooLarge", "Your proposed upload exceeds the maximum allowed size", true},
		{400, "EntityTooSmall", "Your proposed upload is smaller than the minimum allowed size", true},
		{404, "NoSuchBucket", "The specified bucket does not exist", true},
		{403, "AccessDenied", kmsDenied, true},
		{400, "KMS.DisabledException", "arn:aws:kms:eu-west-1:1:key/k is disabled.", true},
		{501, "NotImplemented", "A header you provided implies functionality that is not implemented", true},
		{403, "AccessDenied", "Access Denied", false},
		{400, "KMS.ThrottlingException", "Rate exceeded", false},
		{400, "RequestTimeout", "Your socket connection to the server was not read from or written to within the timeout period", false},
		{400, "BadDigest", "The Content-MD5 or checksum value that you specified did not match what the server received", false},
		{503, "SlowDown", "Please reduce your request rate.", false},
		{500, "InternalError", "We encountered an internal error. Please try again.", false},
		{503, "InvalidRequest", "a 5xx is transient whatever its code", false},
		{429, "InvalidArgument", "so is a 429", false},
		{409, "SomethingNew", "unknown codes are transient", false},
	} {
		t.Run(tc.code, func(t *testing.T) {
			c := s3Answer(t, tc.status, tc.code, tc.msg)
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader([]byte("x"))})
			if err == nil {
				t.Fatal("no error")
			}
			wrapped := fmt.Errorf("s3stream: uploading part 1 of k: %w", err)
			if got := IsPermanent(wrapped); got != tc.permanent {
				t.Errorf("wrapped %v: permanent %v, want %v", err, got, tc.permanent)
			}
			// s3store's NewUpload: fmt.Errorf("s3store: unable to create multipart upload:\n%s", err)
			text := fmt.Errorf("s3store: unable to create multipart upload:\n%s", err)
			if got := IsPermanent(text); got != tc.permanent {
				t.Errorf("flattened %q: permanent %v, want %v", text, got, tc.permanent)
			}
		})
	}
	// HEAD answers carry no error document: the status decides.
	for status, want := range map[int]bool{501: true, 403: false, 400: false, 503: false} {
		c := s3Answer(t, status, "", "")
		_, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
		if err == nil || IsPermanent(err) != want {
			t.Errorf("HEAD answered %d: %v, permanent %v, want %v", status, err, IsPermanent(err), want)
		}
	}
}

func TestConnectionErrorsAreTransient(t *testing.T) {
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""), RetryMaxAttempts: 1})
	_, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	if err == nil || IsPermanent(err) {
		t.Fatalf("connection refused: %v, permanent %v", err, IsPermanent(err))
	}
	if IsPermanent(errors.New("operation error S3: PutObject, https response error StatusCode: 0, " + strings.Repeat("x", 10))) {
		t.Fatal("SDK text without an API error code reported permanent")
	}
}

// HTTPStatus reads the status of S3's answer from the SDK's errors, wrapped
// or flattened into text, and is 0 when S3 did not answer.
func TestHTTPStatus(t *testing.T) {
	for _, status := range []int{404, 403, 412, 503} {
		c := s3Answer(t, status, "", "")
		_, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
		if got := HTTPStatus(fmt.Errorf("checking: %w", err)); got != status {
			t.Errorf("HEAD answered %d: HTTPStatus %d (%v)", status, got, err)
		}
		c = s3Answer(t, status, "SomeCode", "some message")
		_, err = c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String("k"), Body: bytes.NewReader([]byte("x"))})
		if got := HTTPStatus(err); got != status {
			t.Errorf("PUT answered %d: HTTPStatus %d (%v)", status, got, err)
		}
		// (A retryable answer reads "exceeded maximum number of attempts" in
		// between, which the text does not match: transient either way.)
		if got := HTTPStatus(fmt.Errorf("s3store: unable to create multipart upload:\n%s", err)); status < 500 && got != status {
			t.Errorf("PUT answered %d, flattened: HTTPStatus %d", status, got)
		}
	}
	srv := httptest.NewServer(http.NotFoundHandler())
	url := srv.URL
	srv.Close()
	c := s3.New(s3.Options{Region: "us-east-1", BaseEndpoint: aws.String(url), UsePathStyle: true,
		Credentials: credentials.NewStaticCredentialsProvider("k", "s", ""), RetryMaxAttempts: 1})
	_, err := c.HeadObject(context.Background(), &s3.HeadObjectInput{Bucket: aws.String("b"), Key: aws.String("k")})
	for _, err := range []error{nil, errors.New("x"), context.DeadlineExceeded, Permanent(errors.New("inconsistent")), err} {
		if got := HTTPStatus(err); got != 0 {
			t.Errorf("HTTPStatus(%v) = %d, want 0", err, got)
		}
	}
}
