package direct

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/oidc"
)

// refusingWriter records that S3 was asked to create something.
type refusingWriter struct{ asked *bool }

func (w refusingWriter) CreateMultipartUpload(context.Context, *s3.CreateMultipartUploadInput, ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	*w.asked = true
	return nil, errors.New("not here")
}

func (w refusingWriter) PutObject(context.Context, *s3.PutObjectInput, ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	*w.asked = true
	return nil, errors.New("not here")
}

// A negative declared size is refused as metadata.size's is, not taken
// for "no size".
func TestCreateRefusesNegativeSize(t *testing.T) {
	s := newTestService(t)
	var asked bool
	s.o.Writer = refusingWriter{&asked}
	for _, body := range []string{`{"filename":"a","size":-5}`, `{"filename":"a","metadata":{"size":"-5"}}`} {
		asked = false
		r := httptest.NewRequest("POST", "/s3/multipart", strings.NewReader(body))
		r = r.WithContext(hooks.WithPrincipal(r.Context(), &oidc.Principal{Issuer: "https://issuer.example/", Subject: "alice"}))
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, r)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "ERR_INVALID_SIZE") || asked {
			t.Errorf("%s: %d %s (S3 asked: %v); want 400 ERR_INVALID_SIZE", body, rec.Code, rec.Body.String(), asked)
		}
	}
}

// With a byte quota every part URL binds its size: an unsized URL (and a
// batch, whose URLs are unsized) would let S3 take up to 5 GiB a part
// past the quota until the janitor aborts the upload.
func TestQuotaNeedsSizedPartURLs(t *testing.T) {
	s := newTestService(t)
	s.o.Limits.Bytes = 1 << 30
	for _, path := range []string{"/s3/multipart/up1/1?key=k", "/s3/multipart/up1/batch?key=k&partNumbers=1,2"} {
		r := httptest.NewRequest("GET", path, nil)
		r = r.WithContext(hooks.WithPrincipal(r.Context(), &oidc.Principal{Issuer: "https://issuer.example/", Subject: "alice"}))
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, r)
		if rec.Code != http.StatusBadRequest || !strings.Contains(rec.Body.String(), "ERR_SIZE_REQUIRED") {
			t.Errorf("%s: %d %s; want 400 ERR_SIZE_REQUIRED", path, rec.Code, rec.Body.String())
		}
	}
}
