package integration

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// draft is the header set of an IETF-draft request (interop version 6).
var draft = map[string]string{"Upload-Draft-Interop-Version": "6"}

// chunked hides a body's length, so that it is sent without Content-Length.
func chunked(b []byte) io.Reader { return struct{ io.Reader }{bytes.NewReader(b)} }

// tooLarge checks a 413 answer and its tus error code.
func tooLarge(t *testing.T, what string, r response, code string) {
	t.Helper()
	if r.Status != http.StatusRequestEntityTooLarge || !strings.HasPrefix(r.Body, code+": ") {
		t.Fatalf("%s: %d %q, want 413 %s", what, r.Status, r.Body, code)
	}
}

// --max-size holds for uploads whose length is not known yet: tus 1.0
// deferred lengths (PATCH and creation-with-upload, with and without
// Content-Length) and IETF-draft uploads created with Upload-Complete: ?0.
// A write past the limit answers 413, nothing past the limit is stored,
// and the upload can be finished from where it stands.
func TestMaxSizeHoldsForDeferredLengths(t *testing.T) {
	const limit = 1 * MiB
	data, _ := payload(3*MiB, 80)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t, "--max-size", "1MiB")
		defer func() {
			if t.Failed() {
				t.Log(tail(g.LogPath, 40))
			}
		}()

		// finish sends the rest of data[:limit] from the upload's offset,
		// declaring the length, and checks what is stored.
		finish := func(t *testing.T, loc string) {
			t.Helper()
			off := headOffset(t, loc)
			if off > limit {
				t.Fatalf("HEAD: offset %d past --max-size %d", off, limit)
			}
			r := do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream",
				"Upload-Offset", strconv.FormatInt(off, 10), "Upload-Length", strconv.Itoa(limit)), bytes.NewReader(data[off:limit]))
			if r.Status != http.StatusNoContent {
				t.Fatalf("finishing PATCH from %d: %d %s", off, r.Status, r.Body)
			}
			b.assertStored(t, loc, sha256Hex(data[:limit]), limit)
		}
		deferred := func(t *testing.T) string {
			t.Helper()
			r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Defer-Length", "1"), nil)
			if r.Status != http.StatusCreated {
				t.Fatalf("create: %d %s", r.Status, r.Body)
			}
			return r.Header.Get("Location")
		}

		t.Run("PATCH", func(t *testing.T) {
			loc := deferred(t)
			tooLarge(t, "3 MiB PATCH", patch(t, loc, 0, data), "ERR_MAX_SIZE_EXCEEDED")
			if off := headOffset(t, loc); off != 0 {
				t.Fatalf("HEAD after the refused PATCH: offset %d, want 0", off)
			}
			if r := patch(t, loc, 0, data[:MiB/2]); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH within the limit: %d %s", r.Status, r.Body)
			}
			tooLarge(t, "PATCH past the limit", patch(t, loc, MiB/2, data[MiB/2:MiB/2+MiB/2+1]), "ERR_MAX_SIZE_EXCEEDED")
			if off := headOffset(t, loc); off != MiB/2 {
				t.Fatalf("HEAD after the refused PATCH: offset %d, want %d", off, MiB/2)
			}
			finish(t, loc)
		})

		t.Run("PATCH without Content-Length", func(t *testing.T) {
			loc := deferred(t)
			r := do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), chunked(data))
			if r.Status != http.StatusRequestEntityTooLarge {
				t.Fatalf("chunked 3 MiB PATCH: %d %q, want 413", r.Status, r.Body)
			}
			finish(t, loc)
		})

		t.Run("creation with upload", func(t *testing.T) {
			r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Defer-Length", "1", "Content-Type", "application/offset+octet-stream"), bytes.NewReader(data))
			tooLarge(t, "3 MiB creation-with-upload", r, "ERR_MAX_SIZE_EXCEEDED")
		})

		t.Run("IETF draft", func(t *testing.T) {
			// Every interop version tusd serves; 3 says "incomplete" its own way.
			for _, h := range []map[string]string{
				{"Upload-Draft-Interop-Version": "3", "Upload-Incomplete": "?1"},
				{"Upload-Draft-Interop-Version": "4", "Upload-Complete": "?0"},
				{"Upload-Draft-Interop-Version": "5", "Upload-Complete": "?0"},
				{"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?0"},
			} {
				r := do(t, "POST", g.URL+"/files/", h, bytes.NewReader(data))
				tooLarge(t, "3 MiB incomplete draft creation, interop version "+h["Upload-Draft-Interop-Version"], r, "ERR_MAX_SIZE_EXCEEDED")
			}

			r := do(t, "POST", g.URL+"/files/", with(draft, "Upload-Complete", "?0"), bytes.NewReader(data[:MiB/2]))
			if r.Status != http.StatusCreated {
				t.Fatalf("draft creation within the limit: %d %s", r.Status, r.Body)
			}
			loc := r.Header.Get("Location")
			appendTo := func(from, to int) response {
				return do(t, "PATCH", loc, with(draft, "Upload-Complete", "?1", "Content-Type", "application/partial-upload",
					"Upload-Offset", strconv.Itoa(from)), bytes.NewReader(data[from:to]))
			}
			tooLarge(t, "draft append past the limit", appendTo(MiB/2, 2*MiB), "ERR_MAX_SIZE_EXCEEDED")
			if off := headOffset(t, loc); off != MiB/2 {
				t.Fatalf("HEAD after the refused append: offset %d, want %d", off, MiB/2)
			}
			if r := appendTo(MiB/2, limit); r.Status != http.StatusNoContent {
				t.Fatalf("draft append up to the limit: %d %s", r.Status, r.Body)
			}
			b.assertStored(t, loc, sha256Hex(data[:limit]), limit)
		})
	})
}

// Under --quota-bytes every upload declares its length when it is created
// (deferred lengths are refused), so what an upload can hold is counted
// before it holds it. IETF-draft clients declare it with Upload-Length.
func TestByteQuotaNeedsDeclaredLengths(t *testing.T) {
	a := startAuth(t, diskBackend(t), "--quota-bytes", "1MiB")
	tok := bearer(a.token(t, "rsa1", "erin"))
	r := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Defer-Length", "1"), nil)
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Body, "ERR_QUOTA_NEEDS_LENGTH") {
		t.Fatalf("tus deferred length: %d %q", r.Status, r.Body)
	}
	draftTok := with(tok, "Upload-Draft-Interop-Version", "6", "Upload-Complete", "?0")
	r = do(t, "POST", a.g.URL+"/files/", draftTok, strings.NewReader("abc"))
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Body, "ERR_QUOTA_NEEDS_LENGTH") {
		t.Fatalf("draft creation with Upload-Complete: ?0: %d %q", r.Status, r.Body)
	}
	r = do(t, "POST", a.g.URL+"/files/", with(draftTok, "Upload-Length", "2000000"), strings.NewReader("abc"))
	if r.Status != http.StatusRequestEntityTooLarge || !strings.HasPrefix(r.Body, "ERR_QUOTA_BYTES") {
		t.Fatalf("draft creation over the quota: %d %q", r.Status, r.Body)
	}
	r = do(t, "POST", a.g.URL+"/files/", with(draftTok, "Upload-Length", "6"), strings.NewReader("abc"))
	if r.Status != http.StatusCreated {
		t.Fatalf("draft creation with Upload-Length: %d %q", r.Status, r.Body)
	}
}
