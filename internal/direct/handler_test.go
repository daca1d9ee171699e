package direct

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// stubS3 and stubWriter fail the test on any call: the requests below must
// be answered before S3 is asked anything.
type stubS3 struct{ S3API }
type stubWriter struct{ Writer }

func newTestService(t *testing.T) *Service {
	t.Helper()
	s, err := New(Options{
		S3: stubS3{}, Writer: stubWriter{}, Presign: s3.NewPresignClient(s3.New(s3.Options{Region: "us-east-1"})),
		Bucket: "b", URLExpiry: time.Minute, MaxSize: 1 << 30,
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestHandlerAnswersWithoutS3(t *testing.T) {
	h := newTestService(t).Handler()
	for _, c := range []struct {
		method, path string
		status       int
		body         string
	}{
		{"OPTIONS", "/s3/multipart", http.StatusNoContent, ""},
		{"OPTIONS", "/s3/multipart/u/1?key=k", http.StatusNoContent, ""},
		{"GET", "/s3/elsewhere", http.StatusNotFound, `"error":"ERR_NOT_FOUND"`},
		// The middleware puts the caller into the context; without one
		// nothing is served.
		{"POST", "/s3/multipart", http.StatusUnauthorized, `"error":"ERR_UNAUTHENTICATED"`},
		{"GET", "/s3/multipart/u/1?key=k", http.StatusUnauthorized, "ERR_UNAUTHENTICATED"},
		{"GET", "/s3/params?size=1", http.StatusUnauthorized, "ERR_UNAUTHENTICATED"},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(c.method, c.path, strings.NewReader("{}")))
		if rec.Code != c.status || !strings.Contains(rec.Body.String(), c.body) {
			t.Errorf("%s %s: %d %q; want %d with %q", c.method, c.path, rec.Code, rec.Body.String(), c.status, c.body)
		}
		if c.body != "" && rec.Header().Get("Content-Type") != "application/json" {
			t.Errorf("%s %s: Content-Type %q", c.method, c.path, rec.Header().Get("Content-Type"))
		}
	}
}
