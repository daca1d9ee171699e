// Package integration runs the tusgate binary against a real S3 server
// (versitygw) and the disk store, talking tus over HTTP like real clients.
package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

// gate is one running tusgate process.
type gate = testenv.Gate

func startGate(t *testing.T, env []string, args ...string) *gate {
	t.Helper()
	return testenv.StartGate(t, env, args...)
}

func runGate(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	return testenv.RunGate(t, env, args...)
}

func tail(p string, n int) string { return testenv.Tail(p, n) }

// payload returns n deterministic pseudo-random bytes and their SHA-256.
func payload(n int64, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
	_, _ = r.Read(b)
	return b, sha256Hex(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// response is the part of an HTTP answer the tests look at.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends one request and returns its answer; network errors fail the test.
func do(t *testing.T, method, url string, header map[string]string, body io.Reader) response {
	t.Helper()
	r, err := tryDo(context.Background(), method, url, header, body, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func tryDo(ctx context.Context, method, url string, header map[string]string, body io.Reader, length int64) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return response{}, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

var tusHeaders = map[string]string{"Tus-Resumable": "1.0.0"}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// create makes a new upload of the given size and returns its URL.
func create(t *testing.T, g *gate, size int64, extra ...string) string {
	t.Helper()
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, append([]string{"Upload-Length", strconv.FormatInt(size, 10)}, extra...)...), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, g.URL+"/files/") {
		t.Fatalf("create: Location %q not under %s/files/", loc, g.URL)
	}
	return loc
}

// patch sends data at offset and returns the answer.
func patch(t *testing.T, url string, offset int64, data []byte) response {
	t.Helper()
	return do(t, "PATCH", url, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)), bytes.NewReader(data))
}

// headOffset returns the upload's offset from a HEAD request.
func headOffset(t *testing.T, url string) int64 {
	t.Helper()
	r := do(t, "HEAD", url, tusHeaders, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD %s: %d", url, r.Status)
	}
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD %s: Upload-Offset %q", url, r.Header.Get("Upload-Offset"))
	}
	return off
}

// uploadResumably sends data to url the way tus-js-client does: PATCH from
// the server's offset, and after any failure (network error, 5xx, 423, 409)
// HEAD for the offset and go on, up to maxAttempts requests.
func uploadResumably(t *testing.T, url string, data []byte, chunk int64, maxAttempts int) (attempts int) {
	t.Helper()
	ctx := context.Background()
	offset := int64(-1)
	for attempts = 1; attempts <= maxAttempts; attempts++ {
		if offset < 0 {
			r, err := tryDo(ctx, "HEAD", url, tusHeaders, nil, -1)
			switch {
			case err != nil || r.Status == http.StatusLocked || r.Status >= 500:
				backoff(attempts)
				continue
			case r.Status != http.StatusOK:
				t.Fatalf("resume HEAD answered %d: tus-js-client would start over", r.Status)
			}
			offset, _ = strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
		}
		if offset == int64(len(data)) {
			return attempts
		}
		end := min(offset+chunk, int64(len(data)))
		r, err := tryDo(ctx, "PATCH", url, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)), bytes.NewReader(data[offset:end]), end-offset)
		switch {
		case err != nil || r.Status >= 500 || r.Status == http.StatusLocked || r.Status == http.StatusConflict:
			offset = -1
			backoff(attempts)
		case r.Status == http.StatusNoContent:
			offset, _ = strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
			if offset == int64(len(data)) {
				return attempts
			}
		default:
			t.Fatalf("PATCH answered %d %q: not retryable", r.Status, r.Body)
		}
	}
	t.Fatalf("upload not finished after %d requests", maxAttempts)
	return attempts
}

// backoff is a client's retry delay (tus-js-client waits too); it is not
// used to wait for the server to reach some state.
func backoff(attempt int) {
	time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
}

// uploadID is the last part of an upload URL after the base path.
func uploadID(url string) string {
	_, id, _ := strings.Cut(url, "/files/")
	return id
}

// countingReader signals once n bytes were read through it, then blocks
// further reads until release is closed (if block is set). Sent reports,
// from any goroutine, how many bytes it has handed out so far: an upper
// bound on what the server can have received.
type countingReader struct {
	r       io.Reader
	n       int64
	read    int64
	sent    atomic.Int64
	reached chan struct{}
	once    sync.Once
	block   bool
	release chan struct{}
}

func newCountingReader(r io.Reader, n int64, block bool) *countingReader {
	return &countingReader{r: r, n: n, reached: make(chan struct{}), block: block, release: make(chan struct{})}
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		c.once.Do(func() { close(c.reached) })
		if c.block {
			<-c.release
			return 0, io.ErrUnexpectedEOF
		}
	}
	if c.block && int64(len(p)) > c.n-c.read && c.read < c.n {
		p = p[:c.n-c.read]
	}
	k, err := c.r.Read(p)
	c.read += int64(k)
	c.sent.Add(int64(k))
	return k, err
}

// Sent is the number of bytes read through c so far.
func (c *countingReader) Sent() int64 { return c.sent.Load() }
