package server

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"testing"

	"github.com/tusgate/tusgate/internal/webhook"
)

// fakeSums answers ObjectChecksum from a map and records the IDs asked.
type fakeSums struct {
	mu   sync.Mutex
	sums map[string]webhook.Checksum
	err  error
	ids  []string
}

func (f *fakeSums) ObjectChecksum(_ context.Context, id string) (webhook.Checksum, bool, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.ids = append(f.ids, id)
	sum, ok := f.sums[id]
	return sum, ok, f.err
}

// headAnswer answers like tusd's HEAD: status and the offset headers.
func headAnswer(status int, offset, length string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Upload-Offset", offset)
		if length != "" {
			w.Header().Set("Upload-Length", length)
		}
		w.WriteHeader(status)
	})
}

func TestObjectChecksumHeader(t *testing.T) {
	src := &fakeSums{sums: map[string]webhook.Checksum{"owner/abc+mp": {Algorithm: "crc32", Value: "NSRBwg==", Type: "FULL_OBJECT"}}}
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name           string
		method         string
		header         map[string]string
		status         int
		offset, length string
		want           string
		asked          bool
	}{
		{"finished, tus 1.0", http.MethodHead, nil, 200, "3", "3", "crc32 NSRBwg==", true},
		{"finished, IETF draft", http.MethodHead, nil, 204, "3", "3", "crc32 NSRBwg==", true},
		{"method override", http.MethodPost, map[string]string{"X-HTTP-Method-Override": "HEAD"}, 200, "3", "3", "crc32 NSRBwg==", true},
		{"unfinished", http.MethodHead, nil, 200, "2", "3", "", false},
		{"deferred length", http.MethodHead, nil, 200, "2", "", "", false},
		{"not found", http.MethodHead, nil, 404, "", "", "", false},
		{"PATCH", http.MethodPatch, nil, 204, "3", "3", "", false},
	} {
		t.Run(c.name, func(t *testing.T) {
			src.ids = nil
			w := serve(objectChecksum(src, log, headAnswer(c.status, c.offset, c.length)), c.method, "/owner/abc+mp", c.header)
			if got := w.Header().Get(objectChecksumHeader); got != c.want || w.Code != c.status {
				t.Errorf("%d %s %q, want %d %q", w.Code, objectChecksumHeader, got, c.status, c.want)
			}
			if asked := len(src.ids) > 0; asked != c.asked || (asked && src.ids[0] != "owner/abc+mp") {
				t.Errorf("looked up %v", src.ids)
			}
		})
	}
	// An object without a full-object checksum, or a failed lookup: the
	// answer is unchanged.
	src.sums = nil
	if w := serve(objectChecksum(src, log, headAnswer(200, "3", "3")), http.MethodHead, "/owner/abc+mp", nil); w.Code != 200 || w.Header().Get(objectChecksumHeader) != "" {
		t.Errorf("no checksum: %d %q", w.Code, w.Header().Get(objectChecksumHeader))
	}
	src.err = errors.New("S3 down")
	if w := serve(objectChecksum(src, log, headAnswer(200, "3", "3")), http.MethodHead, "/owner/abc+mp", nil); w.Code != 200 || w.Header().Get(objectChecksumHeader) != "" {
		t.Errorf("failed lookup: %d %q", w.Code, w.Header().Get(objectChecksumHeader))
	}
}

// Pages on other origins can read the header.
func TestObjectChecksumHeaderExposed(t *testing.T) {
	if !strings.Contains(corsExposeHeaders, objectChecksumHeader) {
		t.Fatalf("%s is not in Access-Control-Expose-Headers: %s", objectChecksumHeader, corsExposeHeaders)
	}
}
