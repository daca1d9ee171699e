package integration

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// An http:// endpoint with AWS_REQUEST_CHECKSUM_CALCULATION=when_required
// (the workaround docs/s3.md gives for servers that refuse checksums):
// a deferred-length upload whose last bytes wait in the tail is finished,
// and PATCHes through windows store their parts. Both sent an unseekable
// body that the SDK could not hash over plain HTTP, and answered 503
// forever.
func TestPlainHTTPWithoutChecksums(t *testing.T) {
	s3 := testenv.StartS3(t, testenv.S3Options{TLS: false})
	s3.CreateBucket(t, testBucket)
	b := &backend{name: "s3", s3: s3}
	env := append(s3.Env(), "AWS_REQUEST_CHECKSUM_CALCULATION=when_required")
	data, sum := payload(1<<20, 7)

	// The tail of a deferred-length upload becomes its last part.
	g := startGate(t, env, "--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", t.TempDir())
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Defer-Length", "1"), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	r = do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(len(data)), "Upload-Length", strconv.Itoa(len(data))), bytes.NewReader(nil))
	if r.Status != http.StatusNoContent {
		t.Fatalf("declaring the length at the offset: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, loc, sum, int64(len(data)))

	// Every PATCH through a window.
	big, bigSum := payload(11*MiB+5, 8)
	g2 := startGate(t, env, "--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", t.TempDir(), "--s3-buffer-memory", "0")
	loc2 := create(t, g2, int64(len(big)))
	if r := patch(t, loc2, 0, big); r.Status != http.StatusNoContent {
		t.Fatalf("window PATCH: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, loc2, bigSum, int64(len(big)))
}
