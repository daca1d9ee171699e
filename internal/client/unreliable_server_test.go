package client

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusgate/tusgate/internal/client/resume"
)

// A server that answers HEAD with an Upload-Offset beyond the upload's
// length (or the file's size) lies: the client must not call the file
// stored.
func TestHeadOffsetBeyondLengthIsNotSuccess(t *testing.T) {
	for _, tc := range []struct {
		name       string
		withLength bool
	}{{"with Upload-Length", true}, {"without Upload-Length", false}} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTus(t)
			store := resume.NewStore(t.TempDir())
			data := randomBytes(2*MiB, 21)
			path := writeTemp(t, "lie.bin", data)
			id, _ := resume.Identify(path)
			c, _ := newTestClient(t, f, func(o *Options) { o.Records = store })
			url, err := c.create(context.Background(), creation{length: id.Size})
			if err != nil {
				t.Fatal(err)
			}
			if err := store.Save(resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Whole, Parts: 1, End: id.Size, URL: url}); err != nil {
				t.Fatal(err)
			}
			f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if r.Method != http.MethodHead {
					return false
				}
				w.Header().Set("Tus-Resumable", "1.0.0")
				w.Header().Set("Upload-Offset", strconv.FormatInt(id.Size+100, 10))
				if tc.withLength {
					w.Header().Set("Upload-Length", strconv.FormatInt(id.Size, 10))
				}
				w.WriteHeader(http.StatusOK)
				return true
			}
			res := uploadOne(t, c, path, nil)
			if res.Err == nil {
				t.Fatalf("a HEAD offset of %d for a %d-byte file was taken as stored (URL %s; the server holds %v)", id.Size+100, id.Size, res.URL, f.upload(res.URL))
			}
		})
	}
}

// The same lie mid-transfer: after a failed PATCH, the HEAD says the
// server holds more than the upload's length.
func TestHeadOffsetBeyondLengthAfterFailure(t *testing.T) {
	lyingHeadAfterFailure(t, 22, 5*MiB, 3*MiB)
}

// After a failure, a HEAD whose Upload-Length differs from the file's size
// (a different upload, or a server that lost track) must not end the file
// as stored.
func TestHeadShorterLengthAfterFailure(t *testing.T) {
	lyingHeadAfterFailure(t, 23, MiB, MiB)
}

// lyingHeadAfterFailure uploads a 3 MiB file whose second PATCH fails, to
// a server whose HEAD then answers offset and length; the upload must not
// end as stored.
func lyingHeadAfterFailure(t *testing.T, seed uint64, offset, length int) {
	t.Helper()
	f := newFakeTus(t)
	data := randomBytes(3*MiB, seed)
	patches := 0
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		switch r.Method {
		case http.MethodPatch:
			patches++
			if patches == 2 {
				http.Error(w, "busy", http.StatusServiceUnavailable)
				return true
			}
		case http.MethodHead:
			w.Header().Set("Upload-Offset", strconv.Itoa(offset))
			w.Header().Set("Upload-Length", strconv.Itoa(length))
			w.WriteHeader(http.StatusOK)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f, nil)
	res := uploadOne(t, c, writeTemp(t, "lie.bin", data), nil)
	if res.Err == nil {
		t.Fatalf("stored? the server holds %v", f.upload(res.URL))
	}
}

// A server that answers every PATCH with 204 but keeps nothing (the same
// Upload-Offset) must not keep the client sending for ever.
func TestPatchWithoutProgressGivesUp(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(2*MiB, 24)
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		w.Header().Set("Upload-Offset", r.Header.Get("Upload-Offset"))
		w.WriteHeader(http.StatusNoContent)
		return true
	}
	c, _ := newTestClient(t, f, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var res Result
	c.Upload(ctx, Input{Files: []string{writeTemp(t, "stuck.bin", data)}}, func(_ int, r Result) { res = r })
	if ctx.Err() != nil {
		t.Fatalf("still sending after 5 s to a server that keeps nothing (%d requests)", strings.Count(f.requestLog(), "PATCH"))
	}
	if res.Err == nil {
		t.Fatal("stored?")
	}
}

// A file sent with --streams whose final upload is complete on the server
// but whose partials were already removed (the client was killed between
// removing the partials and clearing the records) is stored: the next run
// must not send the whole file again as a new upload.
func TestStreamsFinalDoneAfterPartialsRemoved(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(12*MiB, 25)
	path := writeTemp(t, "fin.bin", data)
	store := resume.NewStore(t.TempDir())
	c, _ := newTestClient(t, f, func(o *Options) { o.Streams = 2; o.Records = store })
	id, _ := resume.Identify(path)

	// Reproduce what the killed run left: its records (saved before the
	// records are cleared) and the server's state (final complete,
	// partials removed).
	var saved []resume.Record
	res := uploadOne(t, c, path, nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	f.mu.Lock()
	n := f.next
	f.mu.Unlock()
	for i := range 2 {
		saved = append(saved, resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Partial, Part: i, Parts: 2,
			Start: int64(i) * 6 * MiB, End: int64(i+1) * 6 * MiB, URL: f.endpoint() + strconv.Itoa(i+1)})
	}
	saved = append(saved, resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Final, End: id.Size, URL: res.URL})
	for _, r := range saved {
		if err := store.Save(r); err != nil {
			t.Fatal(err)
		}
	}
	if n != 3 || f.upload(saved[0].URL) != nil || f.upload(res.URL) == nil {
		t.Fatalf("setup: %d uploads made; partial %v; final %v", n, f.upload(saved[0].URL), f.upload(res.URL))
	}

	created, before := f.counts()
	again := uploadOne(t, c, path, nil)
	created2, after := f.counts()
	if again.Err != nil || again.URL != res.URL || created2 != created || after != before {
		t.Fatalf("rerun: %v, URL %q (final %q); %d new uploads, %d bytes sent again", again.Err, again.URL, res.URL, created2-created, after-before)
	}
}

// A file rewritten in place while it is sent (same size, new content) is
// not stored as it is: the client must not report success for a mix of
// old and new bytes.
func TestFileRewrittenDuringUpload(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(3*MiB, 26)
	path := writeTemp(t, "moving.bin", data)
	newer := randomBytes(3*MiB, 27)
	patches := 0
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPatch {
			if patches++; patches == 2 {
				if err := os.WriteFile(path, newer, 0o644); err != nil {
					t.Error(err)
				}
				// make sure the modification time moves on coarse clocks
				later := time.Now().Add(2 * time.Second)
				_ = os.Chtimes(path, later, later)
			}
		}
		return false
	}
	c, _ := newTestClient(t, f, nil)
	res := uploadOne(t, c, path, nil)
	if res.Err == nil {
		u := f.upload(res.URL)
		t.Fatalf("reported stored; the server holds old bytes %t, new bytes %t (a mix)", bytes.Equal(u.data, data), bytes.Equal(u.data, newer))
	}
}

// A file that shrinks while it is sent ends with one clear error, not
// ten transport errors about Content-Length.
func TestFileShrinksDuringUpload(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(3*MiB, 28)
	path := writeTemp(t, "shrink.bin", data)
	patches := 0
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPatch {
			if patches++; patches == 2 {
				if err := os.Truncate(path, MiB+10); err != nil {
					t.Error(err)
				}
			}
		}
		return false
	}
	c, sink := newTestClient(t, f, nil)
	res := uploadOne(t, c, path, nil)
	// At most one failed PATCH (the one whose body came up short).
	if res.Err == nil || !strings.Contains(res.Err.Error(), "changed") || len(sink.retries) > 1 {
		t.Fatalf("error %v after %d retries; want one error saying the file changed", res.Err, len(sink.retries))
	}
}

// Standard input cannot be resumed: an interrupted "-" must not tell the
// user to run the command again to resume.
func TestInterruptedStdinDoesNotClaimResume(t *testing.T) {
	f := newFakeTus(t)
	ctx, cancel := context.WithCancel(context.Background())
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPatch {
			cancel()
			http.Error(w, "gone away", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f, nil)
	var res Result
	c.Upload(ctx, Input{Files: []string{"-"}, Stream: bytes.NewReader(randomBytes(3*MiB, 29)), StreamName: "x"}, func(_ int, r Result) { res = r })
	if res.Err == nil || strings.Contains(res.Err.Error(), "again to resume") {
		t.Fatalf("interrupted stdin: %v", res.Err)
	}
}

// Records of an earlier --streams run against a server that (now) does not
// announce concatenation must not fail every later run the same way.
func TestStreamsRecordsWithoutConcatenation(t *testing.T) {
	f := newFakeTus(t)
	f.extensions = "creation,termination"
	data := randomBytes(12*MiB, 32)
	path := writeTemp(t, "nc.bin", data)
	store := resume.NewStore(t.TempDir())
	id, _ := resume.Identify(path)
	for i := range 2 {
		_ = store.Save(resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Partial, Part: i, Parts: 2,
			Start: int64(i) * 6 * MiB, End: int64(i+1) * 6 * MiB, URL: f.endpoint() + "old" + strconv.Itoa(i)})
	}
	c, sink := newTestClient(t, f, func(o *Options) { o.Records = store })
	for run := range 2 {
		res := uploadOne(t, c, path, nil)
		if res.Err == nil {
			if !bytes.Equal(f.upload(res.URL).data, data) {
				t.Fatal("stored bytes differ")
			}
			return
		}
		t.Logf("run %d: %v (notices %q)", run+1, res.Err, sink.notices)
	}
	t.Fatal("every run fails the same way; the user must find and delete the record folder")
}

// 409 both ways, 460 once, and 413 on a PATCH.
func TestOffsetConflictsAndRefusals(t *testing.T) {
	data := randomBytes(4*MiB, 30)
	for _, tc := range []struct {
		name string
		hook func(w http.ResponseWriter, r *http.Request, patches int, f *fakeTus) bool
		fail string // "" success
	}{
		{"409 server has more", func(w http.ResponseWriter, r *http.Request, n int, f *fakeTus) bool {
			if n == 2 { // the server kept the chunk, the answer got lost; then the client's offset is stale
				r.Header.Set("Upload-Offset", "0")
			}
			return false
		}, ""},
		{"409 server has fewer", func(w http.ResponseWriter, r *http.Request, n int, f *fakeTus) bool {
			if n == 3 {
				f.mu.Lock()
				u := f.uploads[strings.TrimPrefix(r.URL.Path, "/files/")]
				u.data = u.data[:MiB/2]
				f.mu.Unlock()
			}
			return false
		}, ""},
		{"460 once", func(w http.ResponseWriter, r *http.Request, n int, f *fakeTus) bool {
			if n == 2 {
				w.WriteHeader(460)
				return true
			}
			return false
		}, ""},
		{"413", func(w http.ResponseWriter, r *http.Request, n int, f *fakeTus) bool {
			if n == 2 {
				http.Error(w, "ERR_QUOTA: over quota", http.StatusRequestEntityTooLarge)
				return true
			}
			return false
		}, "PATCH: 413 Request Entity Too Large: ERR_QUOTA: over quota"},
		{"460 always", func(w http.ResponseWriter, r *http.Request, n int, f *fakeTus) bool {
			w.WriteHeader(460)
			return true
		}, "PATCH: 460 Checksum Mismatch"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTus(t)
			patches := 0
			f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
				if r.Method != http.MethodPatch {
					return false
				}
				patches++
				return tc.hook(w, r, patches, f)
			}
			c, _ := newTestClient(t, f, nil)
			res := uploadOne(t, c, writeTemp(t, "o.bin", data), nil)
			if tc.fail == "" {
				if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
					t.Fatalf("%v", res.Err)
				}
				return
			}
			if res.Err == nil || res.Err.Error() != tc.fail {
				t.Fatalf("error %v, want %q", res.Err, tc.fail)
			}
		})
	}
}

// A record of a partial the server no longer has starts the file anew,
// once, rather than failing every run.
func TestStreamsGonePartialStartsAnew(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(12*MiB, 31)
	path := writeTemp(t, "gp.bin", data)
	store := resume.NewStore(t.TempDir())
	id, _ := resume.Identify(path)
	for i := range 2 {
		_ = store.Save(resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Partial, Part: i, Parts: 2,
			Start: int64(i) * 6 * MiB, End: int64(i+1) * 6 * MiB, URL: f.endpoint() + "expired" + strconv.Itoa(i)})
	}
	c, sink := newTestClient(t, f, func(o *Options) { o.Streams = 2; o.Records = store })
	res := uploadOne(t, c, path, nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) || len(sink.notices) != 1 {
		t.Fatalf("%v; notices %q", res.Err, sink.notices)
	}
}

// Two clients sending the same file at once, from the same records, both
// end with the file stored whole; the second resumes the first's upload.
func TestTwoClientsSameFile(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(6*MiB, 33)
	path := writeTemp(t, "two.bin", data)
	store := resume.NewStore(t.TempDir())
	var wg sync.WaitGroup
	results := make([]Result, 2)
	for i := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, _ := newTestClient(t, f, func(o *Options) { o.Records = store })
			c.Upload(context.Background(), Input{Files: []string{path}}, func(_ int, r Result) { results[i] = r })
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.Err != nil || !bytes.Equal(f.upload(r.URL).data, data) {
			t.Fatalf("client %d: %v", i, r.Err)
		}
	}
}

// A truncated or corrupt record is skipped: the file is sent anew.
func TestCorruptRecord(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(MiB, 34)
	path := writeTemp(t, "cr.bin", data)
	store := resume.NewStore(t.TempDir())
	id, _ := resume.Identify(path)
	_ = store.Save(resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Whole, Parts: 1, End: id.Size, URL: f.endpoint() + "x"})
	dirs, _ := os.ReadDir(store.Dir())
	rec := filepath.Join(store.Dir(), dirs[0].Name(), "upload.json")
	raw, _ := os.ReadFile(rec)
	_ = os.WriteFile(rec, raw[:len(raw)/2], 0o600)
	c, _ := newTestClient(t, f, func(o *Options) { o.Records = store })
	res := uploadOne(t, c, path, nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("%v", res.Err)
	}
}
