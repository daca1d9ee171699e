package client

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/tusgate/tusgate/internal/client/backoff"
	"github.com/tusgate/tusgate/internal/client/progress"
	"github.com/tusgate/tusgate/internal/client/resume"
)

const MiB = 1 << 20

func randomBytes(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), 7})
	_, _ = r.Read(b)
	return b
}

func writeTemp(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// recordingSink keeps what the client reports.
type recordingSink struct {
	mu      sync.Mutex
	notices []string
	retries []string
	waits   []time.Duration
}

func (s *recordingSink) Start(*progress.Tracker) {}
func (s *recordingSink) Notice(_ *progress.Tracker, m string) {
	s.mu.Lock()
	s.notices = append(s.notices, m)
	s.mu.Unlock()
}
func (s *recordingSink) Retry(_ *progress.Tracker, err error, wait time.Duration) {
	s.mu.Lock()
	s.retries = append(s.retries, err.Error())
	s.waits = append(s.waits, wait)
	s.mu.Unlock()
}
func (s *recordingSink) Done(*progress.Tracker)        {}
func (s *recordingSink) Fail(*progress.Tracker, error) {}
func (s *recordingSink) Close()                        {}

// fastRetry retries at once, so tests do not wait.
var fastRetry = backoff.Policy{Base: time.Millisecond, Max: time.Millisecond, Attempts: 5}

func newTestClient(t *testing.T, f *fakeTus, mod func(*Options)) (*Client, *recordingSink) {
	t.Helper()
	sink := &recordingSink{}
	opts := Options{Endpoint: f.endpoint(), ChunkSize: MiB, Retry: fastRetry, Sink: sink,
		Records: resume.NewStore(filepath.Join(t.TempDir(), "records"))}
	if mod != nil {
		mod(&opts)
	}
	c, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	return c, sink
}

func uploadOne(t *testing.T, c *Client, file string, stream []byte) Result {
	t.Helper()
	var res Result
	in := Input{Files: []string{file}, Stream: bytes.NewReader(stream), StreamName: "stdin"}
	c.Upload(context.Background(), in, func(_ int, r Result) { res = r })
	return res
}

func TestUploadFileInChunks(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(3*MiB+17, 1)
	c, _ := newTestClient(t, f, nil)
	res := uploadOne(t, c, writeTemp(t, "a.txt", data), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	u := f.upload(res.URL)
	if u == nil || !bytes.Equal(u.data, data) || !strings.HasPrefix(res.URL, f.srv.URL+"/files/") {
		t.Fatalf("stored %v at %q", u, res.URL)
	}
	// filename and filetype, base64 encoded; no checksum (not announced).
	if u.metadata != "filename YS50eHQ=,filetype dGV4dC9wbGFpbg==" || len(u.checksum) != 0 {
		t.Fatalf("metadata %q, checksums %v", u.metadata, u.checksum)
	}
	if got := strings.Count(f.requestLog(), "PATCH"); got != 4 {
		t.Fatalf("%d PATCHes for 3 MiB + 17 bytes in 1 MiB chunks:\n%s", got, f.requestLog())
	}
}

// The tus checksum extension: Upload-Checksum only when the server lists
// both "checksum" and "sha256"; a 460 is sent again.
func TestChecksumHeader(t *testing.T) {
	data := randomBytes(2*MiB+5, 2)
	for _, tc := range []struct {
		extensions, algorithms string
		want                   bool
	}{
		{"creation,checksum", "md5,sha1,sha256", true},
		{"creation,checksum", "sha1", false},
		{"creation", "sha256", false},
		{"creation, Checksum", " SHA256 ", true},
	} {
		f := newFakeTus(t)
		f.extensions, f.algorithms = tc.extensions, tc.algorithms
		mismatched := false
		f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
			if r.Method == http.MethodPatch && r.Header.Get("Upload-Offset") == "1048576" && !mismatched && tc.want {
				mismatched = true
				r.Header.Set("Upload-Checksum", "sha256 AAAA") // as if a bit flipped on the way
			}
			return false
		}
		c, _ := newTestClient(t, f, nil)
		res := uploadOne(t, c, writeTemp(t, "b.bin", data), nil)
		if res.Err != nil {
			t.Fatalf("%+v: %v", tc, res.Err)
		}
		u := f.upload(res.URL)
		if !bytes.Equal(u.data, data) {
			t.Fatalf("%+v: stored bytes differ", tc)
		}
		if !tc.want {
			if len(u.checksum) != 0 {
				t.Fatalf("%+v: checksums sent: %v", tc, u.checksum)
			}
			continue
		}
		// 3 chunks, the second sent twice after the 460.
		if len(u.checksum) != 4 || !strings.HasPrefix(u.checksum[0], "sha256 ") {
			t.Fatalf("%+v: checksums %v", tc, u.checksum)
		}
	}
}

func TestResumeAfterInterruption(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(4*MiB, 3)
	path := writeTemp(t, "c.bin", data)
	store := resume.NewStore(t.TempDir())

	// The first run stops after two chunks (as if killed).
	ctx, cancel := context.WithCancel(context.Background())
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPatch && r.Header.Get("Upload-Offset") == "2097152" {
			cancel()
			http.Error(w, "gone away", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f, func(o *Options) { o.Records = store })
	var first Result
	c.Upload(ctx, Input{Files: []string{path}}, func(_ int, r Result) { first = r })
	if first.Err != errInterrupted {
		t.Fatalf("first run: %v", first.Err)
	}
	id, _ := resume.Identify(path)
	if recs, _ := store.Load(f.endpoint(), id.Path); len(recs) != 1 || recs[0].URL != first.URL {
		t.Fatalf("records after the first run: %+v", recs)
	}

	// The second run continues the same upload from the server's offset.
	f.fail = nil
	_, before := f.counts()
	c2, _ := newTestClient(t, f, func(o *Options) { o.Records = store })
	res := uploadOne(t, c2, path, nil)
	if res.Err != nil || res.URL != first.URL {
		t.Fatalf("second run: %v, URL %q (first %q)", res.Err, res.URL, first.URL)
	}
	created, after := f.counts()
	if created != 1 || after-before != 2*MiB || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("created %d uploads, second run sent %d bytes", created, after-before)
	}
	if recs, _ := store.Load(f.endpoint(), id.Path); len(recs) != 0 {
		t.Fatalf("records left after success: %+v", recs)
	}
}

func TestChangedFileStartsAnew(t *testing.T) {
	f := newFakeTus(t)
	store := resume.NewStore(t.TempDir())
	path := writeTemp(t, "d.bin", randomBytes(2*MiB, 4))
	id, _ := resume.Identify(path)
	// An earlier run's record for the old version of the file.
	c, sink := newTestClient(t, f, func(o *Options) { o.Records = store })
	old, _ := c.create(context.Background(), creation{length: id.Size})
	stale := id
	stale.ModTime--
	if err := store.Save(resume.Record{Endpoint: f.endpoint(), File: stale, Kind: resume.Whole, Parts: 1, End: id.Size, URL: old}); err != nil {
		t.Fatal(err)
	}
	res := uploadOne(t, c, path, nil)
	if res.Err != nil || res.URL == old {
		t.Fatalf("upload: %v, URL %q (old %q)", res.Err, res.URL, old)
	}
	if len(sink.notices) != 1 || !strings.Contains(sink.notices[0], "the file changed since the last run (modified") {
		t.Fatalf("notices %q", sink.notices)
	}
	if f.upload(old) != nil {
		t.Fatal("the old upload was not removed")
	}
}

func TestGoneUploadStartsAnew(t *testing.T) {
	f := newFakeTus(t)
	store := resume.NewStore(t.TempDir())
	data := randomBytes(MiB, 5)
	path := writeTemp(t, "e.bin", data)
	id, _ := resume.Identify(path)
	_ = store.Save(resume.Record{Endpoint: f.endpoint(), File: id, Kind: resume.Whole, Parts: 1, End: id.Size, URL: f.endpoint() + "expired"})
	c, sink := newTestClient(t, f, func(o *Options) { o.Records = store })
	res := uploadOne(t, c, path, nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("upload: %v", res.Err)
	}
	if len(sink.notices) != 1 || !strings.Contains(sink.notices[0], "no longer has the upload") {
		t.Fatalf("notices %q", sink.notices)
	}
}

// Retryable answers are retried, honouring Retry-After; a 409 re-reads
// the offset; other 4xx fail at once with the server's words.
func TestRetries(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(3*MiB, 6)
	patches := 0
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		patches++
		switch patches {
		case 1:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "busy", http.StatusLocked)
			return true
		case 2:
			w.Header().Set("Retry-After", "0")
			http.Error(w, "storage unavailable", http.StatusServiceUnavailable)
			return true
		case 4:
			r.Header.Set("Upload-Offset", "0") // a stale offset: 409
		}
		return false
	}
	c, sink := newTestClient(t, f, nil)
	res := uploadOne(t, c, writeTemp(t, "f.bin", data), nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("upload: %v", res.Err)
	}
	if len(sink.retries) != 2 || sink.waits[0] != 0 || sink.waits[1] != 0 {
		t.Fatalf("retries %q, waits %v", sink.retries, sink.waits)
	}
	if !strings.Contains(sink.retries[0], "PATCH: 423 Locked: busy") {
		t.Fatalf("retry message %q", sink.retries[0])
	}

	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPost {
			http.Error(w, "ERR_UPLOAD_TOO_LARGE: quota exceeded", http.StatusRequestEntityTooLarge)
			return true
		}
		return false
	}
	res = uploadOne(t, c, writeTemp(t, "g.bin", data), nil)
	if res.Err == nil || res.Err.Error() != "POST: 413 Request Entity Too Large: ERR_UPLOAD_TOO_LARGE: quota exceeded" {
		t.Fatalf("413: %v", res.Err)
	}

	// Failures in a row beyond the policy's attempts end the upload.
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodOptions {
			return false
		}
		http.Error(w, "down", http.StatusBadGateway)
		return true
	}
	res = uploadOne(t, c, writeTemp(t, "h.bin", data), nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "502") {
		t.Fatalf("502s: %v", res.Err)
	}
}

// tokenSource hands out numbered tokens; Refresh makes the next one.
type tokenSource struct {
	mu        sync.Mutex
	n         int
	refreshes int
	fail      bool
}

func (s *tokenSource) Token(context.Context) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return "tok" + string(rune('0'+s.n)), nil
}

func (s *tokenSource) Refresh(context.Context, string) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.fail {
		return "", errors.New("no refresh token")
	}
	s.refreshes++
	s.n++
	return "tok" + string(rune('0'+s.n)), nil
}

func TestUnauthorizedRefreshesOnce(t *testing.T) {
	f := newFakeTus(t)
	f.token = "tok1"
	src := &tokenSource{}
	c, _ := newTestClient(t, f, func(o *Options) { o.Auth = src })
	data := randomBytes(MiB+1, 7)
	res := uploadOne(t, c, writeTemp(t, "i.bin", data), nil)
	if res.Err != nil || src.refreshes != 1 || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("upload: %v after %d refreshes", res.Err, src.refreshes)
	}
	// A token the server refuses even fresh: one refresh, then a clear error.
	f.token = "never"
	res = uploadOne(t, c, writeTemp(t, "j.bin", data), nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "401 Unauthorized") || src.refreshes != 2 {
		t.Fatalf("refused token: %v after %d refreshes", res.Err, src.refreshes)
	}
	src.fail = true
	res = uploadOne(t, c, writeTemp(t, "k.bin", data), nil)
	if res.Err == nil || !strings.Contains(res.Err.Error(), "cannot be refreshed: no refresh token") {
		t.Fatalf("no refresh: %v", res.Err)
	}
}

func TestStreamDeferredLength(t *testing.T) {
	for _, n := range []int{0, 1, MiB, 2 * MiB, 2*MiB + 3} {
		f := newFakeTus(t)
		data := randomBytes(n, uint64(n))
		c, _ := newTestClient(t, f, nil)
		res := uploadOne(t, c, "-", data)
		if res.Err != nil {
			t.Fatalf("%d bytes: %v", n, res.Err)
		}
		u := f.upload(res.URL)
		if !bytes.Equal(u.data, data) || u.length != int64(n) || u.metadata != "filename c3RkaW4=" {
			t.Fatalf("%d bytes: stored %v, metadata %q\n%s", n, u, u.metadata, f.requestLog())
		}
	}
}

// A stream cut mid-chunk is sent again from the bytes the client holds.
func TestStreamRetriesFromHeldChunk(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(3*MiB, 8)
	cut := false
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodPatch && r.Header.Get("Upload-Offset") == "1048576" && !cut {
			cut = true
			// Keep half the chunk, then fail, as a dropped connection does.
			buf := make([]byte, MiB/2)
			n, _ := io.ReadFull(r.Body, buf)
			u := f.upload(f.srv.URL + r.URL.Path)
			f.mu.Lock()
			u.data = append(u.data, buf[:n]...)
			f.mu.Unlock()
			http.Error(w, "cut", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f, nil)
	res := uploadOne(t, c, "-", data)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("upload: %v", res.Err)
	}
}

func TestStreamsConcatenation(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(17*MiB+5, 9)
	store := resume.NewStore(t.TempDir())
	c, _ := newTestClient(t, f, func(o *Options) { o.Streams = 3; o.Records = store })
	res := uploadOne(t, c, writeTemp(t, "l.bin", data), nil)
	if res.Err != nil {
		t.Fatal(res.Err)
	}
	u := f.upload(res.URL)
	if !u.final || !bytes.Equal(u.data, data) || !strings.HasPrefix(u.metadata, "filename bC5iaW4=") {
		t.Fatalf("final upload %v final=%t metadata %q", u, u.final, u.metadata)
	}
	created, _ := f.counts()
	f.mu.Lock()
	left := len(f.uploads)
	f.mu.Unlock()
	if created != 4 || left != 1 {
		t.Fatalf("created %d uploads (3 partials + final), %d left (partials not removed?)", created, left)
	}

	// Without concatenation on the server: one stream, with a notice.
	f2 := newFakeTus(t)
	f2.extensions = "creation"
	c2, sink := newTestClient(t, f2, func(o *Options) { o.Streams = 3 })
	res = uploadOne(t, c2, writeTemp(t, "m.bin", data), nil)
	if res.Err != nil || !bytes.Equal(f2.upload(res.URL).data, data) || len(sink.notices) != 1 {
		t.Fatalf("no concatenation: %v, notices %q", res.Err, sink.notices)
	}
}

// Each partial resumes from its own record.
func TestStreamsResume(t *testing.T) {
	f := newFakeTus(t)
	data := randomBytes(12*MiB, 10)
	path := writeTemp(t, "n.bin", data)
	store := resume.NewStore(t.TempDir())
	ctx, cancel := context.WithCancel(context.Background())
	var patches int
	var mu sync.Mutex
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method != http.MethodPatch {
			return false
		}
		mu.Lock()
		defer mu.Unlock()
		if patches++; patches > 4 {
			cancel()
			http.Error(w, "stop", http.StatusServiceUnavailable)
			return true
		}
		return false
	}
	c, _ := newTestClient(t, f, func(o *Options) { o.Streams = 2; o.Records = store })
	c.Upload(ctx, Input{Files: []string{path}}, func(int, Result) {})
	id, _ := resume.Identify(path)
	recs, _ := store.Load(f.endpoint(), id.Path)
	if len(recs) != 2 || recs[0].Kind != resume.Partial || recs[1].Part != 1 {
		t.Fatalf("records after the interrupted run: %+v", recs)
	}
	f.fail = nil
	c2, _ := newTestClient(t, f, func(o *Options) { o.Streams = 4; o.Records = store }) // the earlier layout wins
	res := uploadOne(t, c2, path, nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("resumed: %v", res.Err)
	}
	if created, _ := f.counts(); created != 3 {
		t.Fatalf("created %d uploads, want 2 partials and a final", created)
	}
}

func TestSplitRanges(t *testing.T) {
	got := splitRanges(10, 3)
	if len(got) != 3 || got[0] != (byteRange{0, 4}) || got[2] != (byteRange{8, 10}) {
		t.Fatalf("splitRanges(10, 3) = %v", got)
	}
}
