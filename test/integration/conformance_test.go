package integration

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The tus 1.0 rules tusd's handler does not enforce, answered by tusgate
// (https://tus.io/protocols/resumable-upload), with authentication on, on
// S3 and on disk. Each request carries a bearer token, as a conformance
// suite run against a deployment would send.

// confGate is a tusgate with authentication on and the headers of one
// user's requests (a bearer token and Tus-Resumable).
type confGate struct {
	*authSetup
	h map[string]string
}

func startConformance(t *testing.T, b *backend, extra ...string) *confGate {
	t.Helper()
	a := startAuth(t, b, extra...)
	return &confGate{authSetup: a, h: bearer(a.token(t, "rsa1", "auth0|conformance"))}
}

// without returns h without the named headers.
func without(h map[string]string, names ...string) map[string]string {
	out := with(h)
	for _, n := range names {
		delete(out, n)
	}
	return out
}

// create makes an upload of size bytes with the user's token.
func (c *confGate) create(t *testing.T, size int64, extra ...string) string {
	t.Helper()
	r := do(t, "POST", c.g.URL+"/files/", with(c.h, append([]string{"Upload-Length", strconv.FormatInt(size, 10)}, extra...)...), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	return r.Header.Get("Location")
}

func (c *confGate) patch(t *testing.T, url string, offset int64, data []byte, extra ...string) response {
	t.Helper()
	h := with(c.h, append([]string{"Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)}, extra...)...)
	return do(t, "PATCH", url, h, bytes.NewReader(data))
}

func (c *confGate) offset(t *testing.T, url string) string {
	t.Helper()
	r := do(t, "HEAD", url, c.h, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD %s: %d", url, r.Status)
	}
	return r.Header.Get("Upload-Offset")
}

func TestConformanceTusResumable(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		loc := c.create(t, 10)
		if r := c.patch(t, loc, 0, []byte("abc")); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		uploads := b.countUploads(t)

		// Missing, unsupported, and supported but not 1.0.0.
		for _, version := range []string{"", "99.99.99", "0.2.2"} {
			h := with(c.h, "Tus-Resumable", version)
			if version == "" {
				h = without(c.h, "Tus-Resumable")
			}
			for _, req := range []struct {
				method, url string
				header      map[string]string
				body        string
			}{
				{"HEAD", loc, h, ""},
				{"PATCH", loc, with(h, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "3"), "defg"},
				{"POST", c.g.URL + "/files/", with(h, "Upload-Length", "5"), ""},
				{"DELETE", loc, h, ""},
				// X-HTTP-Method-Override names the method tusd acts on.
				{"POST", loc, with(h, "X-HTTP-Method-Override", "PATCH", "Content-Type", "application/offset+octet-stream", "Upload-Offset", "3"), "defg"},
			} {
				r := do(t, req.method, req.url, req.header, strings.NewReader(req.body))
				if r.Status != http.StatusPreconditionFailed || r.Header.Get("Tus-Version") != "1.0.0" || r.Header.Get("Tus-Resumable") != "1.0.0" {
					t.Errorf("%s with Tus-Resumable %q: %d, Tus-Version %q, Tus-Resumable %q; want 412 with Tus-Version 1.0.0",
						req.method, version, r.Status, r.Header.Get("Tus-Version"), r.Header.Get("Tus-Resumable"))
				}
			}
		}
		// None of them was processed.
		if off := c.offset(t, loc); off != "3" {
			t.Fatalf("offset after refused PATCHes: %s, want 3", off)
		}
		if n := b.countUploads(t); n != uploads {
			t.Fatalf("uploads after refused requests: %d, want %d", n, uploads)
		}

		// OPTIONS and GET keep their own rules.
		if r := do(t, "OPTIONS", c.g.URL+"/files/", nil, nil); r.Status != http.StatusOK || r.Header.Get("Tus-Version") != "1.0.0" {
			t.Errorf("OPTIONS without Tus-Resumable: %d, Tus-Version %q", r.Status, r.Header.Get("Tus-Version"))
		}
		if r := do(t, "OPTIONS", c.g.URL+"/files/", map[string]string{"Tus-Resumable": "99.99.99"}, nil); r.Status != http.StatusOK {
			t.Errorf("OPTIONS ignores Tus-Resumable, but answered %d", r.Status)
		}
		done := c.create(t, 3)
		if r := c.patch(t, done, 0, []byte("xyz")); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		if r := do(t, "GET", done, without(c.h, "Tus-Resumable"), nil); r.Status != http.StatusOK || r.Body != "xyz" {
			t.Errorf("GET without Tus-Resumable: %d %q", r.Status, r.Body)
		}
	})
}

func TestConformanceContentType(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		loc := c.create(t, 10)
		for _, ct := range []string{"", "text/plain", "application/octet-stream", "application/partial-upload"} {
			h := with(c.h, "Upload-Offset", "0", "Content-Type", ct)
			if ct == "" {
				delete(h, "Content-Type")
			}
			r := do(t, "PATCH", loc, h, strings.NewReader("abc"))
			if r.Status != http.StatusUnsupportedMediaType {
				t.Errorf("PATCH with Content-Type %q: %d %s, want 415", ct, r.Status, r.Body)
			}
		}
		if off := c.offset(t, loc); off != "0" {
			t.Fatalf("offset after refused PATCHes: %s", off)
		}
		// Parameters and case do not matter.
		if r := c.patch(t, loc, 0, []byte("abc"), "Content-Type", "Application/Offset+Octet-Stream; charset=binary"); r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != "3" {
			t.Fatalf("PATCH with parameters: %d %s", r.Status, r.Body)
		}

		// Creation with upload: a body of another type is refused, and
		// nothing is created.
		uploads := b.countUploads(t)
		for _, ct := range []string{"", "text/plain", "multipart/form-data; boundary=x"} {
			h := with(c.h, "Upload-Length", "5", "Content-Type", ct)
			if ct == "" {
				delete(h, "Content-Type")
			}
			r := do(t, "POST", c.g.URL+"/files/", h, strings.NewReader("hello"))
			if r.Status != http.StatusUnsupportedMediaType || r.Header.Get("Location") != "" {
				t.Errorf("POST with a %q body: %d Location %q, want 415", ct, r.Status, r.Header.Get("Location"))
			}
		}
		if n := b.countUploads(t); n != uploads {
			t.Fatalf("uploads after refused creations: %d, want %d", n, uploads)
		}
		// Without a body any Content-Type is fine (some HTTP stacks always
		// send one); with application/offset+octet-stream the body is stored.
		if r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Length", "5", "Content-Type", "text/plain"), nil); r.Status != http.StatusCreated {
			t.Errorf("empty POST with Content-Type text/plain: %d %s", r.Status, r.Body)
		}
		r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Length", "5", "Content-Type", "application/offset+octet-stream"), strings.NewReader("hello"))
		if r.Status != http.StatusCreated || r.Header.Get("Upload-Offset") != "5" {
			t.Fatalf("creation with upload: %d offset %q %s", r.Status, r.Header.Get("Upload-Offset"), r.Body)
		}
		b.assertStored(t, r.Header.Get("Location"), sha256Hex([]byte("hello")), 5)
	})
}

func TestConformanceFinalWithUploadLength(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		p := c.create(t, 3, "Upload-Concat", "partial")
		if r := c.patch(t, p, 0, []byte("abc")); r.Status != http.StatusNoContent {
			t.Fatalf("partial: %d %s", r.Status, r.Body)
		}
		uploads := b.countUploads(t)
		r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "final;"+p, "Upload-Length", "3"), nil)
		if r.Status != http.StatusBadRequest || r.Header.Get("Location") != "" {
			t.Fatalf("final with Upload-Length: %d Location %q, want 400", r.Status, r.Header.Get("Location"))
		}
		if n := b.countUploads(t); n != uploads {
			t.Fatalf("uploads after a refused final: %d, want %d", n, uploads)
		}
		if r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "final;"+p), nil); r.Status != http.StatusCreated {
			t.Fatalf("final: %d %s", r.Status, r.Body)
		}
	})
}

func TestConformanceMismatchedOffset(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		loc := c.create(t, 10)
		if r := c.patch(t, loc, 0, []byte("abc")); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		for _, off := range []int64{0, 2, 4, 9} {
			r := c.patch(t, loc, off, []byte("d"))
			if r.Status != http.StatusConflict || r.Header.Get("Upload-Offset") != "3" {
				t.Errorf("PATCH at %d of an upload at 3: %d, Upload-Offset %q; want 409 with Upload-Offset 3", off, r.Status, r.Header.Get("Upload-Offset"))
			}
		}
		if off := c.offset(t, loc); off != "3" {
			t.Fatalf("offset after mismatched PATCHes: %s, want 3", off)
		}
	})
}

func TestConformanceHeadUploadExpires(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b, "--upload-ttl", "3h")
		// The last write is the upload's last activity: expiry is 3h after.
		expires := func(url string) (time.Time, bool) {
			t.Helper()
			r := do(t, "HEAD", url, c.h, nil)
			if r.Status != http.StatusOK {
				t.Fatalf("HEAD: %d", r.Status)
			}
			v := r.Header.Get("Upload-Expires")
			if v == "" {
				return time.Time{}, false
			}
			at, err := http.ParseTime(v)
			if err != nil {
				t.Fatalf("Upload-Expires %q: %v", v, err)
			}
			return at, true
		}
		loc := c.create(t, 10)
		before := time.Now()
		if r := c.patch(t, loc, 0, []byte("abc")); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		after := time.Now()
		at, ok := expires(loc)
		if !ok || at.Before(before.Add(3*time.Hour-2*time.Second)) || at.After(after.Add(3*time.Hour+2*time.Second)) {
			t.Fatalf("HEAD of an unfinished upload: Upload-Expires %v (%v), want 3h after the PATCH at %v", at, ok, before)
		}
		// A refused PATCH carries it too ("every PATCH response").
		if r := c.patch(t, loc, 1, []byte("x")); r.Status != http.StatusConflict || r.Header.Get("Upload-Expires") != at.UTC().Format(http.TimeFormat) {
			t.Fatalf("PATCH at a wrong offset: %d, Upload-Expires %q, want %v", r.Status, r.Header.Get("Upload-Expires"), at)
		}
		deferred := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Defer-Length", "1"), nil).Header.Get("Location")
		if _, ok := expires(deferred); !ok {
			t.Fatal("HEAD of an upload with a deferred length: no Upload-Expires")
		}
		if r := c.patch(t, loc, 3, []byte("defghij")); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		if at, ok := expires(loc); ok {
			t.Fatalf("HEAD of a finished upload: Upload-Expires %v", at)
		}

		// Without expiry, nothing expires.
		c0 := startConformance(t, b, "--upload-ttl", "0", "--data-dir", t.TempDir())
		loc = c0.create(t, 10)
		if r := do(t, "HEAD", loc, c0.h, nil); r.Status != http.StatusOK || r.Header.Get("Upload-Expires") != "" {
			t.Fatalf("HEAD with --upload-ttl 0: %d, Upload-Expires %q", r.Status, r.Header.Get("Upload-Expires"))
		}
	})
}
