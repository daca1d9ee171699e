package integration

import (
	"crypto/sha256"
	"encoding/base64"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/test/testenv"
)

// Every /s3/ route wants the same bearer token as tus, answered per RFC
// 6750.
func TestDirectRoutesNeedToken(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	c := created{Key: "k", UploadID: "u"}
	for _, rt := range []struct{ method, path string }{
		{"POST", "/s3/multipart"},
		{"GET", partPath(c, 1, -1)},
		{"GET", uploadPath(c, "")},
		{"POST", uploadPath(c, "/complete")},
		{"DELETE", uploadPath(c, "")},
		{"GET", "/s3/params?filename=a&type=text/plain&size=1"},
	} {
		r := do(t, rt.method, d.g.URL+rt.path, nil, nil)
		if r.Status != http.StatusUnauthorized || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer ") {
			t.Errorf("%s %s without a token: %d, WWW-Authenticate %q; want 401 Bearer", rt.method, rt.path, r.Status, r.Header.Get("WWW-Authenticate"))
		}
		r = do(t, rt.method, d.g.URL+rt.path, map[string]string{"Authorization": "Bearer not.a.token"}, nil)
		if r.Status != http.StatusUnauthorized || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s %s with a bad token: %d, WWW-Authenticate %q; want 401 invalid_token", rt.method, rt.path, r.Status, r.Header.Get("WWW-Authenticate"))
		}
	}
}

// A multipart upload from creation to the finished object: the server
// picks the key, the object gets the bytes, type, disposition and owner.
func TestDirectMultipartRoundTrip(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice := d.user(t, "auth0|alice")
	c := alice.create(t, map[string]any{"filename": "../../etc/évian.bin", "type": "video/mp4", "metadata": map[string]any{"name": "évian.bin", "relativePath": nil}})
	if !directKey.MatchString(c.Key) || c.Bucket != testBucket || c.UploadID == "" {
		t.Fatalf("create answered %+v; want a key <owner>/d-<hex> chosen by the server", c)
	}
	data, sum := payload(11*MiB+7, 90)
	e1 := alice.uploadPart(t, c, 1, data[:6*MiB], true)
	e2 := alice.uploadPart(t, c, 2, data[6*MiB:], false)

	var parts []struct {
		PartNumber int
		Size       int64
		ETag       string
	}
	if r := alice.call(t, "GET", uploadPath(c, ""), nil, &parts); r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	if len(parts) != 2 || parts[0].Size != 6*MiB || parts[1].ETag != e2 || parts[0].ETag != e1 {
		t.Fatalf("listed parts %+v", parts)
	}
	var done struct {
		Location, Key, Bucket, ETag string
		Size                        int64
	}
	r := alice.call(t, "POST", uploadPath(c, "/complete"), map[string]any{"parts": []completedPart{{1, e1}, {2, e2}}}, &done)
	if r.Status != http.StatusOK || done.Key != c.Key || done.Bucket != testBucket || done.Size != int64(len(data)) || done.Location == "" {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	if got, n := d.b.s3.ObjectSHA256(t, testBucket, c.Key); got != sum || n != int64(len(data)) {
		t.Fatalf("object: %d bytes, sha256 %s; want %d, %s", n, got, len(data), sum)
	}
	head, err := d.b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(c.Key)})
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(head.ContentType); ct != "video/mp4" {
		t.Errorf("Content-Type %q", ct)
	}
	if cd := aws.ToString(head.ContentDisposition); cd != `attachment; filename*=utf-8''%C3%A9vian.bin` {
		t.Errorf("Content-Disposition %q", cd)
	}
	if head.Metadata["tusgate-owner"] != "auth0|alice" {
		t.Errorf("metadata %v lacks the owner", head.Metadata)
	}
	// The record is gone with the multipart upload; the key holds nothing
	// of the client's.
	if keys := d.b.s3.Keys(t, testBucket, ""); len(keys) != 1 || keys[0] != c.Key {
		t.Errorf("bucket holds %v; want only the object", keys)
	}
	// Completing again (a retry whose first answer was lost) answers as
	// the first did. (The location may escape the key's slashes
	// differently: S3 servers differ there.)
	again := done
	unescaped := func(s string) string { u, _ := url.PathUnescape(s); return u }
	r = alice.call(t, "POST", uploadPath(c, "/complete"), map[string]any{"parts": []completedPart{{1, e1}, {2, e2}}}, &again)
	if again.Location = unescaped(again.Location); r.Status != http.StatusOK || again.Location != unescaped(done.Location) || again.Key != done.Key || again.ETag != done.ETag || again.Size != done.Size || again.Bucket != done.Bucket {
		t.Errorf("second complete: %d %s; the first answered %+v", r.Status, r.Body, done)
	}
}

// Another user's uploadId and key get 404 on every route, and leave the
// upload as it was.
func TestDirectOtherUsersUploads(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice, bob := d.user(t, "alice"), d.user(t, "bob")
	c := alice.create(t, map[string]any{"filename": "a.bin"})
	data, _ := payload(5*MiB, 91)
	e1 := alice.uploadPart(t, c, 1, data, true)
	mine := bob.create(t, map[string]any{"filename": "b.bin"})

	for name, target := range map[string]created{
		"alice's key and uploadId":         c,
		"bob's key with alice's uploadId":  {Key: mine.Key, UploadID: c.UploadID},
		"alice's key with bob's uploadId":  {Key: c.Key, UploadID: mine.UploadID},
		"alice's key with an empty upload": {Key: c.Key, UploadID: ""},
	} {
		for _, rt := range []struct{ method, path string }{
			{"GET", partPath(target, 1, -1)},
			{"GET", partPath(target, 2, 5*MiB)},
			{"GET", uploadPath(target, "/batch") + "&partNumbers=1,2"},
			{"GET", uploadPath(target, "")},
			{"DELETE", uploadPath(target, "")},
		} {
			if r := bob.call(t, rt.method, rt.path, nil, nil); r.Status != http.StatusNotFound && r.Status != http.StatusForbidden {
				t.Errorf("%s: bob %s %s: %d %s; want 404", name, rt.method, rt.path, r.Status, r.Body)
			} else if strings.Contains(r.Body, "X-Amz-Signature") {
				t.Errorf("%s: bob got a signed URL", name)
			}
		}
		if r := bob.complete(t, target, []completedPart{{1, e1}}); r.Status != http.StatusNotFound && r.Status != http.StatusForbidden {
			t.Errorf("%s: bob completes: %d %s", name, r.Status, r.Body)
		}
	}
	if d.multipartGone(t, c) {
		t.Fatal("bob's requests removed alice's upload")
	}
	if r := alice.complete(t, c, []completedPart{{1, e1}}); r.Status != http.StatusOK {
		t.Fatalf("alice completes her upload: %d %s", r.Status, r.Body)
	}
}

// Keys tusgate did not give out are never signed: other folders, other
// names, "..", the internal folder, and keys under the caller's folder
// that no record backs.
func TestDirectForgedKeys(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice, bob := d.user(t, "alice"), d.user(t, "bob")
	c := alice.create(t, map[string]any{"filename": "a.bin"})
	b := bob.create(t, map[string]any{"filename": "b.bin"})
	aliceFolder, _, _ := strings.Cut(c.Key, "/")
	bobFolder, bobName, _ := strings.Cut(b.Key, "/")
	for _, key := range []string{
		aliceFolder + "/d-00000000000000000000000000000000",
		bobFolder + "/../" + c.Key,
		bobFolder + "/./" + bobName,
		bobFolder + "/" + bobName + "/..",
		bobFolder + "/" + strings.TrimPrefix(bobName, "d-"),
		".tusgate/direct/" + b.Key,
		"/" + b.Key,
		b.Key + ".info",
		"other/" + b.Key,
		strings.ToUpper(bobFolder) + "/" + bobName,
		bobFolder + "/d-" + strings.Repeat("0", 32),
		"",
	} {
		forged := created{Key: key, UploadID: b.UploadID}
		for _, rt := range []struct{ method, path string }{
			{"GET", partPath(forged, 1, 1)},
			{"GET", uploadPath(forged, "/batch") + "&partNumbers=1"},
			{"GET", uploadPath(forged, "")},
			{"POST", uploadPath(forged, "/complete")},
			{"DELETE", uploadPath(forged, "")},
		} {
			if r := bob.call(t, rt.method, rt.path, map[string]any{"parts": []completedPart{{1, `"x"`}}}, nil); r.Status != http.StatusNotFound {
				t.Errorf("key %q: %s %s: %d %s; want 404", key, rt.method, rt.path, r.Status, r.Body)
			}
		}
	}
	// A ".." in the file name stays out of the key.
	e := bob.create(t, map[string]any{"filename": "../../" + c.Key, "type": "text/plain"})
	if !directKey.MatchString(e.Key) || strings.Contains(e.Key, "..") || !strings.HasPrefix(e.Key, bobFolder+"/") {
		t.Errorf("file name with .. gave key %q", e.Key)
	}
	if d.multipartGone(t, c) || d.multipartGone(t, b) {
		t.Error("forged requests removed an upload")
	}
}

// A URL signed for a size takes exactly that many bytes; S3 refuses the
// rest, and URLs expire.
func TestDirectSignedSizeAndExpiry(t *testing.T) {
	// 3 s: short for the expiry check below, long enough that the PUTs
	// before it are not refused as expired on a loaded machine.
	d := startDirect(t, s3Backend(t), "--direct-url-expiry", "3s")
	alice := d.user(t, "alice")
	c := alice.create(t, map[string]any{"filename": "a.bin"})
	data, _ := payload(5*MiB+1, 92)
	if status, _ := d.put(t, alice.sign(t, c, 1, 5*MiB), data); status != http.StatusForbidden {
		t.Errorf("a part larger than signed: S3 answered %d, want 403", status)
	}
	if status, _ := d.put(t, alice.sign(t, c, 1, 5*MiB+2), data); status != http.StatusForbidden {
		t.Errorf("a part smaller than signed: S3 answered %d, want 403", status)
	}
	// With the part's SHA-256 signed, S3 stores only the whole part: not
	// other bytes, nor a body cut off mid-way (which versitygw 1.8 would
	// otherwise keep, filled up with zeros).
	other, _ := payload(int64(len(data)), 93)
	withSum := func(b []byte) signed {
		var s signed
		sum := sha256.Sum256(b)
		p := partPath(c, 1, int64(len(b))) + "&sha256=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sum[:]))
		if r := alice.call(t, "GET", p, nil, &s); r.Status != http.StatusOK || s.Headers["x-amz-checksum-sha256"] == "" {
			t.Fatalf("sign with sha256: %d %s", r.Status, r.Body)
		}
		return s
	}
	if status, _ := d.put(t, withSum(other), data); status != http.StatusBadRequest {
		t.Errorf("a part whose bytes do not match the signed SHA-256: S3 answered %d, want 400 (BadDigest)", status)
	}
	// Cut off now; the part listing below comes after the URL expiry's
	// wait, by when S3 has long seen the connection close.
	d.putCut(t, withSum(data), data, len(data)/3)
	if r := alice.call(t, "GET", partPath(c, 1, -1)+"&sha256=x", nil, nil); r.Status != http.StatusBadRequest {
		t.Errorf("a malformed sha256: %d %s", r.Status, r.Body)
	}
	s := alice.sign(t, c, 1, int64(len(data)))
	if s.Expires != 3 {
		t.Errorf("expires %d, want 3 (seconds)", s.Expires)
	}
	u, _ := url.Parse(s.URL)
	if q := u.Query(); q.Get("X-Amz-Expires") != "3" || !strings.Contains(q.Get("X-Amz-SignedHeaders"), "content-length") || q.Get("x-amz-checksum-crc32") != "" || q.Get("x-amz-sdk-checksum-algorithm") != "" {
		t.Errorf("signed URL's query %v", q)
	}
	// The signature's lifetime counts from its X-Amz-Date, in seconds.
	time.Sleep(4100 * time.Millisecond)
	if status, _ := d.put(t, s, data); status != http.StatusForbidden {
		t.Errorf("an expired URL: S3 answered %d, want 403", status)
	}
	if parts := listedParts(t, alice, c); parts != 0 {
		t.Errorf("S3 stored %d parts from refused requests", parts)
	}
	// Part numbers and sizes outside S3's rules are not signed.
	for _, p := range []string{partPath(c, 0, -1), partPath(c, 10001, -1), partPath(c, 1, 5<<30+1), partPath(c, 1, -1) + "&size=-1", strings.Replace(partPath(c, 1, -1), "/1?", "/x?", 1)} {
		if r := alice.call(t, "GET", p, nil, nil); r.Status != http.StatusBadRequest {
			t.Errorf("GET %s: %d %s; want 400", p, r.Status, r.Body)
		}
	}
}

func listedParts(t *testing.T, u *user, c created) int {
	t.Helper()
	var parts []map[string]any
	if r := u.call(t, "GET", uploadPath(c, ""), nil, &parts); r.Status != http.StatusOK {
		t.Fatalf("list: %d %s", r.Status, r.Body)
	}
	return len(parts)
}

// Completing with parts another upload stored, or parts never stored,
// fails, and the upload stays as it was.
func TestDirectCompleteWithForeignParts(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice := d.user(t, "alice")
	a := alice.create(t, map[string]any{"filename": "a.bin"})
	b := alice.create(t, map[string]any{"filename": "b.bin"})
	da, _ := payload(5*MiB, 93)
	db, _ := payload(5*MiB, 94)
	ea := alice.uploadPart(t, a, 1, da, true)
	eb := alice.uploadPart(t, b, 1, db, true)
	eb2 := alice.uploadPart(t, b, 2, db[:10], true)
	for name, parts := range map[string][]completedPart{
		"b's ETag":           {{1, eb}},
		"a part a lacks":     {{1, ea}, {2, eb2}},
		"no parts":           {},
		"numbers going down": {{2, ea}, {1, ea}},
		"part 0":             {{0, ea}},
	} {
		if r := alice.complete(t, a, parts); r.Status != http.StatusBadRequest {
			t.Errorf("completing a with %s: %d %s; want 400", name, r.Status, r.Body)
		}
	}
	// b's uploadId with a's key, and the other way round, name no upload.
	if r := alice.complete(t, created{Key: a.Key, UploadID: b.UploadID}, []completedPart{{1, eb}}); r.Status != http.StatusNotFound {
		t.Errorf("a's key with b's uploadId: %d %s", r.Status, r.Body)
	}
	if d.multipartGone(t, a) || d.multipartGone(t, b) {
		t.Fatal("a refused completion removed an upload")
	}
	if r := alice.complete(t, a, []completedPart{{1, ea}}); r.Status != http.StatusOK {
		t.Fatalf("a with its own part: %d %s", r.Status, r.Body)
	}
}

// Ownership records live in the bucket: an upload created through one
// instance is signed, listed, completed and aborted through another, and
// still refused to other users there.
func TestDirectAcrossInstances(t *testing.T) {
	b := s3Backend(t)
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	on := func() *directSetup {
		g := startGate(t, b.env, "--s3-bucket", testBucket, "--data-dir", t.TempDir(), "--oidc-issuer", iss.URL, "--oidc-audience", audience, "--direct-uploads")
		return &directSetup{authSetup: &authSetup{iss: iss, b: b, g: g}, s3c: caClient(t, b.s3.CABundle)}
	}
	d1, d2 := on(), on()
	alice1, alice2, bob2 := d1.user(t, "alice"), d2.user(t, "alice"), d2.user(t, "bob")

	c := alice1.create(t, map[string]any{"filename": "a.bin", "size": 6 * MiB})
	data, sum := payload(6*MiB, 101)
	e1 := alice2.uploadPart(t, c, 1, data[:5*MiB], true)
	e2 := alice1.uploadPart(t, c, 2, data[5*MiB:], true)
	if r := bob2.call(t, "GET", partPath(c, 3, -1), nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("bob signs alice's upload on the other instance: %d %s", r.Status, r.Body)
	}
	if n := listedParts(t, alice2, c); n != 2 {
		t.Fatalf("listed %d parts on the other instance", n)
	}
	if r := alice2.complete(t, c, []completedPart{{1, e1}, {2, e2}}); r.Status != http.StatusOK {
		t.Fatalf("complete on the other instance: %d %s", r.Status, r.Body)
	}
	if got, _ := b.s3.ObjectSHA256(t, testBucket, c.Key); got != sum {
		t.Fatal("object differs")
	}
	// Signing on the creating instance after the other one completed: its
	// cached record is stale, and S3 refuses the URL.
	if status, _ := d1.put(t, alice1.sign(t, c, 3, 1), []byte("x")); status != http.StatusNotFound {
		t.Errorf("a part for the completed upload: S3 answered %d, want 404 NoSuchUpload", status)
	}
	x := alice2.create(t, map[string]any{"filename": "x.bin", "size": 1})
	if r := alice1.call(t, "DELETE", uploadPath(x, ""), nil, nil); r.Status != http.StatusOK {
		t.Fatalf("abort on the other instance: %d %s", r.Status, r.Body)
	}
	if !d1.multipartGone(t, x) {
		t.Error("the aborted upload is still there")
	}
	if r := alice2.call(t, "GET", uploadPath(x, ""), nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("listing the aborted upload on the instance that created it: %d %s", r.Status, r.Body)
	}
}

// With --s3-object-prefix, keys and records lie under the prefix, and a key
// outside it names no upload.
func TestDirectWithObjectPrefix(t *testing.T) {
	d := startDirect(t, s3Backend(t, "--s3-object-prefix", "up/loads"))
	alice := d.user(t, "alice")
	c := alice.create(t, map[string]any{"filename": "a.bin"})
	rel, ok := strings.CutPrefix(c.Key, "up/loads/")
	if !ok || !directKey.MatchString(rel) {
		t.Fatalf("key %q is not up/loads/<owner>/d-<hex>", c.Key)
	}
	if keys := d.b.s3.Keys(t, testBucket, "up/loads/.tusgate/direct/"); len(keys) != 1 || keys[0] != "up/loads/.tusgate/direct/"+rel {
		t.Fatalf("records: %v", keys)
	}
	if r := alice.call(t, "GET", partPath(created{Key: rel, UploadID: c.UploadID}, 1, -1), nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("the key without its prefix: %d %s", r.Status, r.Body)
	}
	data, sum := payload(1000, 102)
	e := alice.uploadPart(t, c, 1, data, true)
	if r := alice.complete(t, c, []completedPart{{1, e}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	if got, _ := d.b.s3.ObjectSHA256(t, testBucket, c.Key); got != sum {
		t.Fatal("object differs")
	}
}

// A direct upload's multipart upload asks S3 for no checksum: its parts
// come from browsers, which sign a part's SHA-256 or nothing, and AWS S3
// refuses parts whose checksum is not the algorithm the upload was created
// with (tus uploads ask for a FULL_OBJECT CRC32, TestFullObject*). What
// tusgate asks is recorded by the proxy in front of versitygw, which would
// accept either.
func TestDirectCreatesPlainMultipartUpload(t *testing.T) {
	b, _, rec := fullObjectS3(t, false)
	d := startDirect(t, b)
	alice := d.user(t, "auth0|alice")
	c := alice.create(t, map[string]any{"filename": "a.bin"})
	data, want := payload(5*MiB+3, 17)
	sum := sha256.Sum256(data)
	var s signed
	p := partPath(c, 1, int64(len(data))) + "&sha256=" + url.QueryEscape(base64.StdEncoding.EncodeToString(sum[:]))
	if r := alice.call(t, "GET", p, nil, &s); r.Status != http.StatusOK {
		t.Fatalf("sign: %d %s", r.Status, r.Body)
	}
	status, etag := d.put(t, s, data)
	if status != http.StatusOK {
		t.Fatalf("PUT part: %d", status)
	}
	if r := alice.complete(t, c, []completedPart{{1, etag}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	if got, n := d.b.s3.ObjectSHA256(t, testBucket, c.Key); got != want || n != int64(len(data)) {
		t.Fatalf("object: %d bytes, sha256 %s; want %s", n, got, want)
	}
	rec.mu.Lock()
	create := rec.creates[c.Key]
	rec.mu.Unlock()
	if create == nil {
		t.Fatal("no CreateMultipartUpload recorded")
	}
	for _, h := range []string{"X-Amz-Checksum-Algorithm", "X-Amz-Checksum-Type"} {
		if v := create.Get(h); v != "" {
			t.Errorf("CreateMultipartUpload of a direct upload sent %s: %s", h, v)
		}
	}
}
