package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

var eventIDPattern = regexp.MustCompile(`^evt_[a-z2-7]{26}$`)

func TestNewEventID(t *testing.T) {
	seen := map[string]bool{}
	for range 1000 {
		id := NewEventID()
		if !eventIDPattern.MatchString(id) {
			t.Fatalf("NewEventID() = %q, want evt_ + 26 of [a-z2-7]", id)
		}
		if seen[id] {
			t.Fatalf("NewEventID() repeated %q", id)
		}
		seen[id] = true
	}
}

func TestStableEventID(t *testing.T) {
	sum := sha256.Sum256([]byte("expired\nuploads/abc"))
	want := "evt_" + strings.ToLower(base32.StdEncoding.EncodeToString(sum[:16])[:26])
	if got := StableEventID("expired", "uploads/abc"); got != want {
		t.Errorf("StableEventID = %q, want %q", got, want)
	}
	if StableEventID("finished", "uploads/abc") == want || StableEventID("expired\nuploads", "abc") == want {
		t.Error("StableEventID ignores the kind or where it ends")
	}
	if !eventIDPattern.MatchString(want) {
		t.Errorf("StableEventID = %q, want evt_ + 26 of [a-z2-7]", want)
	}
}

func TestRecordID(t *testing.T) {
	sum := sha256.Sum256([]byte("https://hooks.example/a"))
	want := "evt_x-" + hex.EncodeToString(sum[:])[:8]
	if got := recordID("evt_x", "https://hooks.example/a"); got != want {
		t.Errorf("recordID = %q, want %q", got, want)
	}
	long := strings.Repeat("a", maxEventIDLen)
	if err := checkRecordID(recordID(long, "u")); err != nil {
		t.Errorf("longest record ID rejected: %v", err)
	}
	for _, bad := range []string{"", "../x", "a/b", "a.json", "a b", "ä", strings.Repeat("a", maxRecordIDLen+1)} {
		if checkRecordID(bad) == nil {
			t.Errorf("checkRecordID(%q) accepted", bad)
		}
	}
}

func TestUploadMetadataNeverNull(t *testing.T) {
	b, err := json.Marshal(Event{ID: "evt_1", Type: TypeCreated, Upload: Upload{ID: "u"}})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"metadata":{}`) {
		t.Errorf("nil metadata marshalled as %s", b)
	}
	for _, absent := range []string{"owner", "expires", "size_is_deferred", "partial_uploads", "bucket"} {
		if strings.Contains(string(b), `"`+absent+`"`) {
			t.Errorf("empty %s present in %s", absent, b)
		}
	}
	var back Event
	if err := json.Unmarshal(b, &back); err != nil || back.Upload.MetaData == nil {
		t.Errorf("round trip: %v, metadata %v", err, back.Upload.MetaData)
	}
}

// hmacHex computes the expected signature without using Sign.
func hmacHex(secret, msg string) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write([]byte(msg))
	return hex.EncodeToString(m.Sum(nil))
}

func TestSignKnownVector(t *testing.T) {
	body := []byte(`{"id":"evt_1"}`)
	want := "v1=" + hmacHex("s3cret", `1700000000.{"id":"evt_1"}`)
	if got := Sign([]byte("s3cret"), 1700000000, body); got != want {
		t.Errorf("Sign = %q, want %q", got, want)
	}
}

func TestVerify(t *testing.T) {
	secret := []byte("s3cret")
	body := []byte(`{"id":"evt_1","type":"upload.created"}`)
	now := time.Unix(1700000000, 0)
	const tol = 5 * time.Minute
	headers := func(ts int64, sig string) http.Header {
		h := http.Header{}
		h.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
		if sig != "" {
			h.Set(HeaderSignature, sig)
		}
		return h
	}
	good := Sign(secret, now.Unix(), body)
	other := Sign([]byte("old secret"), now.Unix(), body)

	ok := []struct {
		name string
		h    http.Header
		now  time.Time
	}{
		{"exact", headers(now.Unix(), good), now},
		{"receiver ahead within tolerance", headers(now.Unix(), good), now.Add(tol)},
		{"receiver behind within tolerance", headers(now.Unix(), good), now.Add(-tol)},
		{"several values, match last", headers(now.Unix(), other+", "+good), now},
		{"several values, match first", headers(now.Unix(), good+","+other), now},
		{"unknown scheme beside", headers(now.Unix(), "v0=abc,"+good), now},
	}
	for _, c := range ok {
		if err := Verify(secret, c.h, body, c.now, tol); err != nil {
			t.Errorf("%s: %v", c.name, err)
		}
	}
	repeated := headers(now.Unix(), other)
	repeated.Add(HeaderSignature, good)
	if err := Verify(secret, repeated, body, now, tol); err != nil {
		t.Errorf("signature in a second header line: %v", err)
	}

	bad := []struct {
		name string
		h    http.Header
		body []byte
		key  []byte
		now  time.Time
		want error
	}{
		{"tampered body", headers(now.Unix(), good), []byte(`{"id":"evt_2","type":"upload.created"}`), secret, now, ErrBadSignature},
		{"wrong secret", headers(now.Unix(), good), body, []byte("guess"), now, ErrBadSignature},
		{"stale", headers(now.Unix(), good), body, secret, now.Add(tol + time.Second), ErrBadTimestamp},
		{"future", headers(now.Unix(), good), body, secret, now.Add(-tol - time.Second), ErrBadTimestamp},
		{"timestamp not signed one", headers(now.Unix()+1, good), body, secret, now, ErrBadSignature},
		{"no signature", headers(now.Unix(), ""), body, secret, now, ErrBadSignature},
		{"no v1 signature", headers(now.Unix(), "v0="+good[3:]), body, secret, now, ErrBadSignature},
		{"upper-case hex", headers(now.Unix(), strings.ToUpper(good)), body, secret, now, ErrBadSignature},
		{"no timestamp", http.Header{HeaderSignature: {good}}, body, secret, now, ErrBadTimestamp},
		{"timestamp not a number", http.Header{HeaderTimestamp: {"yesterday"}, HeaderSignature: {good}}, body, secret, now, ErrBadTimestamp},
	}
	for _, c := range bad {
		err := Verify(c.key, c.h, c.body, c.now, tol)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: Verify = %v, want %v", c.name, err, c.want)
		}
	}
}

func TestCall(t *testing.T) {
	secret := []byte("s3cret")
	now := time.Unix(1700000000, 0)
	ev := Event{ID: "evt_call", Type: TypePreFinish, Time: now, Upload: Upload{ID: "u1", Size: 3}}
	var redirected bool
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/approve":
			body, _ := io.ReadAll(r.Body)
			if err := Verify(secret, r.Header, body, now, time.Minute); err != nil {
				http.Error(w, err.Error(), http.StatusUnauthorized)
				return
			}
			if r.Header.Get("User-Agent") != "tusgate-test" || r.Header.Get("Authorization") != "" {
				http.Error(w, "bad headers", http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(strings.Repeat("x", 10000)))
		case "/redirect":
			http.Redirect(w, r, "/elsewhere", http.StatusFound)
		default:
			redirected = true
		}
	}))
	defer srv.Close()

	reply, err := Call(t.Context(), nil, srv.URL+"/approve", secret, ev, now, "tusgate-test")
	if err != nil || reply.Status != http.StatusForbidden || len(reply.Body) != 4096 || reply.ContentType != "application/json" {
		t.Errorf("Call = %d %q, %d bytes, %v; want 403 application/json, 4096 bytes, nil", reply.Status, reply.ContentType, len(reply.Body), err)
	}
	reply, err = Call(t.Context(), nil, srv.URL+"/redirect", secret, ev, now, "tusgate-test")
	if err != nil || reply.Status != http.StatusFound || redirected {
		t.Errorf("redirect: status %d, err %v, followed %v; want 302 not followed", reply.Status, err, redirected)
	}
	if _, err := Call(t.Context(), nil, "http://user:pw@127.0.0.1:1/", secret, ev, now, "x"); err == nil || strings.Contains(err.Error(), "pw") {
		t.Errorf("URL with credentials: %v", err)
	}
	if _, err := Call(t.Context(), nil, "http://127.0.0.1:1/", secret, ev, now, "x"); err == nil {
		t.Error("no transport error from a closed port")
	}
}
