package integration

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// A single PUT signed for 0 bytes must take 0 bytes: the SDK's signer
// leaves Content-Length out of the signature when it is 0, so without
// more the URL takes any body (up to S3's 5 GiB), past --max-size and the
// quotas, and nothing checks the object afterwards.
func TestDirectEmptySinglePutBindsSize(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--max-size", "1MiB")
	alice := d.user(t, "alice")
	var s signed
	if r := alice.call(t, "GET", "/s3/params?filename=e.txt&type=text/plain&size=0", nil, &s); r.Status != http.StatusOK {
		t.Fatalf("params size=0: %d %s", r.Status, r.Body)
	}
	data, _ := payload(2*MiB, 110)
	if status, _ := d.put(t, s, data); status/100 == 2 {
		u, _ := url.Parse(s.URL)
		t.Errorf("a URL signed for 0 bytes took %d bytes (--max-size 1MiB): S3 answered %d; signed headers %q",
			len(data), status, u.Query().Get("X-Amz-SignedHeaders"))
	}
	if status, _ := d.put(t, s, nil); status != http.StatusOK {
		t.Errorf("the empty PUT it was signed for: %d", status)
	}
}

// A part signed for 0 bytes binds 0 bytes, as any other signed size.
func TestDirectEmptyPartBindsSize(t *testing.T) {
	d := startDirect(t, s3Backend(t), "--max-size", "1MiB")
	alice := d.user(t, "alice")
	c := alice.create(t, map[string]any{"filename": "e", "size": 0})
	data, _ := payload(2*MiB, 111)
	if status, _ := d.put(t, alice.sign(t, c, 1, 0), data); status/100 == 2 {
		t.Errorf("a part URL signed for 0 bytes took %d bytes: S3 answered %d", len(data), status)
	}
	if parts := listedParts(t, alice, c); parts != 0 {
		t.Errorf("S3 holds %d parts of an upload declared empty", parts)
	}
}

// A single PUT's URL stores the object once: after the PUT has landed
// (and upload.finished went out with its ETag, or an application scanned
// it), replaying the URL until it expires must not replace the bytes.
func TestDirectSinglePutURLStoresOnce(t *testing.T) {
	d := startDirect(t, s3Backend(t))
	alice := d.user(t, "alice")
	var s signed
	if r := alice.call(t, "GET", "/s3/params?filename=a.txt&type=text/plain&size=3", nil, &s); r.Status != http.StatusOK {
		t.Fatalf("params: %d %s", r.Status, r.Body)
	}
	if status, _ := d.put(t, s, []byte("abc")); status != http.StatusOK {
		t.Fatalf("PUT: %d", status)
	}
	u, _ := url.Parse(s.URL)
	key := strings.TrimPrefix(u.Path, "/"+testBucket+"/")
	want := sha256Hex([]byte("abc"))
	status, _ := d.put(t, s, []byte("xyz"))
	if got, _ := d.b.s3.ObjectSHA256(t, testBucket, key); got != want {
		t.Errorf("replaying the signed URL replaced the finished object (S3 answered %d)", status)
	}
}

// Cancelling an upload that another instance completed meanwhile (this
// one still has its record cached from signing its parts) must not answer
// that it was cancelled: the object exists, and a user who cancels (the
// wrong file) is told it is gone.
func TestDirectAbortAfterCompleteElsewhere(t *testing.T) {
	b := s3Backend(t)
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	on := func() *directSetup {
		g := startGate(t, b.env, "--s3-bucket", testBucket, "--data-dir", t.TempDir(), "--oidc-issuer", iss.URL, "--oidc-audience", audience, "--direct-uploads")
		return &directSetup{authSetup: &authSetup{iss: iss, b: b, g: g}, s3c: caClient(t, b.s3.CABundle)}
	}
	d1, d2 := on(), on()
	alice1, alice2 := d1.user(t, "alice"), d2.user(t, "alice")
	c := alice1.create(t, map[string]any{"filename": "a.bin", "size": 3})
	e := alice1.uploadPart(t, c, 1, []byte("abc"), true)
	if r := alice2.complete(t, c, []completedPart{{1, e}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	r := alice1.call(t, "DELETE", uploadPath(c, ""), nil, nil)
	if _, n := b.s3.ObjectSHA256(t, testBucket, c.Key); n == 3 && r.Status/100 == 2 {
		t.Errorf("cancel after the upload was completed: %d %s, and the object is still there", r.Status, r.Body)
	}
}
