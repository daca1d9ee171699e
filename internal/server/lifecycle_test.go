package server

import (
	"context"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
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
		uploadExpires(2*time.Hour, func() time.Time { return now }, next).ServeHTTP(w, httptest.NewRequest(tc.method, "/files/x", nil))
		if got := w.Header().Get("Upload-Expires"); got != tc.header || w.Code != tc.status {
			t.Errorf("%s %d finished=%v: Upload-Expires %q (status %d), want %q", tc.method, tc.status, tc.finished, got, w.Code, tc.header)
		}
	}

	opts := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Tus-Extension", "creation,termination")
		w.WriteHeader(http.StatusNoContent)
	})
	w := httptest.NewRecorder()
	uploadExpires(time.Hour, time.Now, opts).ServeHTTP(w, httptest.NewRequest("OPTIONS", "/files/", nil))
	if got := w.Header().Get("Tus-Extension"); got != "creation,termination,expiration" {
		t.Errorf("Tus-Extension %q", got)
	}
	if finishedFrom(context.Background()) != nil {
		t.Error("finishedFrom outside a request is not nil")
	}
	finishedFrom(context.Background()).set() // must not panic
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
