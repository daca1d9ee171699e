package ietfdraft

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/tusgate/tusgate/internal/checksum"
)

func TestDigestField(t *testing.T) {
	s256 := sha256.Sum256([]byte("x"))
	b := base64.StdEncoding.EncodeToString(s256[:])
	raw := base64.RawStdEncoding.EncodeToString(s256[:])
	for _, c := range []struct {
		values []string
		keys   []string // parsed keys; nil: malformed
	}{
		{[]string{"sha-256=:" + b + ":"}, []string{"sha-256"}},
		{[]string{"sha-256=:" + raw + ":"}, []string{"sha-256"}}, // padding is optional
		{[]string{"sha-512=:AA==:, sha-256=:" + b + ":"}, []string{"sha-512", "sha-256"}},
		{[]string{"sha-512=:AA==:", "sha-256=:" + b + ":"}, []string{"sha-512", "sha-256"}}, // two lines
		{[]string{"sha-256=:" + b + ":;q=1;note=\"a, b\";f=?1"}, []string{"sha-256"}},
		{[]string{"md5=:AA==:\t,\tsha-256=:" + b + ":"}, []string{"md5", "sha-256"}},
		{[]string{"sha-256=" + b}, nil},          // not a Byte Sequence
		{[]string{"sha-256"}, nil},               // a Boolean
		{[]string{"SHA-256=:" + b + ":"}, nil},   // keys are lower case
		{[]string{"sha-256=:" + b + ":,"}, nil},  // trailing comma
		{[]string{"sha-256=:" + b}, nil},         // unterminated
		{[]string{"sha-256=:a*b=:"}, nil},        // not base64
		{[]string{"sha-256=:" + b + ": x"}, nil}, // junk
		{[]string{""}, nil},
	} {
		h := http.Header{"Content-Digest": c.values}
		d, ok, err := digestField(h, "Content-Digest")
		if !ok {
			t.Fatalf("%q: not found", c.values)
		}
		if c.keys == nil {
			if err == nil {
				t.Errorf("%q: parsed as %v", c.values, d)
			}
			continue
		}
		if err != nil || len(d) != len(c.keys) {
			t.Errorf("%q: %v, %v; want keys %v", c.values, d, err, c.keys)
			continue
		}
		for _, k := range c.keys {
			if _, ok := d[k]; !ok {
				t.Errorf("%q: no %s in %v", c.values, k, d)
			}
		}
		if v := d["sha-256"]; v != nil && !bytes.Equal(v, s256[:]) {
			t.Errorf("%q: sha-256 %x", c.values, v)
		}
	}
	if _, ok, _ := digestField(http.Header{}, "Content-Digest"); ok {
		t.Fatal("found in an empty header")
	}
}

func request(header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodPatch, "/x", nil)
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

// Content-Digest becomes an Expectation of sha-256 (preferred) or sha-512;
// anything tusgate cannot check is refused.
func TestContentDigest(t *testing.T) {
	body := []byte("content")
	s256, s512 := sha256.Sum256(body), sha512.Sum512(body)
	b256, b512 := base64.StdEncoding.EncodeToString(s256[:]), base64.StdEncoding.EncodeToString(s512[:])
	verify := func(e *checksum.Expectation, b []byte) error {
		v := e.Wrap(bytes.NewReader(b), int64(len(b)))
		io.Copy(io.Discard, v)
		return v.Verify()
	}
	for _, field := range []string{"sha-256=:" + b256 + ":", "sha-512=:" + b512 + ":", "sha-512=:AAAA:, sha-256=:" + b256 + ":", "crc32=:AAAAAA==:, sha-512=:" + b512 + ":"} {
		e, err := contentDigest(request("Content-Digest", field))
		if err != nil || e == nil {
			t.Fatalf("%s: %v, %v", field, e, err)
		}
		if err := verify(e, body); err != nil {
			t.Errorf("%s: the content: %v", field, err)
		}
		if err := verify(e, []byte("other")); !errors.Is(err, checksum.ErrMismatch) {
			t.Errorf("%s: other content: %v", field, err)
		}
	}
	if e, err := contentDigest(request()); e != nil || err != nil {
		t.Fatalf("no field: %v, %v", e, err)
	}
	for field, want := range map[string]error{
		"sha-256=:AAAA:":         errDigestLength,
		"md5=:AAAA:":             errContentDigestAlgorithm,
		"sha-256=" + b256:        errDigestMalformed,
		"sha-256=:" + b512 + ":": errDigestLength,
	} {
		if _, err := contentDigest(request("Content-Digest", field)); err != want {
			t.Errorf("%s: %v, want %v", field, err, want)
		}
	}
	r := request("Content-Digest", "sha-256=:"+b256+":")
	ex, _ := checksum.Expect("sha256", s256[:])
	r = r.WithContext(checksum.With(r.Context(), ex)) // Upload-Checksum too
	if _, err := contentDigest(r); err != errTwoDigests {
		t.Fatalf("with Upload-Checksum too: %v", err)
	}
}

// Repr-Digest: sha-256 only.
func TestReprDigest(t *testing.T) {
	s256, s512 := sha256.Sum256([]byte("x")), sha512.Sum512([]byte("x"))
	b256, b512 := base64.StdEncoding.EncodeToString(s256[:]), base64.StdEncoding.EncodeToString(s512[:])
	if v, err := reprDigest(request("Repr-Digest", "sha-512=:"+b512+":, sha-256=:"+b256+":")); err != nil || !bytes.Equal(v, s256[:]) {
		t.Fatalf("%x, %v", v, err)
	}
	if _, err := reprDigest(request("Repr-Digest", "sha-512=:"+b512+":")); err != errReprDigestAlgorithm {
		t.Fatalf("sha-512 alone: %v", err)
	}
	if v, err := reprDigest(request()); v != nil || err != nil {
		t.Fatalf("none: %x, %v", v, err)
	}
	if reprDigestValue(s256[:]) != "sha-256=:"+b256+":" {
		t.Fatal(reprDigestValue(s256[:]))
	}
}

func TestWantsSHA256(t *testing.T) {
	for field, want := range map[string]bool{
		"":                       false,
		"sha-256=1":              true,
		"sha-512=5, sha-256=3":   true,
		"sha-256=0":              false, // "not acceptable"
		"sha-512=10":             false,
		"sha-256=1;x=2, md5=0":   true,
		"sha-256=1, sha-256=0":   false, // the last counts
		"sha-256":                false, // not an Integer
		"sha-256=x":              false,
		"sha-256=1,":             false, // a trailing comma
		"SHA-256=1":              false, // keys are lowercase
		"sha-256=1 sha-512=2":    false,
		"  sha-256=10  ,unix=1 ": true,
	} {
		h := http.Header{}
		if field != "" {
			h.Set("Want-Repr-Digest", field)
		}
		if got := wantsSHA256(h); got != want {
			t.Errorf("Want-Repr-Digest %q: %v, want %v", field, got, want)
		}
	}
}
