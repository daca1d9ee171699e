package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/binary"
	"hash/crc32"
	"io"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusgate/tusgate/test/testenv"
)

// Every finished object carries a FULL_OBJECT CRC32 that S3 validated at
// CompleteMultipartUpload (docs/integrity.md). versitygw's posix backend
// gives multipart objects a FULL_OBJECT CRC64NVME of its own when the
// upload asked for none, so "the object has a full-object checksum" proves
// nothing here: these tests check what tusgate asks S3 for, recorded by
// the fault proxy in front of versitygw (the checksum headers of
// CreateMultipartUpload, the whole-object value, its type and every part's
// CRC32 at CompleteMultipartUpload), and then that versitygw keeps the
// CRC32 the test computes itself over the bytes it sent (HeadObject with
// ChecksumMode ENABLED, GetObjectAttributes, tusgate's HEAD).

// s3Requests records the requests of tusgate's that decide an object's
// checksum, as the fault proxy forwards them (refused or failed ones are
// not forwarded, not recorded).
type s3Requests struct {
	mu        sync.Mutex
	creates   map[string]http.Header // CreateMultipartUpload, by object key
	completes map[string][]s3Request // CompleteMultipartUpload, by key
	puts      map[string]http.Header // PutObject, by key
	gets      map[string]int         // GetObject, by key
}

type s3Request struct {
	header http.Header
	body   string
}

// recordS3 records through proxy.
func recordS3(proxy *testenv.FaultProxy) *s3Requests {
	rec := &s3Requests{creates: map[string]http.Header{}, completes: map[string][]s3Request{}, puts: map[string]http.Header{}, gets: map[string]int{}}
	proxy.OnForward(func(r *http.Request) {
		key, ok := strings.CutPrefix(r.URL.Path, "/"+testBucket+"/")
		if !ok {
			return
		}
		q := r.URL.Query()
		rec.mu.Lock()
		defer rec.mu.Unlock()
		switch {
		case r.Method == http.MethodPost && q.Has("uploads"):
			rec.creates[key] = r.Header.Clone()
		case r.Method == http.MethodPost && q.Has("uploadId"):
			body, _ := io.ReadAll(r.Body) // a small XML document
			r.Body = io.NopCloser(bytes.NewReader(body))
			rec.completes[key] = append(rec.completes[key], s3Request{r.Header.Clone(), string(body)})
		case r.Method == http.MethodPut && !q.Has("partNumber") && !q.Has("tagging") && r.Header.Get("X-Amz-Copy-Source") == "":
			rec.puts[key] = r.Header.Clone()
		case r.Method == http.MethodGet && !q.Has("uploadId") && !q.Has("tagging") && !q.Has("attributes"):
			rec.gets[key]++
		}
	})
	return rec
}

// fullObjectS3 is a versitygw (over HTTPS or HTTP) behind a recording
// fault proxy of the same scheme, with tusgate's settings for it.
func fullObjectS3(t *testing.T, https bool, extra ...string) (*backend, *testenv.FaultProxy, *s3Requests) {
	t.Helper()
	s3srv := testenv.StartS3(t, testenv.S3Options{TLS: https})
	s3srv.CreateBucket(t, testBucket)
	dir := t.TempDir()
	b := &backend{name: "s3", s3: s3srv, env: s3srv.Env(), dataDir: dir,
		args: append([]string{"--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", dir}, extra...)}
	var proxy *testenv.FaultProxy
	if https {
		var ca string
		proxy, ca = testenv.NewTLSFaultProxy(t, s3srv.Endpoint)
		b.env = append(b.env, "AWS_CA_BUNDLE="+ca)
	} else {
		proxy = testenv.NewFaultProxy(t, s3srv.Endpoint)
	}
	b.env = append(b.env, "AWS_ENDPOINT_URL_S3="+proxy.URL, "AWS_MAX_ATTEMPTS=1")
	return b, proxy, recordS3(proxy)
}

// crc32Of is the CRC32 of data as S3 writes it.
func crc32Of(data []byte) string {
	var raw [4]byte
	binary.BigEndian.PutUint32(raw[:], crc32.ChecksumIEEE(data))
	return base64.StdEncoding.EncodeToString(raw[:])
}

// checkFullObject checks the finished upload at loc: its bytes; what
// tusgate asked S3 for (multipart: CRC32 and FULL_OBJECT at creation, at
// the last completion the CRC32 of data, the type and every part's CRC32;
// otherwise a PutObject with a CRC32); and that S3 keeps the CRC32 of data
// as the object's FULL_OBJECT checksum, reported by HeadObject,
// GetObjectAttributes and tusgate's HEAD.
func (rec *s3Requests) checkFullObject(t *testing.T, b *backend, loc string, data []byte, multipart bool) {
	t.Helper()
	b.assertStored(t, loc, sha256Hex(data), int64(len(data)))
	key := objectKey(uploadID(loc))
	want := crc32Of(data)
	rec.mu.Lock()
	create, completes, put := rec.creates[key], rec.completes[key], rec.puts[key]
	rec.mu.Unlock()
	if create == nil {
		t.Fatalf("%s: no CreateMultipartUpload recorded", key)
	}
	if a, ty := create.Get("X-Amz-Checksum-Algorithm"), create.Get("X-Amz-Checksum-Type"); a != "CRC32" || ty != "FULL_OBJECT" {
		t.Fatalf("%s: CreateMultipartUpload asked for algorithm %q type %q, want CRC32 FULL_OBJECT", key, a, ty)
	}
	if len(data) == 0 && b.s3.Name == "minio" {
		// MinIO refuses the CRC32 of nothing and keeps no checksum for an
		// empty object: tusgate completes it without the value.
		want = ""
	}
	if multipart {
		if len(completes) == 0 {
			t.Fatalf("%s: no CompleteMultipartUpload recorded", key)
		}
		c := completes[len(completes)-1]
		if ty, v := c.header.Get("X-Amz-Checksum-Type"), c.header.Get("X-Amz-Checksum-Crc32"); ty != "FULL_OBJECT" || v != want {
			t.Fatalf("%s: CompleteMultipartUpload sent type %q CRC32 %q, want FULL_OBJECT %s", key, ty, v, want)
		}
		if parts, sums := strings.Count(c.body, "<Part>"), strings.Count(c.body, "<ChecksumCRC32>"); parts == 0 || parts != sums {
			t.Fatalf("%s: CompleteMultipartUpload with %d parts and %d part CRC32s: %s", key, parts, sums, c.body)
		}
	} else {
		if put == nil {
			t.Fatalf("%s: no PutObject recorded", key)
		}
		if v, algo := put.Get("X-Amz-Checksum-Crc32"), put.Get("X-Amz-Sdk-Checksum-Algorithm"); v != want && !(v == "" && algo == "CRC32") {
			t.Fatalf("%s: PutObject with CRC32 %q (algorithm %q), want %s", key, v, algo, want)
		}
	}
	if want == "" {
		return // nothing to read back (MinIO's empty object)
	}
	head, err := b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled})
	if err != nil {
		t.Fatal(err)
	}
	if aws.ToString(head.ChecksumCRC32) != want || head.ChecksumType != types.ChecksumTypeFullObject {
		t.Fatalf("%s: HeadObject reports CRC32 %q type %q (CRC64NVME %q), want FULL_OBJECT %s", key, aws.ToString(head.ChecksumCRC32), head.ChecksumType, aws.ToString(head.ChecksumCRC64NVME), want)
	}
	attrs, err := b.s3.Client.GetObjectAttributes(t.Context(), &s3.GetObjectAttributesInput{
		Bucket: aws.String(testBucket), Key: aws.String(key),
		ObjectAttributes: []types.ObjectAttributes{types.ObjectAttributesChecksum, types.ObjectAttributesObjectSize},
	})
	if err != nil {
		t.Fatal(err)
	}
	if attrs.Checksum == nil || aws.ToString(attrs.Checksum.ChecksumCRC32) != want || attrs.Checksum.ChecksumType != types.ChecksumTypeFullObject || aws.ToInt64(attrs.ObjectSize) != int64(len(data)) {
		t.Fatalf("%s: GetObjectAttributes %+v size %d, want FULL_OBJECT CRC32 %s of %d bytes", key, attrs.Checksum, aws.ToInt64(attrs.ObjectSize), want, len(data))
	}
	r := do(t, "HEAD", loc, tusHeaders, nil)
	if got := r.Header.Get("Upload-Object-Checksum"); r.Status != http.StatusOK || got != "crc32 "+want {
		t.Fatalf("HEAD %s: %d Upload-Object-Checksum %q, want %q", loc, r.Status, got, "crc32 "+want)
	}
}

// Each write path (parts streamed over HTTPS, buffered over plain HTTP,
// through a window over either): one PATCH; PATCHes that leave tails;
// a deferred length whose last bytes wait in the tail until FinishUpload
// stores them as the last part; an empty upload.
func TestFullObjectWritePaths(t *testing.T) {
	one, _ := payload(12*MiB+7, 61)
	tails, _ := payload(11*MiB+3, 62)
	deferred, _ := payload(6*MiB+5, 63)
	for _, p := range writePaths {
		t.Run(p.name, func(t *testing.T) {
			b, _, rec := fullObjectS3(t, p.tls, p.extra...)
			g := b.start(t)

			loc := create(t, g, int64(len(one)))
			if r := patch(t, loc, 0, one); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH: %d %s", r.Status, r.Body)
			}
			rec.checkFullObject(t, b, loc, one, true)

			loc = create(t, g, int64(len(tails)))
			for off := 0; off < len(tails); off += 3*MiB + 17 {
				end := min(off+3*MiB+17, len(tails))
				if r := patch(t, loc, int64(off), tails[off:end]); r.Status != http.StatusNoContent {
					t.Fatalf("PATCH at %d: %d %s", off, r.Status, r.Body)
				}
			}
			rec.checkFullObject(t, b, loc, tails, true)

			r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Defer-Length", "1"), nil)
			if r.Status != http.StatusCreated {
				t.Fatalf("create: %d %s", r.Status, r.Body)
			}
			loc = r.Header.Get("Location")
			if r := patch(t, loc, 0, deferred); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH: %d %s", r.Status, r.Body)
			}
			r = do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(len(deferred)), "Upload-Length", strconv.Itoa(len(deferred))), bytes.NewReader(nil))
			if r.Status != http.StatusNoContent {
				t.Fatalf("declaring the length: %d %s", r.Status, r.Body)
			}
			rec.checkFullObject(t, b, loc, deferred, true)

			loc = create(t, g, 0)
			rec.checkFullObject(t, b, loc, nil, true)
		})
	}
}

// tusgate is killed in the middle of a PATCH; another instance on the same
// bucket resumes and finishes the upload. The completion needs nothing but
// S3's part listing.
func TestFullObjectKilledThenResumedElsewhere(t *testing.T) {
	data, _ := payload(26*MiB+11, 64)
	for _, p := range []struct {
		name  string
		extra []string
	}{{"stream", nil}, {"window", []string{"--s3-buffer-memory", "0"}}} {
		t.Run(p.name, func(t *testing.T) {
			b, _, rec := fullObjectS3(t, true, p.extra...)
			g := b.start(t)
			loc := create(t, g, int64(len(data)))
			body := newCountingReader(bytes.NewReader(data), 13*MiB+5, false)
			errc := make(chan error, 1)
			go func() {
				_, err := tryDo(t.Context(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
				errc <- err
			}()
			<-body.reached
			g.Kill()
			sent := body.Sent() // the client sends on past the kill point
			<-errc

			other := b.start(t)
			loc = strings.Replace(loc, g.URL, other.URL, 1)
			off := headOffset(t, loc)
			if off > sent {
				t.Fatalf("offset %d after a kill with %d bytes sent", off, sent)
			}
			if r := patch(t, loc, off, data[off:]); r.Status != http.StatusNoContent {
				t.Fatalf("resumed PATCH at %d: %d %s", off, r.Status, r.Body)
			}
			rec.checkFullObject(t, b, loc, data, true)
		})
	}
}

// A CompleteMultipartUpload that failed is repaired on the next HEAD, with
// the same full-object CRC32.
func TestFullObjectFailedCompleteRepaired(t *testing.T) {
	b, proxy, rec := fullObjectS3(t, true)
	g := b.start(t)
	data, _ := payload(11*MiB+1, 65)
	loc := create(t, g, int64(len(data)))
	proxy.FailMatching(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Query().Has("uploadId")
	})
	if r := patch(t, loc, 0, data); r.Status != http.StatusServiceUnavailable {
		t.Fatalf("PATCH whose completion fails: %d %s", r.Status, r.Body)
	}
	proxy.FailMatching(nil)
	if off := headOffset(t, loc); off != int64(len(data)) {
		t.Fatalf("HEAD offset %d", off)
	}
	rec.checkFullObject(t, b, loc, data, true)
	rec.mu.Lock()
	n := len(rec.completes[objectKey(uploadID(loc))])
	rec.mu.Unlock()
	if n != 1 {
		t.Fatalf("%d completions forwarded, want the repair's only", n)
	}
}

// Concatenation: partials of at least a part's minimum size are copied
// into parts by S3 and completed with the full-object CRC32; smaller ones
// are joined by tusgate and stored with one PutObject carrying the CRC32.
func TestFullObjectConcatenation(t *testing.T) {
	for _, tc := range []struct {
		name      string
		size      int
		multipart bool
	}{{"server-side-copy", 6 * MiB, true}, {"small-partials", 1000, false}} {
		t.Run(tc.name, func(t *testing.T) {
			b, _, rec := fullObjectS3(t, true)
			g := b.start(t)
			var all []byte
			var urls []string
			for i := range 3 {
				part, _ := payload(int64(tc.size+i), uint64(70+i))
				all = append(all, part...)
				loc := create(t, g, int64(len(part)), "Upload-Concat", "partial")
				if r := patch(t, loc, 0, part); r.Status != http.StatusNoContent {
					t.Fatalf("partial %d: %d %s", i, r.Status, r.Body)
				}
				rec.checkFullObject(t, b, loc, part, true)
				urls = append(urls, loc)
			}
			r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Concat", "final;"+strings.Join(urls, " ")), nil)
			if r.Status != http.StatusCreated {
				t.Fatalf("final: %d %s", r.Status, r.Body)
			}
			// MinIO copies no part into a multipart upload with a checksum:
			// tusgate joins the partials and stores them with PutObject.
			rec.checkFullObject(t, b, r.Header.Get("Location"), all, tc.multipart && b.s3.Name != "minio")
		})
	}
}

// The upload.finished event carries the object's checksum.
func TestFullObjectInWebhook(t *testing.T) {
	b, _, rec := fullObjectS3(t, true)
	rc := startReceiver(t)
	g := withWebhookSecret(b).start(t, "--webhook-url", rc.URL)
	data, _ := payload(7*MiB+3, 66)
	loc := create(t, g, int64(len(data)))
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	rec.checkFullObject(t, b, loc, data, true)
	d := rc.waitFor(t, 15*time.Second, "upload.finished", isEvent("upload.finished", uploadID(loc)))
	sum := d.Event.Upload.Storage.Checksum
	if sum == nil || sum.Algorithm != "crc32" || sum.Value != crc32Of(data) || sum.Type != "FULL_OBJECT" {
		t.Fatalf("storage.checksum %+v in %s", sum, d.Body)
	}
	st, _ := d.Raw["upload"].(map[string]any)["storage"].(map[string]any)
	if c, _ := st["checksum"].(map[string]any); c["algorithm"] != "crc32" || c["value"] != crc32Of(data) || c["type"] != "FULL_OBJECT" {
		t.Fatalf("storage.checksum in JSON: %v", st["checksum"])
	}
}

// An S3 that refuses full-object checksums (InvalidArgument at
// CreateMultipartUpload, like a server without them): uploads go on with
// per-part CRC32s, the completion asks for nothing, the operator is told
// once in the log and on /readyz of the metrics listener.
func TestFullObjectRefusedFallsBack(t *testing.T) {
	b, proxy, rec := fullObjectS3(t, true)
	proxy.RefuseMatching(func(r *http.Request) bool {
		return r.Method == http.MethodPost && r.URL.Query().Has("uploads") && r.Header.Get("X-Amz-Checksum-Type") != ""
	}, http.StatusBadRequest, "InvalidArgument", "x-amz-checksum-type is not supported")
	metrics := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	g := b.start(t, "--metrics-listen", metrics)
	for i := range 2 {
		data, _ := payload(6*MiB+int64(i), uint64(80+i))
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sha256Hex(data), int64(len(data)))
		key := objectKey(uploadID(loc))
		rec.mu.Lock()
		create, completes := rec.creates[key], rec.completes[key]
		rec.mu.Unlock()
		if create == nil || create.Get("X-Amz-Checksum-Type") != "" || create.Get("X-Amz-Checksum-Algorithm") != "" {
			t.Fatalf("upload %d: the CreateMultipartUpload forwarded asks for a checksum: %v", i, create)
		}
		if len(completes) != 1 || completes[0].header.Get("X-Amz-Checksum-Type") != "" || completes[0].header.Get("X-Amz-Checksum-Crc32") != "" || strings.Contains(completes[0].body, "<Checksum") {
			t.Fatalf("upload %d: completion with checksums: %+v", i, completes)
		}
		// What versitygw adds by itself (a CRC64NVME) is not a CRC32
		// tusgate asked for.
		if h := do(t, "HEAD", loc, tusHeaders, nil).Header.Get("Upload-Object-Checksum"); strings.HasPrefix(h, "crc32 ") {
			t.Fatalf("upload %d: HEAD reports %q", i, h)
		}
	}
	if n := strings.Count(g.Log(), "S3 refused a full-object CRC32"); n != 1 {
		t.Fatalf("logged %d times, want once:\n%s", n, tail(g.LogPath, 2000))
	}
	r := do(t, "GET", "http://"+metrics+"/readyz", nil, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Body, "ok\ns3: finished objects get no full-object checksum: S3 refused") {
		t.Fatalf("readyz on the metrics listener: %d %q", r.Status, r.Body)
	}
	if r := do(t, "GET", g.URL+"/readyz", nil, nil); r.Body != "ok\n" {
		t.Fatalf("public readyz: %q", r.Body)
	}
}

// With AWS_REQUEST_CHECKSUM_CALCULATION=when_required (parts carry no
// checksum), nothing is asked for, and /readyz says why.
func TestFullObjectNotAskedWithoutRequestChecksums(t *testing.T) {
	b, _, rec := fullObjectS3(t, false)
	b.env = append(b.env, "AWS_REQUEST_CHECKSUM_CALCULATION=when_required")
	metrics := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	g := b.start(t, "--metrics-listen", metrics)
	data, _ := payload(6*MiB+9, 67)
	loc := create(t, g, int64(len(data)))
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, loc, sha256Hex(data), int64(len(data)))
	key := objectKey(uploadID(loc))
	rec.mu.Lock()
	create, completes := rec.creates[key], rec.completes[key]
	rec.mu.Unlock()
	if create == nil || create.Get("X-Amz-Checksum-Algorithm") != "" || create.Get("X-Amz-Checksum-Type") != "" {
		t.Fatalf("CreateMultipartUpload: %v", create)
	}
	if len(completes) != 1 || completes[0].header.Get("X-Amz-Checksum-Type") != "" || strings.Contains(completes[0].body, "<Checksum") {
		t.Fatalf("completion with checksums: %+v", completes)
	}
	r := do(t, "GET", "http://"+metrics+"/readyz", nil, nil)
	if r.Status != http.StatusOK || !strings.Contains(r.Body, "s3: finished objects get no full-object checksum: AWS_REQUEST_CHECKSUM_CALCULATION=when_required") {
		t.Fatalf("readyz on the metrics listener: %d %q", r.Status, r.Body)
	}
}
