package readiness

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
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
	c.ServeHTTP(w, httptest.NewRequest("GET", "/readyz", nil))
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
