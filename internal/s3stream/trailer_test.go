package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"hash/crc32"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/tlsbatch"
)

// partRequest is what an S3 server received for one UploadPart.
type partRequest struct {
	header http.Header
	length int64
	body   []byte
}

// partServer is an HTTPS server that records UploadPart requests and
// answers them like S3, with a client for it whose TLS connections are
// tlsbatch's, as in tusgate.
func partServer(t *testing.T, calc aws.RequestChecksumCalculation) (*s3.Client, chan partRequest) {
	return newPartServer(t, calc, true)
}

// newPartServer is partServer, over HTTPS or plain HTTP.
func newPartServer(t *testing.T, calc aws.RequestChecksumCalculation, https bool) (*s3.Client, chan partRequest) {
	t.Helper()
	got := make(chan partRequest, 1)
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		got <- partRequest{header: r.Header.Clone(), length: r.ContentLength, body: b}
		w.Header().Set("ETag", `"etag"`)
	}))
	hc := awshttp.NewBuildableClient()
	if https {
		srv.StartTLS()
		pool := x509.NewCertPool()
		pool.AddCert(srv.Certificate())
		d := &tlsbatch.Dialer{Config: &tls.Config{RootCAs: pool}}
		hc = hc.WithTransportOptions(func(tr *http.Transport) { tr.DialTLSContext = d.DialTLSContext })
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	c := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true, HTTPClient: hc,
		Credentials:                credentials.NewStaticCredentialsProvider("AKID", "SECRET", ""),
		RequestChecksumCalculation: calc,
	})
	return c, got
}

func uploadFilledPart(t *testing.T, c *s3.Client, buf []byte) {
	t.Helper()
	_, err := c.UploadPart(context.Background(), &s3.UploadPartInput{
		Bucket: aws.String("b"), Key: aws.String("k"), UploadId: aws.String("u"), PartNumber: aws.Int32(1),
		Body: newFillBody(buf, len(buf), len(buf), nil), ContentLength: aws.Int64(int64(len(buf))),
	}, withCRCTrailer, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if err != nil {
		t.Fatalf("UploadPart: %v", err)
	}
}

// TestStreamedPartRequest: a streamed part reaches S3 as the SDK would send
// it with its default checksum: aws-chunked with a CRC32 trailer, signed as
// STREAMING-UNSIGNED-PAYLOAD-TRAILER with the trailer headers among the
// signed ones.
func TestStreamedPartRequest(t *testing.T) {
	c, got := partServer(t, aws.RequestChecksumCalculationWhenSupported)
	buf := bytes.Repeat([]byte("0123456789abcdef"), 170000) // 2,720,000 bytes: three chunks
	uploadFilledPart(t, c, buf)
	r := <-got
	want := wantAWSChunked(buf)
	for h, v := range map[string]string{
		"Content-Encoding":             "aws-chunked",
		"X-Amz-Trailer":                "x-amz-checksum-crc32",
		"X-Amz-Decoded-Content-Length": strconv.Itoa(len(buf)),
		"X-Amz-Content-Sha256":         "STREAMING-UNSIGNED-PAYLOAD-TRAILER",
	} {
		if r.header.Get(h) != v {
			t.Errorf("%s: %q, want %q", h, r.header.Get(h), v)
		}
	}
	if auth := r.header.Get("Authorization"); !bytes.Contains([]byte(auth), []byte("x-amz-decoded-content-length")) || !bytes.Contains([]byte(auth), []byte("x-amz-trailer")) {
		t.Errorf("Authorization %q does not sign the trailer headers", auth)
	}
	if r.length != int64(len(want)) || string(r.body) != want {
		t.Fatalf("body of %d bytes (Content-Length %d), want the %d of the aws-chunked encoding", len(r.body), r.length, len(want))
	}
}

// TestStreamedPartWithoutChecksums: with request checksums turned off
// (AWS_REQUEST_CHECKSUM_CALCULATION=when_required), a part goes as it is.
func TestStreamedPartWithoutChecksums(t *testing.T) {
	c, got := partServer(t, aws.RequestChecksumCalculationWhenRequired)
	buf := bytes.Repeat([]byte("x"), 70000)
	uploadFilledPart(t, c, buf)
	r := <-got
	if r.header.Get("X-Amz-Trailer") != "" || r.header.Get("Content-Encoding") != "" || r.header.Get("X-Amz-Content-Sha256") != "UNSIGNED-PAYLOAD" {
		t.Errorf("headers %v; want no trailer and an unsigned payload", r.header)
	}
	if !bytes.Equal(r.body, buf) {
		t.Fatalf("body of %d bytes, want the part's %d", len(r.body), len(buf))
	}
}

// TestBufferedPartRequest: over plain HTTP, a complete part goes with the
// SHA-256 and CRC32 summed while it filled: the signed payload hash and the
// checksum header the SDK would have computed (the fake server does not
// check them; versitygw does in test/integration).
func TestBufferedPartRequest(t *testing.T) {
	buf := bytes.Repeat([]byte("0123456789abcdef"), 20000)
	sha := sha256.Sum256(buf)
	var crc [4]byte
	binary.BigEndian.PutUint32(crc[:], crc32.ChecksumIEEE(buf))
	for _, tc := range []struct {
		calc    aws.RequestChecksumCalculation
		wantCRC string
	}{
		{aws.RequestChecksumCalculationWhenSupported, base64.StdEncoding.EncodeToString(crc[:])},
		{aws.RequestChecksumCalculationWhenRequired, ""},
	} {
		c, got := newPartServer(t, tc.calc, false)
		sums := newPartSums(buf[:1000]) // as if the first 1,000 bytes were a tail read first
		sums.add(buf[1000:])
		_, err := c.UploadPart(context.Background(), &s3.UploadPartInput{
			Bucket: aws.String("b"), Key: aws.String("k"), UploadId: aws.String("u"), PartNumber: aws.Int32(1),
			Body: newFillBody(buf, len(buf), len(buf), nil), ContentLength: aws.Int64(int64(len(buf))),
		}, withPartSums(sums), func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		if err != nil {
			t.Fatalf("UploadPart: %v", err)
		}
		r := <-got
		if h := r.header.Get("X-Amz-Content-Sha256"); h != hex.EncodeToString(sha[:]) {
			t.Errorf("X-Amz-Content-Sha256 %q, want the part's SHA-256", h)
		}
		if h := r.header.Get("X-Amz-Checksum-Crc32"); h != tc.wantCRC {
			t.Errorf("checksums %v: X-Amz-Checksum-Crc32 %q, want %q", tc.calc, h, tc.wantCRC)
		}
		if auth := r.header.Get("Authorization"); !strings.Contains(auth, "x-amz-content-sha256") {
			t.Errorf("Authorization %q does not sign the payload hash", auth)
		}
		if r.header.Get("Content-Encoding") != "" || r.length != int64(len(buf)) || !bytes.Equal(r.body, buf) {
			t.Errorf("body of %d bytes (Content-Length %d, Content-Encoding %q), want the part as it is", len(r.body), r.length, r.header.Get("Content-Encoding"))
		}
	}
}
