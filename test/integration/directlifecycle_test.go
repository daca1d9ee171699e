package integration

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// directEventID is the upload ID events of a direct upload carry.
func directEventID(c created) string { return c.Key + "+" + c.UploadID }

// Direct uploads report created, finished (with bucket, key, ETag and
// size) and terminated through the same signed, durable webhooks.
func TestDirectWebhooks(t *testing.T) {
	rc := startReceiver(t)
	d := startDirect(t, withWebhookSecret(s3Backend(t)), "--webhook-url", rc.URL)
	alice := d.user(t, "auth0|alice")
	c := alice.create(t, map[string]any{"filename": "a.txt", "type": "text/plain", "metadata": map[string]any{"note": "x"}})
	ev := rc.waitFor(t, 20*time.Second, "upload.created", isEvent("upload.created", directEventID(c)))
	checkSigned(t, ev)
	up := ev.Event.Upload
	if up.Owner == nil || up.Owner.Subject != "auth0|alice" || up.MetaData["filename"] != "a.txt" || up.MetaData["note"] != "x" || up.Storage.Key != c.Key || up.Storage.Bucket != testBucket {
		t.Errorf("upload.created: %s", ev.Body)
	}
	if _, ok := up.MetaData["tusgate-owner"]; ok {
		t.Error("upload.created carries reserved metadata")
	}
	data, _ := payload(6*MiB, 98)
	e1 := alice.uploadPart(t, c, 1, data, true)
	if r := alice.complete(t, c, []completedPart{{1, e1}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	head, err := d.b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(c.Key)})
	if err != nil {
		t.Fatal(err)
	}
	fin := rc.waitFor(t, 20*time.Second, "upload.finished", isEvent("upload.finished", directEventID(c)))
	checkSigned(t, fin)
	if s := fin.Event.Upload.Storage; s.Type != "s3" || s.Bucket != testBucket || s.Key != c.Key || s.ETag == "" || s.ETag != aws.ToString(head.ETag) || fin.Event.Upload.Size != 6*MiB {
		t.Errorf("upload.finished: %s", fin.Body)
	}

	b := alice.create(t, map[string]any{"filename": "b.txt"})
	if r := alice.call(t, "DELETE", uploadPath(b, ""), nil, nil); r.Status != http.StatusOK {
		t.Fatalf("abort: %d %s", r.Status, r.Body)
	}
	term := rc.waitFor(t, 20*time.Second, "upload.terminated", isEvent("upload.terminated", directEventID(b)))
	if term.Event.Upload.Storage.Key != b.Key {
		t.Errorf("upload.terminated: %s", term.Body)
	}
}

// The pre-finish URL is asked before CompleteMultipartUpload: a rejection
// aborts the upload, an approval completes it; single PUTs, which cannot
// be asked about, are refused.
func TestDirectPreFinish(t *testing.T) {
	rc := startReceiver(t)
	rc.reply = func(dl delivery) answer {
		if dl.Event.Upload.MetaData["filename"] == "bad.bin" {
			return answer{Status: http.StatusForbidden, ContentType: "application/json", Body: `{"reject": true, "message": "no bad files"}`}
		}
		return answer{Status: http.StatusOK}
	}
	d := startDirect(t, withWebhookSecret(s3Backend(t)), "--pre-finish-url", rc.URL)
	alice := d.user(t, "alice")
	data, _ := payload(5*MiB, 99)
	bad := alice.create(t, map[string]any{"filename": "bad.bin"})
	e := alice.uploadPart(t, bad, 1, data, true)
	r := alice.complete(t, bad, []completedPart{{1, e}})
	if r.Status != http.StatusForbidden || !strings.Contains(r.Body, "no bad files") {
		t.Errorf("rejected complete: %d %s", r.Status, r.Body)
	}
	if !d.multipartGone(t, bad) {
		t.Error("the rejected upload was not aborted")
	}
	good := alice.create(t, map[string]any{"filename": "good.bin"})
	e = alice.uploadPart(t, good, 1, data, true)
	if r := alice.complete(t, good, []completedPart{{1, e}}); r.Status != http.StatusOK {
		t.Fatalf("approved complete: %d %s", r.Status, r.Body)
	}
	var asked []string
	for _, dl := range rc.all() {
		if dl.Event.Type == "upload.pre-finish" {
			asked = append(asked, dl.Event.Upload.ID)
		}
	}
	if len(asked) != 2 || asked[0] != directEventID(bad) || asked[1] != directEventID(good) {
		t.Errorf("pre-finish asked about %v", asked)
	}
	if r := alice.call(t, "GET", "/s3/params?filename=a&size=1", nil, nil); r.Status != http.StatusForbidden || !strings.Contains(r.Body, "ERR_MULTIPART_REQUIRED") {
		t.Errorf("single PUT under --pre-finish-url: %d %s", r.Status, r.Body)
	}
}

// The janitor aborts direct uploads idle for --upload-ttl (and reports
// upload.expired), and leaves active and finished ones alone.
func TestDirectJanitorExpiresIdleUploads(t *testing.T) {
	rc := startReceiver(t)
	d := startDirect(t, withWebhookSecret(s3Backend(t)), "--upload-ttl", "6s", "--webhook-url", rc.URL, "--direct-url-expiry", "3s")
	alice := d.user(t, "alice")
	idle := alice.create(t, map[string]any{"filename": "idle"})
	data, _ := payload(5*MiB, 100)
	alice.uploadPart(t, idle, 1, data, true)

	// Orphans: a multipart upload with a direct key but no record (a crash
	// at creation), and a record whose multipart upload is gone (aborted
	// behind tusgate's back).
	folder, _, _ := strings.Cut(idle.Key, "/")
	orphanKey := folder + "/d-" + strings.Repeat("ab", 16)
	if _, err := d.b.s3.Client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(orphanKey)}); err != nil {
		t.Fatal(err)
	}
	lost := alice.create(t, map[string]any{"filename": "lost"})
	if _, err := d.b.s3.Client.AbortMultipartUpload(t.Context(), &s3.AbortMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(lost.Key), UploadId: aws.String(lost.UploadID)}); err != nil {
		t.Fatal(err)
	}
	// A single PUT: upload.finished once the object is there; its record
	// goes when its URL has expired.
	var put signed
	if r := alice.call(t, "GET", "/s3/params?filename=p.txt&type=text/plain&size=3", nil, &put); r.Status != http.StatusOK {
		t.Fatalf("params: %d %s", r.Status, r.Body)
	}
	if status, _ := d.put(t, put, []byte("abc")); status != http.StatusOK {
		t.Fatalf("single PUT: %d", status)
	}
	done := alice.create(t, map[string]any{"filename": "done"})
	e := alice.uploadPart(t, done, 1, data, true)
	if r := alice.complete(t, done, []completedPart{{1, e}}); r.Status != http.StatusOK {
		t.Fatalf("complete: %d %s", r.Status, r.Body)
	}
	exp := rc.waitFor(t, 30*time.Second, "upload.expired", isEvent("upload.expired", directEventID(idle)))
	if exp.Event.Upload.Storage.Key != idle.Key || exp.Event.Upload.Offset != 5*MiB {
		t.Errorf("upload.expired: %s", exp.Body)
	}
	if !d.multipartGone(t, idle) {
		t.Error("the expired upload's multipart upload is still there")
	}
	if r := alice.call(t, "GET", partPath(idle, 2, -1), nil, nil); r.Status != http.StatusNotFound {
		t.Errorf("signing for an expired upload: %d %s", r.Status, r.Body)
	}
	keys := d.b.s3.Keys(t, testBucket, "")
	for _, k := range keys {
		if strings.Contains(k, strings.TrimPrefix(idle.Key, "")) && !strings.HasPrefix(k, ".tusgate/expired/") {
			t.Errorf("left after expiry: %s", k)
		}
	}
	if _, n := d.b.s3.ObjectSHA256(t, testBucket, done.Key); n != 5*MiB {
		t.Error("the finished object is gone")
	}
	fin := rc.waitFor(t, 20*time.Second, "upload.finished of the single PUT", func(dl delivery) bool {
		return dl.Event.Type == "upload.finished" && strings.HasSuffix(put.URL[:strings.Index(put.URL, "?")], dl.Event.Upload.ID)
	})
	if fin.Event.Upload.Size != 3 || fin.Event.Upload.Storage.ETag == "" {
		t.Errorf("upload.finished of the single PUT: %s", fin.Body)
	}
	waitUntil(t, 20*time.Second, "the janitor to remove orphans and stale records", func() bool {
		return len(d.b.s3.MultipartUploads(t, testBucket)) == 0 && len(d.b.s3.Keys(t, testBucket, ".tusgate/direct/")) == 0
	})
}

// At start-up tusgate reads the bucket's CORS rules and says clearly what
// keeps browsers on --cors-origins from uploading straight to it.
func TestDirectStartupCORSCheck(t *testing.T) {
	b := s3Backend(t)
	const origin = "https://app.example"
	start := func() string {
		t.Helper()
		a := startAuth(t, b, "--direct-uploads", "--cors-origins", origin)
		a.g.Kill() // the check runs before tusgate listens: its lines are logged
		return a.g.Log()
	}
	put := func(rule types.CORSRule) {
		t.Helper()
		_, err := b.s3.Client.PutBucketCors(t.Context(), &s3.PutBucketCorsInput{Bucket: aws.String(testBucket), CORSConfiguration: &types.CORSConfiguration{CORSRules: []types.CORSRule{rule}}})
		if err != nil {
			t.Fatal(err)
		}
	}
	if log := start(); !strings.Contains(log, "level=WARN") || !strings.Contains(log, `has no CORS configuration`) {
		t.Errorf("no CORS rules: log lacks the warning:\n%s", log)
	}
	put(types.CORSRule{AllowedOrigins: []string{origin}, AllowedMethods: []string{"PUT"}, AllowedHeaders: []string{"*"}})
	if log := start(); !strings.Contains(log, "does not expose ETag") {
		t.Errorf("ETag not exposed: log lacks the warning:\n%s", log)
	}
	put(types.CORSRule{AllowedOrigins: []string{"https://other.example"}, AllowedMethods: []string{"PUT"}, AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}})
	if log := start(); !strings.Contains(log, "do not allow PUT from origin "+origin) {
		t.Errorf("other origin: log lacks the warning:\n%s", log)
	}
	put(types.CORSRule{AllowedOrigins: []string{origin}, AllowedMethods: []string{"PUT", "GET"}, AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}})
	if log := start(); !strings.Contains(log, "the bucket's CORS rules let browsers upload") || strings.Contains(log, "level=WARN msg=\"direct uploads") {
		t.Errorf("good rules: log:\n%s", log)
	}
}
