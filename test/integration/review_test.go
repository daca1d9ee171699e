package integration

import (
	"bytes"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// pausingReader stops after n bytes until resume is closed, then goes on.
type pausingReader struct {
	r       io.Reader
	n, read int
	paused  chan struct{}
	resume  chan struct{}
	once    bool
}

func (p *pausingReader) Read(b []byte) (int, error) {
	if p.read >= p.n && !p.once {
		p.once = true
		close(p.paused)
		<-p.resume
	}
	if p.read < p.n && len(b) > p.n-p.read {
		b = b[:p.n-p.read]
	}
	k, err := p.r.Read(b)
	p.read += k
	return k, err
}

// Another user's request for an upload must not take its lock: taking a
// held lock asks the holder to release it, which would interrupt the
// owner's PATCH (found in review: tusd locks before it calls GetUpload).
func TestOthersCannotInterruptAnUpload(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		a := startAuth(t, b)
		alice, bob := bearer(a.token(t, "rsa1", "alice")), bearer(a.token(t, "rsa1", "bob"))
		data, sum := payload(12*MiB, 80)
		r := do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Length", strconv.Itoa(len(data))), nil)
		loc := r.Header.Get("Location")
		body := &pausingReader{r: bytes.NewReader(data), n: 3 * MiB, paused: make(chan struct{}), resume: make(chan struct{})}
		result := make(chan response, 1)
		go func() {
			resp, err := tryDo(t.Context(), "PATCH", loc, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
			if err != nil {
				resp.Status = -1
			}
			result <- resp
		}()
		<-body.paused
		for _, m := range []string{"HEAD", "GET", "DELETE"} {
			start := time.Now()
			if r := do(t, m, loc, bob, nil); r.Status != http.StatusNotFound {
				t.Fatalf("bob's %s: %d", m, r.Status)
			}
			if took := time.Since(start); took > 2*time.Second {
				t.Fatalf("bob's %s waited %v for alice's lock", m, took)
			}
		}
		close(body.resume)
		if r := <-result; r.Status != http.StatusNoContent {
			t.Fatalf("alice's PATCH was interrupted by bob's requests: %d %q", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

func TestIETFDraftSizeLimits(t *testing.T) {
	g := startGate(t, nil, "--data-dir", t.TempDir(), "--max-size", "1MiB")
	big := bytes.Repeat([]byte("x"), 2*MiB)
	r := do(t, "POST", g.URL+"/files/", map[string]string{"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?1"}, bytes.NewReader(big))
	if r.Status != http.StatusRequestEntityTooLarge {
		t.Fatalf("draft upload over --max-size: %d", r.Status)
	}
	r = do(t, "POST", g.URL+"/files/", map[string]string{"Upload-Draft-Interop-Version": "6", "Upload-Length": "-5"}, strings.NewReader(""))
	if r.Status != http.StatusBadRequest {
		t.Fatalf("draft upload with a negative length: %d", r.Status)
	}
}

func TestConcatLimits(t *testing.T) {
	g := startGate(t, nil, "--data-dir", t.TempDir())
	partial := create(t, g, 3, "Upload-Concat", "partial")
	patch(t, partial, 0, []byte("abc"))
	plain := create(t, g, 3)
	patch(t, plain, 0, []byte("abc"))
	// 101 distinct names (query strings make them distinct for the check).
	var many []string
	for i := range 101 {
		many = append(many, partial+"?"+strconv.Itoa(i))
	}
	// tusd resolves each name to an upload ID: scheme, host and slashes
	// around the ID do not make another upload.
	path := strings.TrimPrefix(partial, g.URL)
	id := strings.TrimPrefix(path, "/files/")
	for name, header := range map[string]string{
		"duplicate":                 "final;" + partial + " " + partial,
		"duplicate, URL and path":   "final;" + partial + " " + path,
		"duplicate, trailing slash": "final;" + path + " " + path + "/",
		"duplicate, other host":     "final;" + partial + " https://other.example/files/" + id,
		"duplicate, extra slashes":  "final;" + path + "   /files//" + id + "//",
		"too many":                  "final;" + strings.Join(many, " "),
		"not partial":               "final;" + plain,
	} {
		r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Concat", header), nil)
		if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Body, "ERR_INVALID_CONCAT") {
			t.Errorf("%s: %d %q", name, r.Status, r.Body)
		}
	}
}

func TestDeferredLengthRefusedUnderByteQuota(t *testing.T) {
	a := startAuth(t, diskBackend(t), "--quota-bytes", "1MiB")
	tok := bearer(a.token(t, "rsa1", "dora"))
	r := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Defer-Length", "1"), nil)
	if r.Status != http.StatusBadRequest || !strings.HasPrefix(r.Body, "ERR_QUOTA_NEEDS_LENGTH") {
		t.Fatalf("deferred length under --quota-bytes: %d %q", r.Status, r.Body)
	}
}
