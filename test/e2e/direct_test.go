package e2e

import (
	"strconv"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// directPages are the two pages that upload straight to S3: the Uppy page
// with @uppy/aws-s3, and Dropzone with its "Straight to S3" switch.
var directPages = []struct {
	name, page string
	args       []string
}{
	{"uppy-s3", "uppy-s3", nil},
	{"dropzone", "dropzone", []string{"--direct"}},
}

// startDirect is start with --direct-uploads, and bucket CORS that lets
// the pages' origin PUT and read ETag (the operator's job,
// docs/direct-uploads.md). MinIO has no bucket CORS: it lets any origin
// PUT and exposes ETag.
func startDirect(t *testing.T, extra ...string) *env {
	t.Helper()
	e := start(t, append([]string{"--direct-uploads"}, extra...)...)
	if e.s3.Name == "minio" {
		return e
	}
	_, err := e.s3.Client.PutBucketCors(t.Context(), &s3.PutBucketCorsInput{
		Bucket: aws.String(bucket),
		CORSConfiguration: &types.CORSConfiguration{CORSRules: []types.CORSRule{{
			AllowedOrigins: []string{e.gate.URL},
			AllowedMethods: []string{"PUT", "GET", "HEAD"},
			AllowedHeaders: []string{"*"},
			ExposeHeaders:  []string{"ETag"},
			MaxAgeSeconds:  aws.Int32(600),
		}}},
	})
	if err != nil {
		t.Fatalf("PutBucketCors: %v", err)
	}
	return e
}

// assertStored checks that each file succeeded once and its object (the
// key in the success event) has the file's bytes.
func (e *env) assertStored(t *testing.T, d *driver, files ...file) {
	t.Helper()
	for _, f := range files {
		succ := d.of("success", f.Name)
		if len(succ) != 1 || succ[0].URL == "" {
			t.Fatalf("%s: success events %+v", f.Name, succ)
		}
		sum, size := e.s3.ObjectSHA256(t, bucket, succ[0].URL)
		if sum != f.SHA || size != f.Size {
			t.Fatalf("%s: S3 object %s: sha256 %s (%d bytes), want %s (%d)", f.Name, succ[0].URL, sum, size, f.SHA, f.Size)
		}
	}
	if mps := e.s3.MultipartUploads(t, bucket); len(mps) != 0 {
		t.Fatalf("multipart uploads left: %v", mps)
	}
}

func TestDirectPagesUploadStraightToS3(t *testing.T) {
	dir := t.TempDir()
	files := []file{
		makeFile(t, dir, "big.bin", 300*MiB, 21),
		makeFile(t, dir, "small.bin", 1*MiB+3, 22), // a single PUT on uppy-s3
	}
	for _, p := range directPages {
		t.Run(p.name, func(t *testing.T) {
			e := startDirect(t)
			d := runDriver(t, e.gate, p.page, files, append([]string{"--scenario", "basic"}, p.args...)...)
			d.finish(t)
			e.assertStored(t, d, files...)
			// The gateway signed; it never carried the bytes.
			if got := metric(t, e.gate, "tusd_bytes_received"); got != 0 {
				t.Errorf("tusd received %d bytes", got)
			}
			if n := metric(t, e.gate, `tusgate_direct_signed_urls_total{kind="part"}`); n < 300/8 {
				t.Errorf("%d part URLs signed for 300 MiB in parts of at most 8 MiB", n)
			}
		})
	}
}

// After a reload the Uppy page asks S3 which parts it has (golden
// retriever keeps key and uploadId) and sends only the others.
func TestDirectPagesResumeAfterReload(t *testing.T) {
	dir := t.TempDir()
	big := makeFile(t, dir, "reload.bin", 300*MiB, 23)
	e := startDirect(t)
	d := runDriver(t, e.gate, "uppy-s3", []file{big}, "--scenario", "reload", "--throttle", strconv.Itoa(60*MiB))
	d.finish(t)
	e.assertStored(t, d, big)
	const partSize = 5 * MiB
	parts := int((big.Size + partSize - 1) / partSize)
	storedBefore := map[int]bool{} // S3 answered 200 before the reload
	sentBefore := map[int]bool{}   // the first page sent them
	sentAfter := map[int]int{}
	for _, ev := range d.all {
		switch {
		case ev.Event == "s3stored" && ev.Generation == 1 && ev.Status == 200:
			storedBefore[ev.PartNumber] = true
		case ev.Event == "s3put" && ev.Generation == 1:
			sentBefore[ev.PartNumber] = true
		case ev.Event == "s3put" && ev.Generation == 2:
			sentAfter[ev.PartNumber]++
		}
	}
	if len(storedBefore) == 0 || len(storedBefore) >= parts {
		t.Fatalf("%d of %d parts stored before the reload: the reload did not land mid-upload", len(storedBefore), parts)
	}
	for pn := range sentAfter {
		if storedBefore[pn] {
			t.Errorf("part %d was sent again after the reload though S3 had it", pn)
		}
	}
	for pn := 1; pn <= parts; pn++ {
		// A part in flight at the reload may have reached S3 though the
		// page went away before the answer: listed then, it is not sent
		// again. Any other part must be sent after the reload.
		if !storedBefore[pn] && sentAfter[pn] == 0 && !sentBefore[pn] {
			t.Errorf("part %d was never sent", pn)
		}
	}
	t.Logf("%d parts: %d stored before the reload, %d sent after it", parts, len(storedBefore), len(sentAfter))
}

// Cancelling aborts the multipart upload: nothing is left in the bucket.
func TestDirectPagesCancelLeavesNothing(t *testing.T) {
	dir := t.TempDir()
	big := makeFile(t, dir, "cancel-me.bin", 300*MiB, 24)
	for _, p := range directPages {
		t.Run(p.name, func(t *testing.T) {
			e := startDirect(t)
			d := runDriver(t, e.gate, p.page, []file{big}, append([]string{"--scenario", "cancel", "--throttle", strconv.Itoa(40 * MiB)}, p.args...)...)
			d.finish(t)
			if len(d.of("cancelled", big.Name)) != 1 || len(d.of("success", big.Name)) != 0 {
				t.Fatalf("events: %d cancelled, %d success", len(d.of("cancelled", big.Name)), len(d.of("success", big.Name)))
			}
			stored := 0
			for _, ev := range d.all {
				if ev.Event == "s3stored" && ev.Status == 200 {
					stored++
				}
			}
			if stored == 0 {
				t.Fatal("no part reached S3 before the cancel: the test proves nothing")
			}
			if mps := e.s3.MultipartUploads(t, bucket); len(mps) != 0 {
				t.Fatalf("multipart uploads left after cancel: %v", mps)
			}
			if keys := e.s3.Keys(t, bucket, ""); len(keys) != 0 {
				t.Fatalf("objects left after cancel: %v", keys)
			}
		})
	}
}

// Tokens expire during a long direct upload: signing requests and the
// completion run with tokens the pages renewed.
func TestDirectPagesRefreshTokens(t *testing.T) {
	dir := t.TempDir()
	f := makeFile(t, dir, "slow-direct.bin", 120*MiB, 25)
	for _, p := range directPages {
		t.Run(p.name, func(t *testing.T) {
			e := startDirect(t, "--dev-token-ttl", "10s", "--oidc-leeway", "1s")
			began := time.Now()
			// 120 MiB at 4 MiB/s: about 30 s, three token lifetimes.
			d := runDriver(t, e.gate, p.page, []file{f}, append([]string{"--scenario", "wait", "--throttle", strconv.Itoa(4 * MiB)}, p.args...)...)
			d.finish(t)
			if took := time.Since(began); took < 25*time.Second {
				t.Fatalf("upload took %v: too fast to outlive two 10s tokens, the test proves nothing", took)
			}
			e.assertStored(t, d, f)
		})
	}
}
