package integration

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// --max-size binds what is signed, and the parts' total at completion:
// over it the upload is aborted with 413.
func TestDirectMaxSize(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--max-size", "8MiB")
	alice := d.user(t, "alice")
	if r := alice.call(t, "POST", "/s3/multipart", map[string]any{"filename": "a", "size": 8*MiB + 1}, nil); r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "ERR_MAX_SIZE_EXCEEDED") {
		t.Errorf("create over --max-size: %d %s", r.Status, r.Body)
	}
	c := alice.create(t, map[string]any{"filename": "a"}) // size not declared
	if r := alice.call(t, "GET", partPath(c, 1, 8*MiB+1), nil, nil); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("signing a part over --max-size: %d %s", r.Status, r.Body)
	}
	data, _ := payload(10*MiB, 95)
	e1 := alice.uploadPart(t, c, 1, data[:5*MiB], false)
	e2 := alice.uploadPart(t, c, 2, data[5*MiB:], false)
	r := alice.complete(t, c, []completedPart{{1, e1}, {2, e2}})
	if r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "ERR_MAX_SIZE_EXCEEDED") {
		t.Fatalf("complete over --max-size: %d %s", r.Status, r.Body)
	}
	if !d.multipartGone(t, c) {
		t.Error("the upload over --max-size was not aborted")
	}
	if keys := d.b.s3.Keys(t, testBucket, ""); len(keys) != 0 {
		t.Errorf("bucket holds %v after the abort", keys)
	}
	// A declared size binds too: more parts than declared abort, fewer
	// are refused without losing the upload.
	c = alice.create(t, map[string]any{"filename": "b", "metadata": map[string]any{"size": strconv.Itoa(6 * MiB)}})
	if r := alice.call(t, "GET", partPath(c, 1, 6*MiB+1), nil, nil); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("signing a part over the declared size: %d %s", r.Status, r.Body)
	}
	e1 = alice.uploadPart(t, c, 1, data[:5*MiB], true)
	if r := alice.complete(t, c, []completedPart{{1, e1}}); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "ERR_SIZE_MISMATCH") {
		t.Errorf("complete under the declared size: %d %s", r.Status, r.Body)
	}
	e2 = alice.uploadPart(t, c, 2, data[5*MiB:7*MiB], false)
	if r := alice.complete(t, c, []completedPart{{1, e1}, {2, e2}}); r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "ERR_SIZE_EXCEEDED") {
		t.Errorf("complete over the declared size: %d %s", r.Status, r.Body)
	}
	if !d.multipartGone(t, c) {
		t.Error("the upload over its declared size was not aborted")
	}
}

// Quotas count tus and direct uploads together, bind declared sizes, and
// check the total at completion.
func TestDirectQuotas(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--quota-uploads", "3", "--quota-bytes", "16MiB")
	alice, bob := d.user(t, "alice"), d.user(t, "bob")
	if r := alice.call(t, "POST", "/s3/multipart", map[string]any{"filename": "a"}, nil); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "ERR_QUOTA_NEEDS_LENGTH") {
		t.Errorf("create without a size under --quota-bytes: %d %s", r.Status, r.Body)
	}
	a := alice.create(t, map[string]any{"filename": "a", "size": 10 * MiB})
	if r := alice.call(t, "POST", "/s3/multipart", map[string]any{"filename": "b", "size": 7 * MiB}, nil); r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "ERR_QUOTA_BYTES") {
		t.Errorf("create over the byte quota: %d %s", r.Status, r.Body)
	}
	// A tus upload counts the direct ones, and the other way round.
	th := with(bearer(d.token(t, "rsa1", "alice")), "Upload-Length", strconv.Itoa(7*MiB))
	if r := do(t, "POST", d.g.URL+"/files/", th, nil); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("tus create over the byte quota: %d %s", r.Status, r.Body)
	}
	if r := do(t, "POST", d.g.URL+"/files/", with(th, "Upload-Length", strconv.Itoa(3*MiB)), nil); r.Status != http.StatusCreated {
		t.Fatalf("tus create within quota: %d %s", r.Status, r.Body)
	}
	b := alice.create(t, map[string]any{"filename": "b", "size": 3 * MiB})
	if r := alice.call(t, "POST", "/s3/multipart", map[string]any{"filename": "c", "size": 0}, nil); r.Status != http.StatusForbidden || !strings.Contains(r.Body, "ERR_QUOTA_UPLOADS") {
		t.Errorf("a fourth upload: %d %s", r.Status, r.Body)
	}
	if r := alice.call(t, "GET", "/s3/params?filename=c&size=0", nil, nil); r.Status != http.StatusForbidden {
		t.Errorf("a fourth upload as a single PUT: %d %s", r.Status, r.Body)
	}
	bob.create(t, map[string]any{"filename": "x", "size": 16 * MiB}) // bob has his own
	// Cancelling frees a slot.
	if r := alice.call(t, "DELETE", uploadPath(b, ""), nil, nil); r.Status != http.StatusOK || strings.TrimSpace(r.Body) != "{}" {
		t.Fatalf("abort: %d %q", r.Status, r.Body)
	}
	if !d.multipartGone(t, b) {
		t.Fatal("abort left the multipart upload")
	}
	alice.create(t, map[string]any{"filename": "c", "size": 3 * MiB})
	// Finishing frees bytes.
	data, sum := payload(10*MiB, 96)
	e1 := alice.uploadPart(t, a, 1, data[:5*MiB], true)
	e2 := alice.uploadPart(t, a, 2, data[5*MiB:], true)
	if r := alice.complete(t, a, []completedPart{{1, e1}, {2, e2}}); r.Status != http.StatusOK {
		t.Fatalf("complete within quota: %d %s", r.Status, r.Body)
	}
	if got, _ := d.b.s3.ObjectSHA256(t, testBucket, a.Key); got != sum {
		t.Fatal("object differs")
	}
	alice.create(t, map[string]any{"filename": "d", "size": 10 * MiB})
}

// Single PUTs: the URL binds the size and the headers that give the object
// its type, disposition and owner.
func TestDirectSinglePut(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--max-size", "1MiB")
	alice := d.user(t, "alice")
	if r := alice.call(t, "GET", "/s3/params?filename=a.txt&type=text/plain", nil, nil); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "ERR_SIZE_REQUIRED") {
		t.Errorf("params without size: %d %s", r.Status, r.Body)
	}
	if r := alice.call(t, "GET", "/s3/params?filename=a.txt&size=1048577", nil, nil); r.Status != http.StatusRequestEntityTooLarge {
		t.Errorf("params over --max-size: %d %s", r.Status, r.Body)
	}
	data, sum := payload(1000, 97)
	q := url.Values{"filename": {"../a b.txt"}, "type": {"text/plain"}, "size": {"1000"}, "metadata[project]": {"x1"}}
	var s signed
	if r := alice.call(t, "GET", "/s3/params?"+q.Encode(), nil, &s); r.Status != http.StatusOK || s.Method != "PUT" {
		t.Fatalf("params: %d %s", r.Status, r.Body)
	}
	if s.Headers["content-type"] != "text/plain" || s.Headers["x-amz-meta-tusgate-owner"] != "alice" {
		t.Errorf("signed headers %v", s.Headers)
	}
	u, _ := url.Parse(s.URL)
	key := strings.TrimPrefix(u.Path, "/"+testBucket+"/")
	if !directKey.MatchString(key) {
		t.Fatalf("single PUT key %q", key)
	}
	if status, _ := d.put(t, s, append(data, 'x')); status != http.StatusForbidden {
		t.Errorf("PUT larger than signed: %d", status)
	}
	noType := signed{URL: s.URL, Headers: map[string]string{}}
	for k, v := range s.Headers {
		if k != "content-type" {
			noType.Headers[k] = v
		}
	}
	// Refused: 403 on AWS and versitygw (signature), 400 on MinIO.
	if status, _ := d.put(t, noType, data); status != http.StatusForbidden && status != http.StatusBadRequest {
		t.Errorf("PUT without the signed Content-Type: %d", status)
	}
	if status, etag := d.put(t, s, data); status != http.StatusOK || etag == "" {
		t.Fatalf("PUT: %d %q", status, etag)
	}
	if got, _ := d.b.s3.ObjectSHA256(t, testBucket, key); got != sum {
		t.Fatal("object differs")
	}
	head, err := d.b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(head.ContentType) != "text/plain" || aws.ToString(head.ContentDisposition) != `attachment; filename="a b.txt"` || head.Metadata["project"] != "x1" {
		t.Errorf("object: type %q, disposition %q, metadata %v", aws.ToString(head.ContentType), aws.ToString(head.ContentDisposition), head.Metadata)
	}
}

// The parts listing has every part, across ListParts pages (S3 gives at
// most 1000 a page).
func TestDirectListsAllPages(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice := d.user(t, "alice")
	c := alice.create(t, map[string]any{"filename": "a"})
	const n = 1003 // and two more from a batch
	for pn := 1; pn <= n; pn++ {
		alice.uploadPart(t, c, pn, []byte(fmt.Sprint(pn)), true)
	}
	// Companion's batch route signs several parts at once.
	var batch struct{ PresignedUrls map[string]string }
	if r := alice.call(t, "GET", uploadPath(c, "/batch")+"&partNumbers=1004,1005", nil, &batch); r.Status != http.StatusOK || len(batch.PresignedUrls) != 2 {
		t.Fatalf("batch: %d %s", r.Status, r.Body)
	}
	for _, pn := range []string{"1004", "1005"} {
		if status, _ := d.put(t, signed{URL: batch.PresignedUrls[pn]}, []byte(pn)); status != http.StatusOK {
			t.Fatalf("PUT part %s from the batch: %d", pn, status)
		}
	}
	for _, bad := range []string{"", "0", "1,x", "10001"} {
		if r := alice.call(t, "GET", uploadPath(c, "/batch")+"&partNumbers="+bad, nil, nil); r.Status != http.StatusBadRequest {
			t.Errorf("batch of %q: %d %s", bad, r.Status, r.Body)
		}
	}
	var parts []struct {
		PartNumber int
		Size       int64
	}
	if r := alice.call(t, "GET", uploadPath(c, ""), nil, &parts); r.Status != http.StatusOK {
		t.Fatalf("list: %d", r.Status)
	}
	if len(parts) != n+2 {
		t.Fatalf("listed %d parts, want %d", len(parts), n+2)
	}
	for i, p := range parts {
		if p.PartNumber != i+1 || p.Size != int64(len(fmt.Sprint(i+1))) {
			t.Fatalf("part %d listed as %+v", i+1, p)
		}
	}
}

// A completion whose answer was lost (S3 completed the upload, its answer
// never reached tusgate, or tusgate's never reached the client) is answered
// again when the client retries: 200 with the object, not 404.
func TestDirectCompleteAnswerLost(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	d := startDirect(t, b)
	alice, bob := d.user(t, "alice"), d.user(t, "bob")
	data, sum := payload(6*MiB, 102)
	c := alice.create(t, map[string]any{"filename": "a.bin", "size": len(data)})
	parts := []completedPart{{1, alice.uploadPart(t, c, 1, data[:5*MiB], true)}, {2, alice.uploadPart(t, c, 2, data[5*MiB:], true)}}
	isComplete := func(r *http.Request) bool { return r.Method == http.MethodPost && r.URL.Query().Has("uploadId") }
	proxy.LoseAnswerMatching(isComplete)
	if r := alice.complete(t, c, parts); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("complete whose S3 answer was lost: %d %s, want 503 (retry)", r.Status, r.Body)
	}
	proxy.LoseAnswerMatching(nil)
	if got, n := d.b.s3.ObjectSHA256(t, testBucket, c.Key); got != sum || n != int64(len(data)) {
		t.Fatalf("S3 did not complete the upload behind the lost answer (%d bytes)", n)
	}
	// The retry, and one more (the first retry removed the upload's
	// record), each answer as the lost answer would have.
	for i := range 2 {
		r := alice.complete(t, c, parts)
		var done struct {
			Location, Key, Bucket, ETag string
			Size                        int64
		}
		if r.Status != http.StatusOK || json.Unmarshal([]byte(r.Body), &done) != nil || done.Key != c.Key || done.Bucket != testBucket || done.Size != int64(len(data)) || done.ETag == "" || done.Location == "" {
			t.Fatalf("retry %d of the complete: %d %s", i+1, r.Status, r.Body)
		}
	}
	if r := bob.complete(t, c, parts); r.Status != http.StatusNotFound {
		t.Fatalf("another user's complete of a finished upload: %d %s, want 404", r.Status, r.Body)
	}
	// An upload that was cancelled instead stays not found.
	x := alice.create(t, map[string]any{"filename": "x.bin", "size": 5 * MiB})
	xp := []completedPart{{1, alice.uploadPart(t, x, 1, data[:5*MiB], true)}}
	if r := alice.call(t, "DELETE", uploadPath(x, ""), nil, nil); r.Status != http.StatusOK {
		t.Fatalf("abort: %d %s", r.Status, r.Body)
	}
	if r := alice.complete(t, x, xp); r.Status != http.StatusNotFound {
		t.Fatalf("complete of a cancelled upload: %d %s, want 404", r.Status, r.Body)
	}
}

// Under --quota-bytes the sizes of an upload's part URLs are bounded in
// total, not only one by one: part n of an upload of d bytes may hold at
// most d/n bytes (every cut into parts of equal size fits), and an upload
// has at most as many parts as d holds minimum parts. Before, 10,000 URLs
// of the declared size each let S3 hold 10,000 times the quota until the
// janitor came.
func TestDirectQuotaBoundsPartURLsInTotal(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--quota-bytes", "64MiB")
	alice := d.user(t, "alice")
	c := alice.create(t, map[string]any{"filename": "a", "size": 12 * MiB})
	if r := alice.call(t, "GET", partPath(c, 2, 6*MiB+1), nil, nil); r.Status != http.StatusRequestEntityTooLarge || !strings.Contains(r.Body, "ERR_PART_TOO_LARGE") {
		t.Errorf("part 2 of 6 MiB + 1 of a 12 MiB upload: %d %s; want 413 ERR_PART_TOO_LARGE", r.Status, r.Body)
	}
	if r := alice.call(t, "GET", partPath(c, 4, 1), nil, nil); r.Status != http.StatusBadRequest || !strings.Contains(r.Body, "ERR_INVALID_PART_NUMBER") {
		t.Errorf("part 4 of a 12 MiB upload (3 parts at most): %d %s; want 400 ERR_INVALID_PART_NUMBER", r.Status, r.Body)
	}
	for pn, size := range map[int]int64{1: 12 * MiB, 2: 6 * MiB, 3: 4 * MiB} {
		if r := alice.call(t, "GET", partPath(c, pn, size), nil, nil); r.Status != http.StatusOK {
			t.Errorf("part %d of %d bytes: %d %s", pn, size, r.Status, r.Body)
		}
	}
	// Parts of equal size, the last smaller, go through.
	data, sum := payload(12*MiB, 97)
	e1 := alice.uploadPart(t, c, 1, data[:5*MiB], true)
	e2 := alice.uploadPart(t, c, 2, data[5*MiB:10*MiB], true)
	e3 := alice.uploadPart(t, c, 3, data[10*MiB:], true)
	if r := alice.complete(t, c, []completedPart{{1, e1}, {2, e2}, {3, e3}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	if got, _ := d.b.s3.ObjectSHA256(t, testBucket, c.Key); got != sum {
		t.Fatal("object differs")
	}
}
