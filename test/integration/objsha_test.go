package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/sha512"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// --object-sha256: the SHA-256 of every upload, computed as its bytes
// arrive and carried across requests, instances and restarts in the
// upload's .info (docs/integrity.md). Each test compares what tusgate
// reports with a SHA-256 it computes itself over the bytes it sent.

// sha256B64 is the SHA-256 of data as tusgate reports it.
func sha256B64(data []byte) string {
	s := sha256.Sum256(data)
	return base64.StdEncoding.EncodeToString(s[:])
}

// recomputed is what tusgate logs when it reads a finished object back
// for its SHA-256.
const recomputed = "computing the SHA-256 of a finished upload from its object"

// checkSHA checks that the finished upload at loc reports the SHA-256 of
// data: on HEAD (Upload-Object-SHA256), on S3 as the object's tag, and
// that the IETF draft's HEAD answers it as Repr-Digest.
func checkSHA(t *testing.T, b *backend, loc string, data []byte) {
	t.Helper()
	b.assertStored(t, loc, sha256Hex(data), int64(len(data)))
	want := sha256B64(data)
	r := do(t, "HEAD", loc, tusHeaders, nil)
	if got := r.Header.Get("Upload-Object-SHA256"); r.Status != http.StatusOK || got != want {
		t.Fatalf("HEAD %s: %d Upload-Object-SHA256 %q, want %q", loc, r.Status, got, want)
	}
	r = do(t, "HEAD", loc, map[string]string{"Upload-Draft-Interop-Version": "8"}, nil)
	if got := r.Header.Get("Repr-Digest"); r.Status != http.StatusNoContent || got != "sha-256=:"+want+":" || r.Header.Get("Upload-Object-SHA256") != want {
		t.Fatalf("IETF-draft HEAD %s: %d Repr-Digest %q Upload-Object-SHA256 %q, want sha-256=:%s:", loc, r.Status, got, r.Header.Get("Upload-Object-SHA256"), want)
	}
	if b.s3 != nil {
		out, err := b.s3.Client.GetObjectTagging(t.Context(), &s3.GetObjectTaggingInput{Bucket: aws.String(testBucket), Key: aws.String(objectKey(uploadID(loc)))})
		if err != nil {
			t.Fatal(err)
		}
		var tag string
		for _, tg := range out.TagSet {
			if aws.ToString(tg.Key) == "tusgate-sha256" {
				tag = aws.ToString(tg.Value)
			}
		}
		if tag != want {
			t.Fatalf("object tag tusgate-sha256 = %q, want %q (tags %+v)", tag, want, out.TagSet)
		}
	}
}

// shaBackends runs f against S3 (behind a recording proxy) and the disk
// store; rec is nil for the disk store.
func shaBackends(t *testing.T, f func(t *testing.T, b *backend, rec *s3Requests)) {
	t.Run("s3", func(t *testing.T) {
		b, _, rec := fullObjectS3(t, true)
		f(t, b, rec)
	})
	t.Run("disk", func(t *testing.T) { f(t, diskBackend(t), nil) })
}

// readBack is how many times tusgate read the finished object of loc.
func (rec *s3Requests) readBack(loc string) int {
	if rec == nil {
		return 0
	}
	rec.mu.Lock()
	defer rec.mu.Unlock()
	return rec.gets[objectKey(uploadID(loc))]
}

// An upload in PATCHes of odd sizes (tails, parts holding tails' bytes)
// and one in a single PATCH: the SHA-256 of each is reported, and the
// object is never read back for it.
func TestObjectSHA256(t *testing.T) {
	data, _ := payload(17*MiB+333, 101)
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		g := b.start(t, "--object-sha256")
		loc := create(t, g, int64(len(data)))
		for off := 0; off < len(data); off += 3*MiB + 7 {
			end := min(off+3*MiB+7, len(data))
			if r := patch(t, loc, int64(off), data[off:end]); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH at %d: %d %s", off, r.Status, r.Body)
			}
		}
		checkSHA(t, b, loc, data)
		one := create(t, g, int64(len(data)))
		if r := patch(t, one, 0, data); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		checkSHA(t, b, one, data)
		empty := create(t, g, 0)
		checkSHA(t, b, empty, nil)
		if n := rec.readBack(loc) + rec.readBack(one) + rec.readBack(empty); n != 0 || strings.Contains(g.Log(), recomputed) {
			t.Fatalf("objects read back %d times for their SHA-256", n)
		}
		// Without the flag, uploads pay nothing and report nothing.
		g.Kill()
		plain := b.start(t)
		loc = create(t, plain, 10)
		patch(t, loc, 0, data[:10])
		if h := do(t, "HEAD", loc, tusHeaders, nil).Header.Get("Upload-Object-SHA256"); h != "" {
			t.Fatalf("an upload without --object-sha256 reports %q", h)
		}
	})
}

// Half an upload through one instance, the rest through another (the same
// bucket or data directory): the second goes on from the state the first
// left in the .info, without reading anything back.
func TestObjectSHA256ResumedOnAnotherInstance(t *testing.T) {
	data, _ := payload(14*MiB+5, 102)
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		first := b.start(t, "--object-sha256")
		loc := create(t, first, int64(len(data)))
		if r := patch(t, loc, 0, data[:8*MiB+1]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		first.Terminate(20 * time.Second)
		second := b.start(t, "--object-sha256")
		loc = strings.Replace(loc, first.URL, second.URL, 1)
		off := headOffset(t, loc)
		if r := patch(t, loc, off, data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH at %d on the second instance: %d %s", off, r.Status, r.Body)
		}
		checkSHA(t, b, loc, data)
		if n := rec.readBack(loc); n != 0 || strings.Contains(second.Log(), recomputed) {
			t.Fatalf("the object was read back %d times: the state was not carried over", n)
		}
	})
}

// tusgate is killed (SIGKILL) in the middle of a PATCH, restarted, and the
// upload resumed: its SHA-256 is right, whether the state the kill left
// fits what was stored or not (then it is computed from the object).
func TestObjectSHA256KilledMidUpload(t *testing.T) {
	data, _ := payload(26*MiB+11, 103)
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		g := b.start(t, "--object-sha256")
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data[:6*MiB+3]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		body := newCountingReader(bytes.NewReader(data[6*MiB+3:]), 12*MiB, false)
		errc := make(chan error, 1)
		go func() {
			_, err := tryDo(context.Background(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(6*MiB+3)), body, int64(len(data)-6*MiB-3))
			errc <- err
		}()
		<-body.reached
		g.Kill()
		<-errc
		g.Restart()
		off := headOffset(t, loc)
		if r := patch(t, loc, off, data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("resumed PATCH at %d: %d %s", off, r.Status, r.Body)
		}
		checkSHA(t, b, loc, data)
		if n := strings.Count(g.Log(), recomputed); n != rec.readBack(loc) || n > 1 {
			t.Fatalf("logged %d recomputations, read the object %d times", n, rec.readBack(loc))
		}
	})
}

// The state is lost (here: the upload was begun by an instance without
// --object-sha256): the SHA-256 is computed from the finished object
// (S3) or the file (disk), logged once, and right.
func TestObjectSHA256LostState(t *testing.T) {
	data, _ := payload(12*MiB+9, 104)
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		before := b.start(t)
		loc := create(t, before, int64(len(data)))
		if r := patch(t, loc, 0, data[:7*MiB]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		before.Kill()
		g := b.start(t, "--object-sha256")
		loc = strings.Replace(loc, before.URL, g.URL, 1)
		if r := patch(t, loc, 7*MiB, data[7*MiB:]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		checkSHA(t, b, loc, data)
		if rec != nil {
			if n, logged := rec.readBack(loc), strings.Count(g.Log(), recomputed); n != 1 || logged != 1 {
				t.Fatalf("the object was read %d times, the recomputation logged %d times; want once each", n, logged)
			}
		}
	})
}

// A checked PATCH (Upload-Checksum) of bytes other than the checksum's
// answers 460 after some of its parts reached S3; the right bytes sent
// again leave the right SHA-256, carried by the state from before the 460.
func TestObjectSHA256ChecksumRetry(t *testing.T) {
	data, _ := payload(24*MiB, 105)
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		g := b.start(t, "--object-sha256")
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data[:3*MiB]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		body := data[3*MiB : 20*MiB]
		wrong := bytes.Clone(body)
		wrong[len(wrong)-5] ^= 1 // the difference comes after three parts
		if r := checkedPatch(t, loc, 3*MiB, wrong, checksumOf("sha256", body)); r.Status != 460 {
			t.Fatalf("PATCH of other bytes: %d %s", r.Status, r.Body)
		}
		if r := checkedPatch(t, loc, 3*MiB, body, checksumOf("sha256", body)); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH of the right bytes: %d %s", r.Status, r.Body)
		}
		if r := patch(t, loc, 20*MiB, data[20*MiB:]); r.Status != http.StatusNoContent {
			t.Fatalf("last PATCH: %d %s", r.Status, r.Body)
		}
		checkSHA(t, b, loc, data)
		if n := rec.readBack(loc); n != 0 {
			t.Fatalf("the object was read back %d times", n)
		}
	})
}

// upload.finished carries the upload's SHA-256.
func TestObjectSHA256InWebhook(t *testing.T) {
	shaBackends(t, func(t *testing.T, b *backend, rec *s3Requests) {
		rc := startReceiver(t)
		g := withWebhookSecret(b).start(t, "--object-sha256", "--webhook-url", rc.URL)
		data, _ := payload(6*MiB+7, 106)
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		d := rc.waitFor(t, 15*time.Second, "upload.finished", isEvent("upload.finished", uploadID(loc)))
		st, _ := d.Raw["upload"].(map[string]any)["storage"].(map[string]any)
		if st["sha256"] != sha256B64(data) {
			t.Fatalf("storage.sha256 %v, want %s: %s", st["sha256"], sha256B64(data), d.Body)
		}
	})
}

// draftDo sends an IETF-draft request (interop version 8).
func draftDo(t *testing.T, method, url string, body []byte, kv ...string) response {
	t.Helper()
	var r io.Reader
	if body != nil {
		r = bytes.NewReader(body)
	}
	return do(t, method, url, with(map[string]string{"Upload-Draft-Interop-Version": "8"}, kv...), r)
}

// problemType is the type of a problem details answer.
func problemType(t *testing.T, r response) string {
	t.Helper()
	var p struct {
		Type string `json:"type"`
	}
	if r.Header.Get("Content-Type") != "application/problem+json" || json.Unmarshal([]byte(r.Body), &p) != nil {
		t.Fatalf("not problem details: %d %s %q", r.Status, r.Header.Get("Content-Type"), r.Body)
	}
	return p.Type
}

func digestField(alg string, data []byte) string {
	if alg == "sha-512" {
		s := sha512.Sum512(data)
		return "sha-512=:" + base64.StdEncoding.EncodeToString(s[:]) + ":"
	}
	return "sha-256=:" + sha256B64(data) + ":"
}

// Content-Digest on IETF-draft appends and creations: content that does
// not match answers 400 (content-digest-mismatch) and none of it counts;
// the same bytes with the right digest go on. sha-256 and sha-512; fields
// tusgate cannot check are refused.
func TestIETFDraftContentDigest(t *testing.T) {
	data, sum := payload(16*MiB+3, 107)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		first := data[:2*MiB]
		r := draftDo(t, "POST", g.URL+"/files/", first, "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)), "Content-Digest", digestField("sha-512", first))
		if r.Status != http.StatusCreated {
			t.Fatalf("creation: %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		body := data[2*MiB : 14*MiB]
		wrong := bytes.Clone(body)
		wrong[len(wrong)-1] ^= 1
		for _, alg := range []string{"sha-256", "sha-512"} {
			r = draftDo(t, "PATCH", loc, wrong, "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(2*MiB), "Upload-Complete", "?0", "Content-Digest", digestField(alg, body))
			if r.Status != http.StatusBadRequest || problemType(t, r) != "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#content-digest-mismatch" ||
				r.Header.Get("Upload-Offset") != strconv.Itoa(2*MiB) || r.Header.Get("Upload-Complete") != "?0" {
				t.Fatalf("%s: append of other bytes: %d %v %s", alg, r.Status, r.Header, r.Body)
			}
			if off := headOffset(t, loc); off != 2*MiB {
				t.Fatalf("%s: offset %d after a mismatch", alg, off)
			}
		}
		r = draftDo(t, "PATCH", loc, body, "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(2*MiB), "Upload-Complete", "?0", "Content-Digest", digestField("sha-256", body))
		if r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(14*MiB) {
			t.Fatalf("append with the right digest: %d %v %s", r.Status, r.Header, r.Body)
		}
		for _, bad := range []string{"md5=:AAAAAAAAAAAAAAAAAAAAAA==:", "sha-256=not-a-byte-sequence", "sha-256=:AAAA:"} {
			r = draftDo(t, "PATCH", loc, data[14*MiB:], "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(14*MiB), "Upload-Complete", "?1", "Content-Digest", bad)
			if r.Status != http.StatusBadRequest || problemType(t, r) != "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#digest-fields" {
				t.Fatalf("Content-Digest %q: %d %s", bad, r.Status, r.Body)
			}
		}
		last := data[14*MiB:]
		r = draftDo(t, "PATCH", loc, last, "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(14*MiB), "Upload-Complete", "?1", "Content-Digest", digestField("sha-512", last))
		if r.Status != http.StatusNoContent || r.Header.Get("Upload-Complete") != "?1" {
			t.Fatalf("completing append: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

// Repr-Digest at creation states the whole upload's SHA-256 (tusgate then
// keeps a running SHA-256 for that upload, also without --object-sha256).
// A match finishes the upload; a mismatch answers the completing append
// with 400 (repr-digest-mismatch) and Upload-Complete: ?1, leaves nothing
// assembled and no upload.finished, and the upload can be deleted.
func TestIETFDraftReprDigest(t *testing.T) {
	data, sum := payload(13*MiB+1, 108)
	eachBackend(t, func(t *testing.T, b *backend) {
		rc := startReceiver(t)
		g := withWebhookSecret(b).start(t, "--webhook-url", rc.URL)
		for _, match := range []bool{true, false} {
			stated := data
			if !match {
				stated = append(bytes.Clone(data[:len(data)-1]), data[len(data)-1]^1)
			}
			r := draftDo(t, "POST", g.URL+"/files/", data[:4*MiB], "Upload-Complete", "?0", "Upload-Length", strconv.Itoa(len(data)), "Repr-Digest", digestField("sha-256", stated))
			if r.Status != http.StatusCreated {
				t.Fatalf("creation: %d %s", r.Status, r.Body)
			}
			loc := r.Header.Get("Location")
			r = draftDo(t, "PATCH", loc, data[4*MiB:], "Content-Type", "application/partial-upload", "Upload-Offset", strconv.Itoa(4*MiB), "Upload-Complete", "?1", "Want-Repr-Digest", "sha-512=5, sha-256=3")
			if match {
				if r.Status != http.StatusNoContent || r.Header.Get("Upload-Complete") != "?1" {
					t.Fatalf("completing append: %d %s", r.Status, r.Body)
				}
				// Asked for with Want-Repr-Digest (RFC 9530), the digest of
				// the stored bytes comes with the completing answer.
				if got := r.Header.Get("Repr-Digest"); got != digestField("sha-256", data) {
					t.Fatalf("completing append with Want-Repr-Digest: Repr-Digest %q", got)
				}
				b.assertStored(t, loc, sum, int64(len(data)))
				if h := draftDo(t, "HEAD", loc, nil); h.Header.Get("Repr-Digest") != digestField("sha-256", data) {
					t.Fatalf("HEAD: Repr-Digest %q", h.Header.Get("Repr-Digest"))
				}
				rc.waitFor(t, 15*time.Second, "upload.finished", isEvent("upload.finished", uploadID(loc)))
				continue
			}
			if r.Status != http.StatusBadRequest || r.Header.Get("Upload-Complete") != "?1" || problemType(t, r) != "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#repr-digest-mismatch" {
				t.Fatalf("completing append with another SHA-256 than stated: %d %v %s", r.Status, r.Header, r.Body)
			}
			if b.s3 != nil {
				if keys := b.s3.Keys(t, testBucket, objectKey(uploadID(loc))); slices.Contains(keys, objectKey(uploadID(loc))) {
					t.Fatalf("an object was assembled: %v", keys)
				}
			}
			// Asked again (a HEAD finishes complete uploads that are not
			// assembled): still refused, never finished.
			if h := draftDo(t, "HEAD", loc, nil); h.Status != http.StatusBadRequest {
				t.Fatalf("HEAD of the refused upload: %d", h.Status)
			}
			if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != http.StatusBadRequest {
				t.Fatalf("tus HEAD of the refused upload: %d", r.Status)
			}
			if r := draftDo(t, "DELETE", loc, nil); r.Status != http.StatusNoContent {
				t.Fatalf("DELETE: %d %s", r.Status, r.Body)
			}
			b.assertGone(t, loc)
			time.Sleep(2 * time.Second) // the dispatcher's chance to deliver wrongly
			for _, d := range rc.all() {
				if d.Event.Type == "upload.finished" && d.Event.Upload.ID == uploadID(loc) {
					t.Fatalf("upload.finished for an upload whose SHA-256 did not match: %s", d.Body)
				}
			}
		}
		if strings.Contains(g.Log(), recomputed) {
			t.Fatal("an object was read back: a refused upload lost its SHA-256")
		}
		// sha-512 alone cannot be checked at completion: refused at once.
		s := sha512.Sum512(data)
		r := draftDo(t, "POST", g.URL+"/files/", nil, "Upload-Complete", "?0", "Repr-Digest", "sha-512=:"+base64.StdEncoding.EncodeToString(s[:])+":")
		if r.Status != http.StatusBadRequest || problemType(t, r) != "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#digest-fields" {
			t.Fatalf("Repr-Digest sha-512: %d %s", r.Status, r.Body)
		}
	})
}
