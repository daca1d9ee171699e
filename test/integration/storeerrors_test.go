package integration

import (
	"net/http"
	"strings"
	"testing"
)

// kmsDenied is what S3 answers when the gateway may not use the bucket's
// KMS key.
const kmsDenied = "User: arn:aws:sts::111122223333:assumed-role/tusgate/i-0 is not authorized to perform: kms:Decrypt on resource: arn:aws:kms:eu-west-1:111122223333:key/1234abcd"

// An S3 error that retrying cannot clear answers 500 ERR_STORAGE_FAILED
// without Retry-After, on HEAD too, so that clients stop instead of
// retrying forever; it is logged once with the upload's ID and counted. A
// transient one keeps answering 503 (HEAD: 423) with Retry-After, and the
// upload finishes intact once S3 recovers.
func TestPermanentS3ErrorsAreFinal(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	g := b.start(t)
	defer func() {
		if t.Failed() {
			t.Log(tail(g.LogPath, 30))
		}
	}()
	data, sum := payload(6*MiB, 90)
	loc := create(t, g, int64(len(data)))
	id := uploadID(loc)

	writes := func(r *http.Request) bool { return r.Method == http.MethodPut }
	stateReads := func(r *http.Request) bool {
		return r.Method == http.MethodGet && strings.HasSuffix(r.URL.Path, ".info")
	}
	creations := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Query().Has("uploads") }
	head := func() response { return do(t, "HEAD", loc, tusHeaders, nil) }
	post := func() response {
		return do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", "5"), nil)
	}

	final := func(what string, r response) {
		t.Helper()
		if r.Status != http.StatusInternalServerError || r.Header.Get("Retry-After") != "" {
			t.Fatalf("%s: %d Retry-After %q; want 500 without Retry-After", what, r.Status, r.Header.Get("Retry-After"))
		}
		if what != "HEAD" && (!strings.HasPrefix(r.Body, "ERR_STORAGE_FAILED: ") || !strings.Contains(r.Body, "contact the operator")) {
			t.Fatalf("%s: body %q", what, r.Body)
		}
		for _, raw := range []string{"InvalidArgument", "AccessDenied", "kms", "operation error"} {
			if strings.Contains(r.Body, raw) {
				t.Fatalf("%s: raw S3 error text in the answer: %q", what, r.Body)
			}
		}
		if r.Header.Get("Tusgate-Permanent-Failure") != "" {
			t.Fatalf("%s: the guard's marker left the server", what)
		}
	}
	proxy.RefuseMatching(writes, http.StatusBadRequest, "InvalidArgument", "x-amz-sdk-checksum-algorithm is not supported")
	final("PATCH", patch(t, loc, 0, data))
	proxy.RefuseMatching(stateReads, http.StatusForbidden, "AccessDenied", kmsDenied)
	final("HEAD", head())
	// s3store flattens this error to text; it is recognised all the same.
	proxy.RefuseMatching(creations, http.StatusForbidden, "AccessDenied", strings.Replace(kmsDenied, "Decrypt", "GenerateDataKey", 1))
	final("POST", post())

	var logged []string
	for line := range strings.Lines(g.Log()) {
		if strings.Contains(line, `msg="storage backend failed"`) {
			logged = append(logged, line)
		}
	}
	wantLogged := []struct{ op, id, cause string }{{"write", id, "InvalidArgument"}, {"info", id, "kms:Decrypt"}, {"create", "", "kms:GenerateDataKey"}}
	if len(logged) != len(wantLogged) {
		t.Fatalf("%d storage errors logged, want %d (one per request):\n%s", len(logged), len(wantLogged), strings.Join(logged, ""))
	}
	for i, w := range wantLogged {
		l := logged[i]
		if !strings.Contains(l, "kind=permanent") || !strings.Contains(l, "op="+w.op+" id="+w.id) || !strings.Contains(l, w.cause) {
			t.Errorf("log line %d: %s\nwant kind=permanent op=%s id=%s and the cause %s", i, l, w.op, w.id, w.cause)
		}
	}
	m := scrapeMetrics(t, g)
	if p, tr := m[`tusgate_storage_errors_total{kind="permanent"}`], m[`tusgate_storage_errors_total{kind="transient"}`]; p != 3 || tr != 0 {
		t.Fatalf("storage errors counted: %v permanent, %v transient; want 3, 0", p, tr)
	}

	// Transient trouble: throttling.
	proxy.RefuseMatching(writes, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	if r := patch(t, loc, 0, data); r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Body, "ERR_STORAGE_UNAVAILABLE") {
		t.Fatalf("PATCH while S3 throttles: %d Retry-After %q body %q", r.Status, r.Header.Get("Retry-After"), r.Body)
	}
	proxy.RefuseMatching(stateReads, http.StatusServiceUnavailable, "SlowDown", "Please reduce your request rate.")
	if r := head(); r.Status != http.StatusLocked || r.Header.Get("Retry-After") == "" {
		t.Fatalf("HEAD while S3 throttles: %d Retry-After %q; want 423 with Retry-After", r.Status, r.Header.Get("Retry-After"))
	}
	m = scrapeMetrics(t, g)
	if p, tr := m[`tusgate_storage_errors_total{kind="permanent"}`], m[`tusgate_storage_errors_total{kind="transient"}`]; p != 3 || tr != 2 {
		t.Fatalf("storage errors counted: %v permanent, %v transient; want 3, 2", p, tr)
	}

	proxy.RefuseMatching(nil, 0, "", "")
	uploadResumably(t, loc, data, int64(len(data)), 10)
	b.assertStored(t, loc, sum, int64(len(data)))
}
