package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/test/testenv"
)

func TestBadInput(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t, "--max-size", "1GiB", "--max-metadata-size", "1KiB")
		victimData, victimSum := payload(6*MiB, 20)
		victim := create(t, g, int64(len(victimData)))
		half := 3 * MiB
		if r := patch(t, victim, 0, victimData[:half]); r.Status != http.StatusNoContent {
			t.Fatalf("victim PATCH: %d", r.Status)
		}
		id := uploadID(victim)
		u := g.URL + "/files/"

		cases := []struct {
			name   string
			method string
			url    string
			header map[string]string
			body   string
			want   int
			code   string // error code expected in the body
		}{
			{"missing Tus-Resumable", "POST", u, map[string]string{"Upload-Length": "5"}, "", 412, "ERR_UNSUPPORTED_VERSION"},
			{"wrong Tus-Resumable", "POST", u, map[string]string{"Tus-Resumable": "0.2.2", "Upload-Length": "5"}, "", 412, ""},
			{"Upload-Length over max", "POST", u, with(tusHeaders, "Upload-Length", strconv.Itoa(1<<30+1)), "", 413, "ERR_MAX_SIZE_EXCEEDED"},
			{"negative Upload-Length", "POST", u, with(tusHeaders, "Upload-Length", "-1"), "", 400, "ERR_INVALID_UPLOAD_LENGTH"},
			{"non-numeric Upload-Length", "POST", u, with(tusHeaders, "Upload-Length", "ten"), "", 400, "ERR_INVALID_UPLOAD_LENGTH"},
			{"huge Upload-Length", "POST", u, with(tusHeaders, "Upload-Length", "99999999999999999999999"), "", 400, "ERR_INVALID_UPLOAD_LENGTH"},
			{"missing Upload-Length", "POST", u, tusHeaders, "", 400, "ERR_INVALID_UPLOAD_LENGTH"},
			{"both lengths", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Defer-Length", "1"), "", 400, ""},
			{"malformed metadata", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Metadata", "filename not!base64"), "", 400, "ERR_INVALID_METADATA"},
			{"metadata key with space pair", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Metadata", "a b c"), "", 400, "ERR_INVALID_METADATA"},
			{"oversized metadata", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Metadata", "big "+strings.Repeat("QUFB", 400)), "", 400, "ERR_INVALID_METADATA"},
			{"bad filetype", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Metadata", "filetype bm90IGEgdHlwZQ=="), "", 400, "ERR_INVALID_METADATA"},
			{"filetype with newline", "POST", u, with(tusHeaders, "Upload-Length", "5", "Upload-Metadata", "filetype dGV4dC9wbGFpbgpYLUV2aWw6IDE="), "", 400, "ERR_INVALID_METADATA"},
			{"invalid concat", "POST", u, with(tusHeaders, "Upload-Concat", "final;"), "", 400, ""},
			{"concat of unknown", "POST", u, with(tusHeaders, "Upload-Concat", "final;/files/nope+x /files/nada"), "", 404, "ERR_UPLOAD_NOT_FOUND"},
			{"concat path traversal", "POST", u, with(tusHeaders, "Upload-Concat", "final;/files/../../../../etc/passwd"), "", 404, "ERR_UPLOAD_NOT_FOUND"},
			{"unknown upload HEAD", "HEAD", u + "0123456789abcdef+xyz", tusHeaders, "", 404, ""},
			{"unknown upload PATCH", "PATCH", u + "nope", with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), "x", 404, ""},
			{"unknown upload GET", "GET", u + "nope+nope", nil, "", 404, ""},
			{"unknown upload DELETE", "DELETE", u + "nope+nope", tusHeaders, "", 404, ""},
			{"encoded traversal", "HEAD", u + "..%2f..%2fetc%2fpasswd", tusHeaders, "", 404, ""},
			{"wrong offset", "PATCH", victim, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "5"), "xx", 409, "ERR_MISMATCHED_OFFSET"},
			{"negative offset", "PATCH", victim, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "-5"), "xx", 400, "ERR_INVALID_OFFSET"},
			{"missing offset", "PATCH", victim, with(tusHeaders, "Content-Type", "application/offset+octet-stream"), "xx", 400, "ERR_INVALID_OFFSET"},
			{"wrong content type", "PATCH", victim, with(tusHeaders, "Content-Type", "text/plain", "Upload-Offset", strconv.Itoa(half)), "xx", 415, "ERR_INVALID_CONTENT_TYPE"},
			{"body beyond length", "PATCH", victim, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(half)), strings.Repeat("z", 4*MiB), 413, "ERR_UPLOAD_SIZE_EXCEEDED"},
			{"method override to DELETE of unknown", "POST", u + "nope+nope", with(tusHeaders, "X-HTTP-Method-Override", "DELETE"), "", 404, ""},
			{"unsupported method", "PUT", victim, tusHeaders, "", 405, ""},
			{"IETF draft bad content type", "POST", u, map[string]string{"Upload-Draft-Interop-Version": "6", "Upload-Complete": "?1", "Content-Type": "a/b; ;;"}, "x", 400, "ERR_INVALID_HEADER"},
		}
		for _, c := range cases {
			var body *bytes.Reader
			if c.body != "" {
				body = bytes.NewReader([]byte(c.body))
			}
			var r response
			if body != nil {
				r = do(t, c.method, c.url, c.header, body)
			} else {
				r = do(t, c.method, c.url, c.header, nil)
			}
			if r.Status != c.want {
				t.Errorf("%s: status %d, want %d (body %q)", c.name, r.Status, c.want, r.Body)
			}
			if c.code != "" && c.method != "HEAD" && !strings.HasPrefix(r.Body, c.code) {
				t.Errorf("%s: body %q, want code %s", c.name, r.Body, c.code)
			}
			if strings.Contains(r.Body, "s3store") || strings.Contains(r.Body, "operation error") || strings.Contains(r.Body, "/tmp/") {
				t.Errorf("%s: body leaks internals: %q", c.name, r.Body)
			}
		}

		// None of it crashed the server or touched the victim upload.
		if r := do(t, "GET", g.URL+"/healthz", nil, nil); r.Status != http.StatusOK {
			t.Fatalf("healthz after bad input: %d", r.Status)
		}
		if off := headOffset(t, victim); off != int64(half) {
			t.Fatalf("victim offset %d after bad input, want %d", off, half)
		}
		if r := patch(t, victim, int64(half), victimData[half:]); r.Status != http.StatusNoContent {
			t.Fatalf("victim completion: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, victim, victimSum, int64(len(victimData)))
		_ = id
	})
}

// s3BehindProxy starts versitygw behind a FaultProxy and tusgate on the proxy.
func s3BehindProxy(t *testing.T, extra ...string) (*backend, *testenv.FaultProxy) {
	t.Helper()
	b := s3Backend(t, extra...)
	proxy := testenv.NewFaultProxy(t, b.s3.Endpoint)
	b.env = append(b.env, "AWS_ENDPOINT_URL_S3="+proxy.URL, "AWS_MAX_ATTEMPTS=1")
	return b, proxy
}

func TestS3FailuresDoNotLoseUploads(t *testing.T) {
	data, sum := payload(64*MiB, 21)
	for _, seed := range []uint64{42, 7, 1234} {
		t.Run(fmt.Sprint("seed", seed), func(t *testing.T) {
			b, proxy := s3BehindProxy(t)
			g := b.start(t)
			loc := create(t, g, int64(len(data)))
			proxy.FailRandomly(0.15, seed)
			attempts := uploadResumably(t, loc, data, 8*MiB, 400)
			proxy.FailRandomly(0, 0)
			_, failed := proxy.Counts()
			if failed == 0 {
				t.Fatalf("the proxy failed no request; the test proves nothing")
			}
			t.Logf("upload finished after %d client requests; %d S3 requests failed", attempts, failed)
			// The client saw success; the object must be assembled and intact.
			if off := headOffset(t, loc); off != int64(len(data)) {
				t.Fatalf("final offset %d", off)
			}
			b.assertStored(t, loc, sum, int64(len(data)))
			if mps := b.s3.MultipartUploads(t, testBucket); len(mps) != 0 {
				t.Fatalf("multipart uploads left: %v", mps)
			}
		})
	}
}

func TestS3OutageAnswers(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	g := b.start(t)
	data, sum := payload(7*MiB, 22)
	loc := create(t, g, int64(len(data)))
	if r := patch(t, loc, 0, data[:6*MiB]); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d", r.Status)
	}

	proxy.SetDown(true)
	h := do(t, "HEAD", loc, tusHeaders, nil)
	if h.Status != http.StatusLocked || h.Header.Get("Retry-After") == "" {
		t.Fatalf("HEAD during S3 outage: %d Retry-After %q; want 423 with Retry-After", h.Status, h.Header.Get("Retry-After"))
	}
	p := patch(t, loc, 6*MiB, data[6*MiB:])
	if p.Status != http.StatusServiceUnavailable || p.Header.Get("Retry-After") == "" || !strings.HasPrefix(p.Body, "ERR_STORAGE_UNAVAILABLE") {
		t.Fatalf("PATCH during S3 outage: %d Retry-After %q body %q", p.Status, p.Header.Get("Retry-After"), p.Body)
	}
	c := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", "5"), nil)
	if c.Status != http.StatusServiceUnavailable || c.Header.Get("Retry-After") == "" {
		t.Fatalf("POST during S3 outage: %d Retry-After %q", c.Status, c.Header.Get("Retry-After"))
	}
	for _, r := range []response{p, c} {
		if strings.Contains(r.Body, "ServiceUnavailable") || strings.Contains(r.Body, "operation error") {
			t.Fatalf("raw S3 error text in the answer: %q", r.Body)
		}
	}
	if !strings.Contains(g.Log(), "storage backend failed") {
		t.Fatalf("the raw S3 error is not logged")
	}

	proxy.SetDown(false)
	uploadResumably(t, loc, data, int64(len(data)), 20)
	b.assertStored(t, loc, sum, int64(len(data)))
}

// A failed CompleteMultipartUpload must not leave an upload that tusd calls
// complete but S3 never assembled.
func TestFailedAssemblyIsFinishedLater(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	g := b.start(t)
	data, sum := payload(6*MiB, 23)
	loc := create(t, g, int64(len(data)))
	proxy.FailMatching(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
	})
	r := patch(t, loc, 0, data)
	if r.Status != http.StatusServiceUnavailable {
		t.Fatalf("PATCH whose assembly fails: %d %s", r.Status, r.Body)
	}
	proxy.FailMatching(nil)
	// tus-js-client's resume: HEAD says complete, so it declares success.
	if off := headOffset(t, loc); off != int64(len(data)) {
		t.Fatalf("HEAD offset %d", off)
	}
	b.assertStored(t, loc, sum, int64(len(data)))
}

// /readyz follows S3. The upload listener's answer names the dependency
// only; the error, with S3's address, is on the metrics listener.
func TestReadyzFollowsS3(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	proxy.SetDown(true)
	metrics := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	g := b.start(t, "--metrics-listen", metrics) // starts although S3 is down
	r := do(t, "GET", g.URL+"/readyz", nil, nil)
	if r.Status != http.StatusServiceUnavailable || r.Body != "s3: unavailable\n" || r.Header.Get("Retry-After") == "" {
		t.Fatalf("public readyz with S3 down: %d %q", r.Status, r.Body)
	}
	proxyAddr := strings.TrimPrefix(proxy.URL, "http://")
	r = do(t, "GET", "http://"+metrics+"/readyz", nil, nil)
	if r.Status != http.StatusServiceUnavailable || !strings.HasPrefix(r.Body, "s3: ") || !strings.Contains(r.Body, proxyAddr) {
		t.Fatalf("readyz on the metrics listener with S3 down: %d %q, want the reason with %s", r.Status, r.Body, proxyAddr)
	}
	proxy.SetDown(false)
	deadline := time.Now().Add(20 * time.Second)
	for {
		r = do(t, "GET", g.URL+"/readyz", nil, nil)
		if r.Status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz still %d %q 20s after S3 came back", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
	if r.Body != "ok\n" {
		t.Fatalf("readyz body %q", r.Body)
	}
	if r := do(t, "GET", "http://"+metrics+"/readyz", nil, nil); r.Status != http.StatusOK || r.Body != "ok\n" {
		t.Fatalf("readyz on the metrics listener after S3 came back: %d %q", r.Status, r.Body)
	}
}

func TestStartupMisconfiguration(t *testing.T) {
	s3 := testenv.StartS3(t, testenv.S3Options{})
	s3.CreateBucket(t, testBucket)
	dir := t.TempDir()
	base := []string{"--insecure-no-auth", "--listen", "127.0.0.1:0", "--data-dir", dir}

	code, out := runGate(t, s3.Env(), append(base, "--s3-bucket", "no-such-bucket")...)
	if code != 2 || !strings.Contains(out, `--s3-bucket "no-such-bucket" does not exist`) {
		t.Fatalf("missing bucket: exit %d\n%s", code, out)
	}
	badCreds := append(s3.Env(), "AWS_SECRET_ACCESS_KEY=wrong")
	code, out = runGate(t, badCreds, append(base, "--s3-bucket", testBucket)...)
	if code != 2 || !strings.Contains(out, "refused access") {
		t.Fatalf("bad credentials: exit %d\n%s", code, out)
	}
	readOnly := filepath.Join(dir, "ro")
	if err := os.MkdirAll(readOnly, 0o500); err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() != 0 { // root writes anywhere; use a file instead of a dir below
		code, out = runGate(t, nil, "--insecure-no-auth", "--data-dir", readOnly)
		if code != 2 || !strings.Contains(out, "--data-dir") {
			t.Fatalf("read-only data dir: exit %d\n%s", code, out)
		}
	}
	file := filepath.Join(dir, "a-file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	code, out = runGate(t, nil, "--insecure-no-auth", "--data-dir", file)
	if code != 2 || !strings.Contains(out, "--data-dir") {
		t.Fatalf("data dir is a file: exit %d\n%s", code, out)
	}
	code, out = runGate(t, nil, "--data-dir", dir)
	if code != 2 || !strings.Contains(out, "no authentication configured") {
		t.Fatalf("no auth: exit %d\n%s", code, out)
	}
}

func TestEnvAndFileSettingsReachTheServer(t *testing.T) {
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "tusgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("base-path: /from-file/\nmax-size: 100\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	g := startGate(t, []string{"TUSGATE_CONFIG=" + cfgFile, "TUSGATE_MAX_SIZE=200", "TUSGATE_DATA_DIR=" + dir})
	r := do(t, "OPTIONS", g.URL+"/from-file/", tusHeaders, nil)
	if r.Status != http.StatusOK || r.Header.Get("Tus-Max-Size") != "200" {
		t.Fatalf("OPTIONS: %d Tus-Max-Size %q (env must beat file)", r.Status, r.Header.Get("Tus-Max-Size"))
	}
	if !strings.Contains(r.Header.Get("Tus-Extension"), "creation-defer-length") || !strings.Contains(r.Header.Get("Tus-Extension"), "concatenation") {
		t.Fatalf("Tus-Extension %q", r.Header.Get("Tus-Extension"))
	}
}

func TestMetricsAndHealth(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	loc := create(t, g, 1)
	patch(t, loc, 0, []byte("x"))
	r := do(t, "GET", g.URL+"/metrics", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("metrics: %d", r.Status)
	}
	for _, m := range []string{`tusd_requests_total{method="POST"} 1`, "tusd_uploads_finished 1", "tusd_s3_request_duration_ms", "go_goroutines", "process_cpu_seconds_total"} {
		if !strings.Contains(r.Body, m) {
			t.Errorf("metrics lack %q", m)
		}
	}
	if r := do(t, "GET", g.URL+"/healthz", nil, nil); r.Status != 200 || r.Body != "ok\n" {
		t.Fatalf("healthz: %d %q", r.Status, r.Body)
	}

	// Without --pprof there are no profiles.
	if r := do(t, "GET", g.URL+"/debug/pprof/", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ without --pprof: %d", r.Status)
	}

	// With --metrics-listen, /metrics moves off the upload listener, and
	// --pprof serves profiles there (only there).
	port := testenv.FreePort(t)
	g2 := startGate(t, b.env, append(b.args, "--metrics-listen", "127.0.0.1:"+strconv.Itoa(port), "--pprof", "--s3-temp-dir", t.TempDir())...)
	if r := do(t, "GET", g2.URL+"/metrics", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("metrics on upload listener with --metrics-listen: %d", r.Status)
	}
	metricsURL := "http://127.0.0.1:" + strconv.Itoa(port)
	if r := do(t, "GET", metricsURL+"/metrics", nil, nil); r.Status != 200 || !strings.Contains(r.Body, "tusd_requests_total") {
		t.Fatalf("metrics listener: %d", r.Status)
	}
	if r := do(t, "GET", g2.URL+"/debug/pprof/goroutine?debug=1", nil, nil); r.Status != http.StatusNotFound {
		t.Fatalf("/debug/pprof/ on the upload listener with --pprof: %d", r.Status)
	}
	if r := do(t, "GET", metricsURL+"/debug/pprof/goroutine?debug=1", nil, nil); r.Status != 200 || !strings.Contains(r.Body, "goroutine profile:") {
		t.Fatalf("/debug/pprof/goroutine on the metrics listener: %d %.200q", r.Status, r.Body)
	}
}

func TestHealthcheckCommand(t *testing.T) {
	g := startGate(t, nil, "--data-dir", t.TempDir())
	code, out := runGate(t, []string{"TUSGATE_LISTEN=" + strings.TrimPrefix(g.URL, "http://")}, "healthcheck")
	if code != 0 {
		t.Fatalf("healthcheck against a running server: exit %d %s", code, out)
	}
	// A container configured by a file health-checks the address in it.
	cfgFile := filepath.Join(t.TempDir(), "tusgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("listen: "+strings.TrimPrefix(g.URL, "http://")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runGate(t, []string{"TUSGATE_CONFIG=" + cfgFile}, "healthcheck"); code != 0 {
		t.Fatalf("healthcheck with TUSGATE_CONFIG: exit %d %s", code, out)
	}
	if code, out := runGate(t, nil, "healthcheck", "--config", cfgFile); code != 0 {
		t.Fatalf("healthcheck --config: exit %d %s", code, out)
	}
	g.Kill()
	code, _ = runGate(t, []string{"TUSGATE_LISTEN=" + strings.TrimPrefix(g.URL, "http://")}, "healthcheck")
	if code == 0 {
		t.Fatalf("healthcheck against a dead server exited 0")
	}
	if code, out := runGate(t, nil, "version"); code != 0 || !strings.HasPrefix(out, "tusgate ") {
		t.Fatalf("version: %d %q", code, out)
	}
}

func TestLeftoverTempFilesRemovedAtStart(t *testing.T) {
	b := s3Backend(t)
	tmp := filepath.Join(b.dataDir, "s3-tmp")
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(tmp, "tusd-s3-tmp-123456")
	if err := os.WriteFile(stale, []byte("stale part"), 0o600); err != nil {
		t.Fatal(err)
	}
	keep := filepath.Join(tmp, "unrelated.txt")
	if err := os.WriteFile(keep, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	g := b.start(t)
	if _, err := os.Stat(stale); !os.IsNotExist(err) {
		t.Fatalf("stale temp file still there: %v", err)
	}
	if _, err := os.Stat(keep); err != nil {
		t.Fatalf("unrelated file removed: %v", err)
	}
	// A second instance on the same temp dir is refused with a clear message.
	code, out := runGate(t, b.env, append(b.args, "--insecure-no-auth", "--listen", "127.0.0.1:0")...)
	if code != 2 || !strings.Contains(out, "in use by another tusgate process") {
		t.Fatalf("second instance on one temp dir: exit %d\n%s", code, out)
	}
	_ = g
}

func TestCORS(t *testing.T) {
	g := startGate(t, nil, "--data-dir", t.TempDir(), "--cors-origins", "https://app.example")
	pre := do(t, "OPTIONS", g.URL+"/files/", map[string]string{"Origin": "https://app.example", "Access-Control-Request-Method": "POST", "Access-Control-Request-Headers": "tus-resumable,upload-length,authorization"}, nil)
	if pre.Status != http.StatusOK || pre.Header.Get("Access-Control-Allow-Origin") != "https://app.example" ||
		!strings.Contains(pre.Header.Get("Access-Control-Allow-Headers"), "Authorization") {
		t.Fatalf("preflight: %d %v", pre.Status, pre.Header)
	}
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Origin", "https://app.example", "Upload-Length", "1"), nil)
	if r.Status != http.StatusCreated || !strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "Location") ||
		!strings.Contains(r.Header.Get("Access-Control-Expose-Headers"), "Retry-After") {
		t.Fatalf("CORS POST: %d %v", r.Status, r.Header)
	}
	bad := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Origin", "https://evil.example", "Upload-Length", "1"), nil)
	if bad.Status != http.StatusForbidden || bad.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("disallowed origin: %d %v", bad.Status, bad.Header)
	}
	same := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Origin", g.URL, "Upload-Length", "1"), nil)
	if same.Status != http.StatusCreated {
		t.Fatalf("same-origin POST: %d %s", same.Status, same.Body)
	}
}

// A multipart upload aborted behind tusgate's back (a lifecycle rule, MinIO's
// stale-upload cleanup) must answer 404 so the client starts over, not 423
// or 503 forever.
func TestAbortedMultipartUploadIs404(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	loc := create(t, g, 12*MiB)
	data, _ := payload(6*MiB, 24)
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d", r.Status)
	}
	id := uploadID(loc)
	i := strings.LastIndex(id, "+")
	if _, err := b.s3.Client.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{
		Bucket: aws.String(testBucket), Key: aws.String(id[:i]), UploadId: aws.String(id[i+1:]),
	}); err != nil {
		t.Fatal(err)
	}
	if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != http.StatusNotFound {
		t.Fatalf("HEAD of an aborted upload: %d, want 404", r.Status)
	}
	if r := patch(t, loc, 6*MiB, data); r.Status != http.StatusNotFound {
		t.Fatalf("PATCH of an aborted upload: %d, want 404", r.Status)
	}
}

// A partial upload whose assembly failed is finished, under its lock, when
// a final upload names it (tusd reads partials without their locks, and a
// repair must not run without one).
func TestConcatFinishesUnassembledPartial(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	g := b.start(t)
	data, _ := payload(6*MiB, 24)
	loc := create(t, g, int64(len(data)), "Upload-Concat", "partial")
	proxy.FailMatching(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
	})
	if r := patch(t, loc, 0, data); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("PATCH whose assembly fails: %d %s", r.Status, r.Body)
	}
	proxy.FailMatching(nil)
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Concat", "final;"+loc), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("final: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, r.Header.Get("Location"), sha256Hex(data), int64(len(data)))
	b.assertStored(t, loc, sha256Hex(data), int64(len(data)))
}
