package checksum

import (
	"bytes"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"testing/iotest"

	"github.com/tus/tusd/v2/pkg/handler"
)

func statement(alg string, b []byte) string {
	h, _ := newHash(alg)
	h.Write(b)
	return alg + " " + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestFromRequest(t *testing.T) {
	body := []byte("hello")
	for _, tc := range []struct {
		name    string
		header  []string
		trailer bool
		status  int // 0: an Expectation, -1: none
	}{
		{"none", nil, false, -1},
		{"sha256", []string{statement("sha256", body)}, false, 0},
		{"every algorithm works", []string{statement("crc64nvme", body)}, false, 0},
		{"trailer", nil, true, 0},
		{"both", []string{statement("sha256", body)}, true, 400},
		{"twice", []string{statement("sha256", body), statement("md5", body)}, false, 400},
		{"unknown algorithm", []string{"sha512 " + base64.StdEncoding.EncodeToString(make([]byte, 64))}, false, 400},
		{"no digest", []string{"sha256"}, false, 400},
		{"not base64", []string{"sha256 ***"}, false, 400},
		{"wrong length", []string{"sha256 " + base64.StdEncoding.EncodeToString([]byte("x"))}, false, 400},
		{"extra field", []string{statement("md5", body) + " x"}, false, 400},
	} {
		r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
		for _, h := range tc.header {
			r.Header.Add("Upload-Checksum", h)
		}
		if tc.trailer {
			r.Trailer = http.Header{"Upload-Checksum": nil}
		}
		e, err := FromRequest(r)
		switch {
		case tc.status == -1 && (e != nil || err != nil):
			t.Errorf("%s: %v, %v; want nothing", tc.name, e, err)
		case tc.status == 0 && (e == nil || err != nil):
			t.Errorf("%s: %v, %v; want an Expectation", tc.name, e, err)
		case tc.status > 0:
			var herr handler.Error
			if !errors.As(err, &herr) || herr.HTTPResponse.StatusCode != tc.status {
				t.Errorf("%s: %v; want a %d", tc.name, err, tc.status)
			}
		}
	}
}

func TestVerify(t *testing.T) {
	body := bytes.Repeat([]byte("tusgate "), 1000)
	for _, alg := range Algorithms {
		e, _ := FromRequest(header(statement(alg, body)))
		if err := readAll(e.Wrap(iotest.OneByteReader(bytes.NewReader(body)), int64(len(body)))); err != nil {
			t.Errorf("%s, right body: %v", alg, err)
		}
		other := append([]byte{'x'}, body[1:]...)
		if err := readAll(e.Wrap(bytes.NewReader(other), int64(len(other)))); !errors.Is(err, ErrMismatch) {
			t.Errorf("%s, changed body: %v", alg, err)
		}
		if err := readAll(e.Wrap(bytes.NewReader(body[:100]), int64(len(body)))); !errors.Is(err, ErrUnverified) {
			t.Errorf("%s, cut body: %v", alg, err)
		}
	}
	// A trailer names its algorithm after the body.
	r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
	r.Trailer = http.Header{"Upload-Checksum": nil}
	e, _ := FromRequest(r)
	v := e.Wrap(bytes.NewReader(body), -1)
	io.Copy(io.Discard, v)
	if err := v.Verify(); !errors.Is(err, ErrUnverified) {
		t.Errorf("no trailer: %v", err)
	}
	for _, alg := range Algorithms {
		r.Trailer.Set("Upload-Checksum", statement(alg, body))
		v := e.Wrap(bytes.NewReader(body), -1)
		if err := readAll(v); err != nil {
			t.Errorf("trailer %s: %v", alg, err)
		}
	}
	// A store that reads no further than it needs: Verify reads the end.
	r.Trailer.Set("Upload-Checksum", statement("crc32", body))
	v = e.Wrap(bytes.NewReader(body), -1)
	io.ReadFull(v, make([]byte, len(body)))
	if err := v.Verify(); err != nil {
		t.Errorf("trailer, body read to its last byte but not its end: %v", err)
	}
}

func header(v string) *http.Request {
	r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
	r.Header.Set("Upload-Checksum", v)
	return r
}

func readAll(v *Verifier) error {
	if _, err := io.Copy(io.Discard, v); err != nil {
		return err
	}
	return v.Verify()
}

func TestMiddleware(t *testing.T) {
	tus := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodOptions {
			w.Header().Set("Tus-Extension", "creation,termination")
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if From(r.Context()) == nil {
			w.WriteHeader(http.StatusTeapot)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	h := Middleware(tus)
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodOptions, "/files/", nil))
	if w.Header().Get("Tus-Extension") != "creation,termination,checksum,checksum-trailer" || w.Header().Get("Tus-Checksum-Algorithm") != "sha1,md5,crc32,sha256,crc32c,crc64nvme" {
		t.Errorf("OPTIONS: %v", w.Header())
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, header(statement("md5", []byte("x"))))
	if w.Code != http.StatusNoContent {
		t.Errorf("PATCH with a checksum: %d", w.Code)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, header("md4 AAAA"))
	if w.Code != http.StatusBadRequest || !bytes.HasPrefix(w.Body.Bytes(), []byte("ERR_UNSUPPORTED_CHECKSUM_ALGORITHM")) {
		t.Errorf("unknown algorithm: %d %s", w.Code, w.Body)
	}
	w = httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodPatch, "/files/x", nil))
	if w.Code != http.StatusTeapot {
		t.Errorf("PATCH without a checksum got one in its context: %d", w.Code)
	}
}

// Expect takes sha512 (for Content-Digest), which Upload-Checksum does not.
func TestExpectSHA512(t *testing.T) {
	body := []byte("the body")
	sum := sha512.Sum512(body)
	e, err := Expect("sha512", sum[:])
	if err != nil {
		t.Fatal(err)
	}
	v := e.Wrap(bytes.NewReader(body), int64(len(body)))
	io.Copy(io.Discard, v)
	if err := v.Verify(); err != nil {
		t.Fatalf("Verify: %v", err)
	}
	v = e.Wrap(bytes.NewReader([]byte("other")), 5)
	io.Copy(io.Discard, v)
	if err := v.Verify(); !errors.Is(err, ErrMismatch) {
		t.Fatalf("Verify of other bytes: %v", err)
	}
	if _, err := Expect("sha512", sum[:32]); err == nil {
		t.Fatal("a digest of the wrong length")
	}
	if _, err := Expect("sha3", sum[:32]); err == nil {
		t.Fatal("an unknown algorithm")
	}
	r := httptest.NewRequest("PATCH", "/", nil)
	r.Header.Set("Upload-Checksum", "sha512 "+base64.StdEncoding.EncodeToString(sum[:]))
	if _, err := FromRequest(r); err == nil {
		t.Fatal("Upload-Checksum took sha512, which OPTIONS does not list")
	}
}
