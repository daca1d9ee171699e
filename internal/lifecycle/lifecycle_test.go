package lifecycle

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/diskbackend"
	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/safestore"
)

func TestUploadExpiresHeader(t *testing.T) {
	now := time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)
	want := now.Add(2 * time.Hour).Format(http.TimeFormat)
	for _, tc := range []struct {
		method   string
		status   int
		finished bool
		header   string
	}{
		{"POST", http.StatusCreated, false, want},
		{"PATCH", http.StatusNoContent, false, want},
		{"PATCH", http.StatusNoContent, true, ""}, // finished: nothing expires
		{"POST", http.StatusCreated, true, ""},
		{"PATCH", http.StatusConflict, false, ""},
		{"HEAD", http.StatusOK, false, ""},
	} {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.finished {
				finishedFrom(r.Context()).set()
			}
			w.WriteHeader(tc.status)
		})
		w := httptest.NewRecorder()
		UploadExpires(2*time.Hour, func() time.Time { return now }, nil, next).ServeHTTP(w, httptest.NewRequest(tc.method, "/files/x", nil))
		if got := w.Header().Get("Upload-Expires"); got != tc.header || w.Code != tc.status {
			t.Errorf("%s %d finished=%v: Upload-Expires %q (status %d), want %q", tc.method, tc.status, tc.finished, got, w.Code, tc.header)
		}
	}

	opts := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tus-Extension", "creation,termination")
		w.WriteHeader(http.StatusNoContent)
	})
	w := httptest.NewRecorder()
	UploadExpires(time.Hour, time.Now, nil, opts).ServeHTTP(w, httptest.NewRequest("OPTIONS", "/files/", nil))
	if got := w.Header().Get("Tus-Extension"); got != "creation,termination,expiration" {
		t.Errorf("Tus-Extension %q", got)
	}
	if finishedFrom(context.Background()) != nil {
		t.Error("finishedFrom outside a request is not nil")
	}
	finishedFrom(context.Background()).set() // must not panic
}

func TestUploadExpiresOnHead(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	var asked []string
	expiresAt := func(_ context.Context, id string) (time.Time, bool, error) {
		asked = append(asked, id)
		switch id {
		case "owner/gone":
			return time.Time{}, false, nil
		case "owner/broken":
			return time.Time{}, false, errors.New("S3 down")
		}
		return at, true, nil
	}
	for _, tc := range []struct {
		path    string
		status  int
		headers []string
		want    string
	}{
		{"/owner/up", http.StatusOK, []string{"Upload-Offset", "3", "Upload-Length", "10"}, at.Format(http.TimeFormat)},
		{"/owner/up/", http.StatusOK, []string{"Upload-Offset", "3", "Upload-Defer-Length", "1"}, at.Format(http.TimeFormat)},
		{"/owner/up", http.StatusOK, []string{"Upload-Offset", "10", "Upload-Length", "10"}, ""},       // finished
		{"/owner/up", http.StatusNoContent, []string{"Upload-Offset", "3", "Upload-Length", "10"}, ""}, // IETF draft
		{"/owner/up", http.StatusNotFound, nil, ""},
		{"/owner/gone", http.StatusOK, []string{"Upload-Offset", "3", "Upload-Length", "10"}, ""},
		{"/owner/broken", http.StatusOK, []string{"Upload-Offset", "3", "Upload-Length", "10"}, ""},
	} {
		asked = nil
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			for i := 0; i+1 < len(tc.headers); i += 2 {
				w.Header().Set(tc.headers[i], tc.headers[i+1])
			}
			w.WriteHeader(tc.status)
		})
		w := httptest.NewRecorder()
		UploadExpires(time.Hour, time.Now, expiresAt, next).ServeHTTP(w, httptest.NewRequest("HEAD", tc.path, nil))
		if got := w.Header().Get("Upload-Expires"); got != tc.want {
			t.Errorf("HEAD %s %d %v: Upload-Expires %q, want %q", tc.path, tc.status, tc.headers, got, tc.want)
		}
		if tc.want != "" && (len(asked) != 1 || asked[0] != "owner/up") {
			t.Errorf("HEAD %s: looked up %q, want the upload ID owner/up", tc.path, asked)
		}
	}
}

func TestUploadExpiresOnRefusedPatch(t *testing.T) {
	at := time.Date(2026, 11, 26, 9, 30, 0, 0, time.UTC)
	expiresAt := func(context.Context, string) (time.Time, bool, error) { return at, true, nil }
	for _, tc := range []struct {
		name   string
		status int
		read   *handler.FileInfo // what the store read in the request
		want   string
	}{
		{"mismatched offset", http.StatusConflict, &handler.FileInfo{ID: "o/up", Size: 10, Offset: 3}, at.Format(http.TimeFormat)},
		{"deferred length", http.StatusRequestEntityTooLarge, &handler.FileInfo{ID: "o/up", SizeIsDeferred: true}, at.Format(http.TimeFormat)},
		{"refused before the store read it", http.StatusBadRequest, nil, ""},
		{"another upload read", http.StatusConflict, &handler.FileInfo{ID: "o/other", Size: 10, Offset: 3}, ""},
		{"finished", http.StatusConflict, &handler.FileInfo{ID: "o/up", Size: 10, Offset: 10}, ""},
	} {
		next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if tc.read != nil {
				lastinfo.Record(r.Context(), *tc.read)
			}
			w.WriteHeader(tc.status)
		})
		r := httptest.NewRequest("PATCH", "/o/up", nil)
		r = r.WithContext(lastinfo.New(r.Context()))
		w := httptest.NewRecorder()
		UploadExpires(time.Hour, time.Now, expiresAt, next).ServeHTTP(w, r)
		if got := w.Header().Get("Upload-Expires"); got != tc.want {
			t.Errorf("%s: Upload-Expires %q, want %q", tc.name, got, tc.want)
		}
	}
}

func TestCleanMessage(t *testing.T) {
	for in, want := range map[string]string{
		"  not\r\nallowed\t here \x00\x1b[31m": "not allowed here [31m",
		"":                                     "",
		"\xff\xfebad utf8":                     "bad utf8",
	} {
		if got := cleanMessage([]byte(in)); got != want {
			t.Errorf("cleanMessage(%q) = %q, want %q", in, got, want)
		}
	}
	long := cleanMessage([]byte(strings.Repeat("é", 400)))
	if len(long) > 500 || !strings.HasPrefix(long, "éé") || strings.ContainsRune(long, '\uFFFD') {
		t.Errorf("long message: %d bytes", len(long))
	}
}

// approveWith runs the pre-finish call against an application that answers
// with status, content type and body, and returns what was logged at Error
// level and the decision.
func approveWith(t *testing.T, status int, contentType, body string) (logs string, err error) {
	t.Helper()
	app := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if contentType != "" {
			w.Header().Set("Content-Type", contentType)
		}
		w.WriteHeader(status)
		io.WriteString(w, body)
	}))
	defer app.Close()
	return approveAt(t, app.URL+"/approve?token=s3cr3t")
}

func approveAt(t *testing.T, url string) (logs string, err error) {
	t.Helper()
	var buf bytes.Buffer
	log := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelError}))
	disk, err := diskbackend.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	o := Options{Settings: config.Lifecycle{PreFinishURL: url, WebhookTimeout: 2 * time.Second}, Backend: disk}
	l := &Lifecycle{o: o, log: log, clock: clock.Real{}, secret: []byte("0123456789abcdef"), client: &http.Client{Timeout: 2 * time.Second}}
	err = l.approve(t.Context(), url, handler.FileInfo{ID: "owner/0123abcd", Size: 3, Offset: 3})
	return buf.String(), err
}

// Only an explicit rejection (a 4xx with {"reject": true}) deletes an
// upload; every other failure leaves it complete and unassembled, tells the
// client to retry, and is logged as an error.
func TestPreFinishDecision(t *testing.T) {
	const js = "application/json"
	for _, tc := range []struct {
		name        string
		status      int
		contentType string
		body        string
		reject      int    // status the client gets; 0: not a rejection
		message     string // the client's message, when rejected
	}{
		{name: "approve", status: 200},
		{name: "approve, body ignored", status: 204},
		{name: "explicit reject", status: 422, contentType: js, body: `{"reject": true, "message": "executables are not allowed\r\nhere"}`,
			reject: 422, message: "ERR_UPLOAD_REJECTED: executables are not allowed here"},
		{name: "explicit reject, charset", status: 403, contentType: "application/json; charset=utf-8", body: `{"reject":true}`,
			reject: 403, message: "ERR_UPLOAD_REJECTED: the application rejected this upload"},
		{name: "reject, message bounded", status: 400, contentType: js, body: `{"reject":true,"message":"` + strings.Repeat("a", 900) + `\u0000\u001b"}`,
			reject: 400, message: "ERR_UPLOAD_REJECTED: " + strings.Repeat("a", 500)},
		{name: "mistyped URL", status: 404, contentType: "text/plain", body: "404 page not found"},
		{name: "auth proxy", status: 401, contentType: "text/html", body: "<h1>Unauthorized</h1>"},
		{name: "forbidden by a proxy", status: 403, body: ""},
		{name: "body limit", status: 413, contentType: "text/html", body: "<html>Request Entity Too Large</html>"},
		{name: "4xx with plain text", status: 422, contentType: "text/plain", body: "no"},
		{name: "JSON without reject", status: 422, contentType: js, body: `{"error": "bad"}`},
		{name: "reject false", status: 422, contentType: js, body: `{"reject": false, "message": "x"}`},
		{name: "reject as a string", status: 422, contentType: js, body: `{"reject": "true"}`},
		{name: "JSON body, wrong type", status: 422, contentType: "text/plain", body: `{"reject": true}`},
		{name: "unparsable JSON", status: 422, contentType: js, body: `{"reject": true,`},
		{name: "retryable 429", status: 429, contentType: js, body: `{"reject": true}`},
		{name: "retryable 409", status: 409, contentType: js, body: `{"reject": true}`},
		{name: "server error", status: 500, contentType: js, body: `{"reject": true}`},
		{name: "bad gateway", status: 502},
		{name: "2xx that says reject", status: 200, contentType: js, body: `{"reject": true, "message": "no"}`},
		{name: "redirect", status: 302},
	} {
		t.Run(tc.name, func(t *testing.T) {
			logs, err := approveWith(t, tc.status, tc.contentType, tc.body)
			var rej *safestore.Rejection
			switch {
			case tc.status/100 == 2 && tc.body == "":
				if err != nil {
					t.Fatalf("approval: %v", err)
				}
			case tc.reject != 0:
				if !errors.As(err, &rej) {
					t.Fatalf("want a rejection, got %v", err)
				}
				resp := rej.Err.HTTPResponse
				if resp.StatusCode != tc.reject || resp.Body != tc.message+"\n" {
					t.Fatalf("rejection answers %d %q, want %d %q", resp.StatusCode, resp.Body, tc.reject, tc.message+"\n")
				}
			default:
				if errors.As(err, &rej) {
					t.Fatalf("rejected (%d %q); want the upload kept", rej.Err.HTTPResponse.StatusCode, rej.Err.HTTPResponse.Body)
				}
				var tusErr handler.Error
				if !errors.As(err, &tusErr) || tusErr.HTTPResponse.StatusCode != http.StatusServiceUnavailable || tusErr.HTTPResponse.Header["Retry-After"] == "" {
					t.Fatalf("want 503 with Retry-After, got %v", err)
				}
				if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "id=owner/0123abcd") || !strings.Contains(logs, "status="+strconv.Itoa(tc.status)) {
					t.Fatalf("not logged as an error with the upload ID and status: %q", logs)
				}
				if strings.Contains(logs, "s3cr3t") {
					t.Fatalf("the log shows the URL's token: %q", logs)
				}
			}
		})
	}
}

// An application that does not answer at all is not a rejection either,
// and the log does not show the URL (it may carry a token).
func TestPreFinishNoAnswer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	logs, err := approveAt(t, "http://"+addr+"/approve?token=s3cr3t")
	var tusErr handler.Error
	if !errors.As(err, &tusErr) || tusErr.HTTPResponse.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("want 503, got %v", err)
	}
	if !strings.Contains(logs, "level=ERROR") || !strings.Contains(logs, "id=owner/0123abcd") || strings.Contains(logs, "s3cr3t") {
		t.Fatalf("log: %q", logs)
	}
}
