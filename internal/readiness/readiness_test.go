package readiness

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestChecker(t *testing.T) {
	c := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	down := errors.New("connection refused")
	probeErr := make(chan error, 1)
	probeErr <- nil
	c.Add("s3", func(context.Context) error { return <-probeErr }, down)

	w := httptest.NewRecorder()
	c.Detailed().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != 503 || w.Body.String() != "s3: connection refused\n" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("not ready: %d %q", w.Code, w.Body.String())
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go c.Run(ctx, time.Hour) // the failing state is re-probed after 1s
	deadline := time.Now().Add(5 * time.Second)
	for c.Err("s3") != nil {
		if time.Now().After(deadline) {
			t.Fatal("probe never succeeded")
		}
		time.Sleep(10 * time.Millisecond) // polling a condition with a deadline
	}
	if ok, reason := c.Status(); !ok || reason != "ok" {
		t.Fatalf("ready: %v %q", ok, reason)
	}
	c.SetShuttingDown()
	if ok, reason := c.Status(); ok || reason != "shutting down" {
		t.Fatalf("shutting down: %v %q", ok, reason)
	}
}

// The public answer names the dependency and its state, never the error,
// which may hold endpoints and addresses; the detailed one has the error.
func TestPublicAnswerHidesDetails(t *testing.T) {
	c := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Add("data-dir", func(context.Context) error { return nil }, nil)
	c.Add("s3", func(context.Context) error { return nil }, errors.New("S3 at https://10.1.2.3:9000 is unreachable: dial tcp 10.1.2.3:9000: connection refused"))
	c.AddLive("oidc", func() error { return nil })

	w := httptest.NewRecorder()
	c.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != 503 || w.Body.String() != "s3: unavailable\n" || w.Header().Get("Retry-After") == "" {
		t.Fatalf("public answer: %d %q", w.Code, w.Body.String())
	}
	w = httptest.NewRecorder()
	c.Detailed().ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
	if w.Code != 503 || !strings.HasPrefix(w.Body.String(), "s3: S3 at https://10.1.2.3:9000 is unreachable") || w.Header().Get("Retry-After") == "" {
		t.Fatalf("detailed answer: %d %q", w.Code, w.Body.String())
	}

	c.Set("s3", nil)
	for _, h := range []http.Handler{c, c.Detailed()} {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		if w.Code != 200 || w.Body.String() != "ok\n" {
			t.Fatalf("ready: %d %q", w.Code, w.Body.String())
		}
	}
	c.SetShuttingDown()
	for _, h := range []http.Handler{c, c.Detailed()} {
		w = httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		if w.Code != 503 || w.Body.String() != "shutting down\n" {
			t.Fatalf("shutting down: %d %q", w.Code, w.Body.String())
		}
	}
}

// Notes leave the state ready and appear only in the detailed answer,
// under its status line, while their text is not empty.
func TestNotes(t *testing.T) {
	c := New(slog.New(slog.NewTextHandler(io.Discard, nil)))
	c.Add("s3", func(context.Context) error { return nil }, nil)
	text := ""
	c.AddNote("s3", func() string { return text })
	answer := func(h http.Handler) (int, string) {
		w := httptest.NewRecorder()
		h.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
		return w.Code, w.Body.String()
	}
	if code, body := answer(c.Detailed()); code != 200 || body != "ok\n" {
		t.Fatalf("no note: %d %q", code, body)
	}
	text = "finished objects get no full-object checksum"
	if code, body := answer(c.Detailed()); code != 200 || body != "ok\ns3: finished objects get no full-object checksum\n" {
		t.Fatalf("detailed with a note: %d %q", code, body)
	}
	if code, body := answer(c); code != 200 || body != "ok\n" {
		t.Fatalf("public with a note: %d %q", code, body)
	}
	c.Set("s3", errors.New("down"))
	if code, body := answer(c.Detailed()); code != 503 || body != "s3: down\ns3: finished objects get no full-object checksum\n" {
		t.Fatalf("not ready with a note: %d %q", code, body)
	}
}
