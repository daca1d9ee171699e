package ietfdraft

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
)

func header(name string, values ...string) http.Header {
	h := http.Header{}
	for _, v := range values {
		h.Add(name, v)
	}
	return h
}

func TestStructuredFields(t *testing.T) {
	for _, tc := range []struct {
		values []string
		b, ok  bool
	}{
		{[]string{"?1"}, true, true},
		{[]string{"?0"}, false, true},
		{[]string{" ?1 "}, true, true},
		{[]string{"?1;note=x"}, true, true},
		{[]string{"?1;"}, false, false},
		{[]string{"?2"}, false, false},
		{[]string{"true"}, false, false},
		{[]string{"1"}, false, false},
		{[]string{"?1, ?0"}, false, false},
		{[]string{"?1", "?1"}, false, false},
		{nil, false, false},
	} {
		if b, ok := sfBool(header("Upload-Complete", tc.values...), "Upload-Complete"); b != tc.b || ok != tc.ok {
			t.Errorf("sfBool(%q) = %v, %v; want %v, %v", tc.values, b, ok, tc.b, tc.ok)
		}
	}
	for _, tc := range []struct {
		values []string
		n      int64
		ok     bool
	}{
		{[]string{"0"}, 0, true},
		{[]string{"123456789012345"}, 123456789012345, true},
		{[]string{"007"}, 7, true},
		{[]string{"5;x=1"}, 5, true},
		{[]string{"1234567890123456"}, 0, false}, // 16 digits
		{[]string{"-1"}, 0, false},
		{[]string{"+1"}, 0, false},
		{[]string{"1.5"}, 0, false},
		{[]string{""}, 0, false},
		{[]string{"1", "2"}, 0, false},
	} {
		if n, ok := sfUint(header("Upload-Offset", tc.values...), "Upload-Offset"); n != tc.n || ok != tc.ok {
			t.Errorf("sfUint(%q) = %d, %v; want %d, %v", tc.values, n, ok, tc.n, tc.ok)
		}
	}
}

func TestVersion(t *testing.T) {
	for v, want := range map[string]string{"7": "7", "8": "8", " 8 ": "8", "8;a=1": "8", "6": "", "9": "", "": "", "8, 7": ""} {
		r := httptest.NewRequest("HEAD", "/x", nil)
		if v != "" {
			r.Header.Set("Upload-Draft-Interop-Version", v)
		}
		if got := Version(r); got != want {
			t.Errorf("Version(%q) = %q, want %q", v, got, want)
		}
	}
}

func TestLimits(t *testing.T) {
	h := New(Config{MaxSize: 1 << 30, TTL: 2 * time.Hour})
	if got := h.limits(nil, time.Time{}); got != "min-size=0,max-size=1073741824,min-append-size=0,max-append-size=1073741824,max-age=7200" {
		t.Errorf("limits of a new upload: %q", got)
	}
	info := handler.FileInfo{Size: 10, Offset: 3}
	if got := h.limits(&info, time.Now().Add(90*time.Second+500*time.Millisecond)); got != "min-size=0,max-size=1073741824,min-append-size=0,max-append-size=1073741824,max-age=90" {
		t.Errorf("limits of an upload expiring in 90s: %q", got)
	}
	if got := h.limits(&info, time.Now().Add(-time.Minute)); got != "min-size=0,max-size=1073741824,min-append-size=0,max-append-size=1073741824,max-age=0" {
		t.Errorf("limits of an upload past its expiry: %q", got)
	}
	if got := h.limits(&info, time.Time{}); got != "min-size=0,max-size=1073741824,min-append-size=0,max-append-size=1073741824" {
		t.Errorf("limits of an upload that does not expire: %q", got)
	}
	if got := New(Config{}).limits(nil, time.Time{}); got != "min-size=0,min-append-size=0" {
		t.Errorf("limits without any: %q", got)
	}
}

func TestURL(t *testing.T) {
	r := httptest.NewRequest("POST", "http://gate.example:80/files/", nil)
	r.Header.Set("X-Forwarded-Host", "uploads.example")
	r.Header.Set("X-Forwarded-Proto", "https")
	if got := New(Config{BasePath: "/files/"}).url(r, "o/a"); got != "http://gate.example/files/o/a" {
		t.Errorf("url without --behind-proxy: %q", got)
	}
	if got := New(Config{BasePath: "/files/", BehindProxy: true}).url(r, "o/a"); got != "https://uploads.example/files/o/a" {
		t.Errorf("url behind a proxy: %q", got)
	}
	r.Header.Set("Forwarded", `for=1.2.3.4;host="other.example:443";proto=https`)
	if got := New(Config{BasePath: "/up/", BehindProxy: true}).url(r, "x"); got != "https://other.example/up/x" {
		t.Errorf("url with Forwarded: %q", got)
	}
}
