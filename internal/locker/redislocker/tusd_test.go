package redislocker

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	xslog "golang.org/x/exp/slog"

	"github.com/tusgate/tusgate/test/testenv"
)

// TestTusdHandlersShareLocks runs two tusd handlers ("instances") on one
// directory with a Locker each: a HEAD on instance B interrupts a PATCH
// stalled in its body on instance A, which saves what it received and
// unlocks; B then answers with that offset.
func TestTusdHandlersShareLocks(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	dir := t.TempDir()
	instance := func() string {
		l := newLocker(t, r.Client(), Options{})
		composer := handler.NewStoreComposer()
		filestore.New(dir).UseIn(composer)
		l.UseIn(composer)
		h, err := handler.NewHandler(handler.Config{
			BasePath:      "/files/",
			StoreComposer: composer,
			Logger:        xslog.New(xslog.NewTextHandler(io.Discard, nil)),
		})
		if err != nil {
			t.Fatal(err)
		}
		srv := httptest.NewServer(http.StripPrefix("/files/", h))
		t.Cleanup(srv.Close)
		return srv.URL + "/files/"
	}
	a, b := instance(), instance()

	do := func(method, url string, body io.Reader, hdr ...string) *http.Response {
		t.Helper()
		req, err := http.NewRequest(method, url, body)
		if err != nil {
			t.Fatal(err)
		}
		req.Header.Set("Tus-Resumable", "1.0.0")
		for i := 0; i+1 < len(hdr); i += 2 {
			req.Header.Set(hdr[i], hdr[i+1])
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, url, err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}

	resp := do("POST", a, nil, "Upload-Length", "1048576")
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST: %s", resp.Status)
	}
	id := filepath.Base(resp.Header.Get("Location"))

	// PATCH on A: 64 KiB, then the client stalls.
	const sent = 64 << 10
	pr, pw := io.Pipe()
	defer pw.Close()
	patched := make(chan *http.Response, 1)
	go func() {
		req, _ := http.NewRequest("PATCH", a+id, pr)
		req.Header.Set("Tus-Resumable", "1.0.0")
		req.Header.Set("Upload-Offset", "0")
		req.Header.Set("Content-Type", "application/offset+octet-stream")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			patched <- nil
			return
		}
		resp.Body.Close()
		patched <- resp
	}()
	if _, err := pw.Write(make([]byte, sent)); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the PATCH's bytes on disk", func() bool {
		fi, err := os.Stat(filepath.Join(dir, id))
		return err == nil && fi.Size() == sent
	})

	// HEAD on B asks A to let go.
	start := time.Now()
	resp = do("HEAD", b+id, nil)
	took := time.Since(start)
	t.Logf("HEAD on instance B answered %s, Upload-Offset %s, after %v", resp.Status, resp.Header.Get("Upload-Offset"), took)
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Upload-Offset") != "65536" {
		t.Errorf("HEAD: %s, Upload-Offset %q; want 200, 65536", resp.Status, resp.Header.Get("Upload-Offset"))
	}
	// Below the waiter's resendInterval: A honoured the first release
	// request.
	if took >= resendInterval {
		t.Errorf("HEAD took %v, want < %v", took, resendInterval)
	}
	if p := receiveWithin(t, patched, 5*time.Second, "the PATCH's answer"); p != nil {
		t.Logf("interrupted PATCH on instance A answered %s", p.Status)
		if p.StatusCode < 400 { // tusd: 400 ERR_UPLOAD_INTERRUPTED
			t.Errorf("interrupted PATCH answered %s", p.Status)
		}
	}
}
