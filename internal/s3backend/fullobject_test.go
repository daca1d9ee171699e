package s3backend

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/webhook"
)

// fakeCreate is an S3 endpoint for CreateMultipartUpload and PutObject
// that records the requests' checksum headers. refuse, if set, answers a
// request with an S3 error code instead (400), echo sends the checksum
// headers back as AWS does.
type fakeCreate struct {
	refuse func(r *http.Request) string
	echo   bool

	mu   sync.Mutex
	seen []http.Header
}

func (f *fakeCreate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.seen = append(f.seen, r.Header.Clone())
	f.mu.Unlock()
	if f.refuse != nil {
		if code := f.refuse(r); code != "" {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprintf(w, "<Error><Code>%s</Code><Message>refused by the test</Message></Error>", code)
			return
		}
	}
	if f.echo {
		for _, h := range []string{"X-Amz-Checksum-Algorithm", "X-Amz-Checksum-Type"} {
			if v := r.Header.Get(h); v != "" {
				w.Header().Set(h, v)
			}
		}
	}
	if r.Method == http.MethodPut {
		w.Header().Set("ETag", `"e"`)
		return
	}
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprint(w, `<InitiateMultipartUploadResult><Bucket>b</Bucket><Key>k</Key><UploadId>u1</UploadId></InitiateMultipartUploadResult>`)
}

func (f *fakeCreate) requests() []http.Header {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]http.Header(nil), f.seen...)
}

// guardedOn returns a GuardedClient for an S3 at f, and its log.
func guardedOn(t *testing.T, f *fakeCreate, calc aws.RequestChecksumCalculation) (*GuardedClient, *bytes.Buffer) {
	t.Helper()
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials:                aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("k", "s", "")),
		RetryMaxAttempts:           1,
		RequestChecksumCalculation: calc,
	})
	var log bytes.Buffer
	return newGuardedClient(client, slog.New(slog.NewTextHandler(&log, nil)), objectSettings{}), &log
}

func create(t *testing.T, c *GuardedClient) error {
	t.Helper()
	_, err := c.CreateMultipartUpload(context.Background(), &s3.CreateMultipartUploadInput{Bucket: aws.String("b"), Key: aws.String("k")})
	return err
}

func asked(h http.Header) bool {
	return h.Get("X-Amz-Checksum-Algorithm") == "CRC32" && h.Get("X-Amz-Checksum-Type") == "FULL_OBJECT"
}

func TestCreateAsksForFullObjectCRC32(t *testing.T) {
	f := &fakeCreate{echo: true}
	c, log := guardedOn(t, f, aws.RequestChecksumCalculationWhenSupported)
	if err := create(t, c); err != nil {
		t.Fatal(err)
	}
	if reqs := f.requests(); len(reqs) != 1 || !asked(reqs[0]) {
		t.Fatalf("requests %v, want one with CRC32 and FULL_OBJECT", reqs)
	}
	if n := c.sums.Note(); n != "" || log.Len() != 0 {
		t.Errorf("note %q, log %q", n, log.String())
	}
}

// An S3 that refuses the checksum: the upload is created without, once
// and for all, with one warning and a note for /readyz.
func TestCreateFallsBackWhenChecksumRefused(t *testing.T) {
	for _, code := range []string{"InvalidArgument", "InvalidRequest", "NotImplemented"} {
		t.Run(code, func(t *testing.T) {
			f := &fakeCreate{echo: true, refuse: func(r *http.Request) string {
				if r.Header.Get("X-Amz-Checksum-Type") != "" {
					return code
				}
				return ""
			}}
			c, log := guardedOn(t, f, aws.RequestChecksumCalculationWhenSupported)
			for range 3 {
				if err := create(t, c); err != nil {
					t.Fatal(err)
				}
			}
			reqs := f.requests()
			if len(reqs) != 4 || !asked(reqs[0]) || asked(reqs[1]) || asked(reqs[2]) || asked(reqs[3]) {
				t.Fatalf("%d requests, want the refused one, then three without checksum headers", len(reqs))
			}
			if n := c.sums.Note(); !strings.Contains(n, "S3 refused FULL_OBJECT CRC32") || !strings.Contains(n, code) {
				t.Errorf("note %q", n)
			}
			if got := strings.Count(log.String(), "level=WARN"); got != 1 {
				t.Errorf("%d warnings, want 1:\n%s", got, log.String())
			}
		})
	}
}

// A refusal that is not about the checksum (the same request without it
// fails too) is the error, and the checksum stays on.
func TestCreateRefusedForAnotherReason(t *testing.T) {
	f := &fakeCreate{refuse: func(*http.Request) string { return "InvalidArgument" }}
	c, log := guardedOn(t, f, aws.RequestChecksumCalculationWhenSupported)
	if err := create(t, c); err == nil || !strings.Contains(err.Error(), "InvalidArgument") {
		t.Fatalf("create: %v", err)
	}
	if !c.sums.asking() || c.sums.Note() != "" || log.Len() != 0 {
		t.Errorf("asking %v, note %q, log %q", c.sums.asking(), c.sums.Note(), log.String())
	}
}

// With request checksums off, parts carry none: nothing is asked for.
func TestCreateWithoutRequestChecksums(t *testing.T) {
	f := &fakeCreate{echo: true}
	c, _ := guardedOn(t, f, aws.RequestChecksumCalculationWhenRequired)
	if err := create(t, c); err != nil {
		t.Fatal(err)
	}
	if reqs := f.requests(); len(reqs) != 1 || reqs[0].Get("X-Amz-Checksum-Algorithm") != "" || reqs[0].Get("X-Amz-Checksum-Type") != "" {
		t.Fatalf("requests %v, want one without checksum headers", reqs)
	}
	if n := c.sums.Note(); !strings.Contains(n, "when_required") {
		t.Errorf("note %q", n)
	}
}

// An S3 that accepts the headers without echoing them is told about once,
// and still asked.
func TestCreateUnconfirmed(t *testing.T) {
	f := &fakeCreate{}
	c, log := guardedOn(t, f, aws.RequestChecksumCalculationWhenSupported)
	for range 2 {
		if err := create(t, c); err != nil {
			t.Fatal(err)
		}
	}
	if reqs := f.requests(); len(reqs) != 2 || !asked(reqs[1]) {
		t.Fatalf("requests %v", reqs)
	}
	if n := c.sums.Note(); !strings.Contains(n, "did not confirm") {
		t.Errorf("note %q", n)
	}
	if got := strings.Count(log.String(), "level=WARN"); got != 1 {
		t.Errorf("%d warnings, want 1:\n%s", got, log.String())
	}
}

// The PutObject of a concatenation's final object carries a CRC32 (S3
// keeps it as the object's full-object checksum); .info and .part objects
// are left to the SDK's defaults; nothing with request checksums off.
func TestFinalPutObjectCarriesCRC32(t *testing.T) {
	for _, calc := range []aws.RequestChecksumCalculation{aws.RequestChecksumCalculationWhenSupported, aws.RequestChecksumCalculationWhenRequired} {
		f := &fakeCreate{}
		c, _ := guardedOn(t, f, calc)
		for _, key := range []string{"owner/final", "owner/final.info"} {
			_, err := c.PutObject(context.Background(), &s3.PutObjectInput{Bucket: aws.String("b"), Key: aws.String(key), Body: strings.NewReader("abc")})
			if err != nil {
				t.Fatal(err)
			}
		}
		reqs := f.requests()
		crc := reqs[0].Get("X-Amz-Checksum-Crc32")
		switch {
		case calc == aws.RequestChecksumCalculationWhenSupported && crc != "NSRBwg==":
			t.Errorf("final object's CRC32 %q, want crc32(abc) NSRBwg==", crc)
		case calc == aws.RequestChecksumCalculationWhenRequired && crc != "":
			t.Errorf("final object's CRC32 %q with request checksums off", crc)
		}
	}
}

func TestObjectChecksum(t *testing.T) {
	for _, c := range []struct {
		name string
		out  s3.HeadObjectOutput
		want string
	}{
		{"none", s3.HeadObjectOutput{}, "<nil>"},
		{"full-object CRC32", s3.HeadObjectOutput{ChecksumCRC32: aws.String("NSRBwg=="), ChecksumType: types.ChecksumTypeFullObject}, "crc32 NSRBwg== FULL_OBJECT"},
		{"versitygw's own", s3.HeadObjectOutput{ChecksumCRC64NVME: aws.String("AAAAAAAAAAA="), ChecksumType: types.ChecksumTypeFullObject}, "crc64nvme AAAAAAAAAAA= FULL_OBJECT"},
		{"composite, type not said", s3.HeadObjectOutput{ChecksumCRC32: aws.String("NSRBwg==-3")}, "crc32 NSRBwg==-3 COMPOSITE"},
	} {
		got := "<nil>"
		if sum := objectChecksum(&c.out); sum != nil {
			got = sum.Algorithm + " " + sum.Value + " " + sum.Type
		}
		if got != c.want {
			t.Errorf("%s: %s, want %s", c.name, got, c.want)
		}
	}
}

// Storage reads the object's checksum, and an S3 that refuses
// x-amz-checksum-mode on HeadObject still gives the ETag.
func TestStorageReadsTheChecksum(t *testing.T) {
	for _, refuse := range []bool{false, true} {
		var modes []string
		var mu sync.Mutex
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			modes = append(modes, r.Header.Get("X-Amz-Checksum-Mode"))
			mu.Unlock()
			if refuse && r.Header.Get("X-Amz-Checksum-Mode") != "" {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			w.Header().Set("ETag", `"e"`)
			if r.Header.Get("X-Amz-Checksum-Mode") == "ENABLED" {
				w.Header().Set("X-Amz-Checksum-Crc32", "NSRBwg==")
				w.Header().Set("X-Amz-Checksum-Type", "FULL_OBJECT")
			}
		}))
		t.Cleanup(srv.Close)
		client := s3.New(s3.Options{
			Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
			Credentials:      aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("k", "s", "")),
			RetryMaxAttempts: 1,
		})
		b := &Backend{Client: client, Bucket: "b"}
		st, err := b.Storage(context.Background(), handler.FileInfo{ID: "o/x+mp", Storage: map[string]string{"Key": "o/x"}}, true)
		if err != nil {
			t.Fatalf("refuse=%v: %v", refuse, err)
		}
		switch {
		case st.ETag != `"e"`:
			t.Errorf("refuse=%v: ETag %q", refuse, st.ETag)
		case !refuse && (st.Checksum == nil || *st.Checksum != webhook.Checksum{Algorithm: "crc32", Value: "NSRBwg==", Type: "FULL_OBJECT"}):
			t.Errorf("checksum %+v", st.Checksum)
		case refuse && (st.Checksum != nil || len(modes) != 2 || modes[1] != ""):
			t.Errorf("refused: checksum %+v, requests with modes %q", st.Checksum, modes)
		}
	}
}
