package integration

import (
	"bytes"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/webhook"
	"github.com/tusgate/tusgate/test/testenv"
)

const webhookSecret = "test-webhook-secret-0123456789"

// answer is what a receiver replies.
type answer struct {
	Status      int
	ContentType string
	Body        string
}

// delivery is one request a receiver got.
type delivery struct {
	Status int // what the receiver answered
	Header http.Header
	Body   []byte
	Event  webhook.Event
	Raw    map[string]any
}

// receiver is a webhook endpoint run by the test. Its answer is decided by
// status (200 unless set); every request is recorded.
type receiver struct {
	URL    string
	status atomic.Int32
	reply  func(d delivery) answer // overrides status when set

	mu    sync.Mutex
	got   []delivery
	added chan struct{}
}

func startReceiver(t *testing.T) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	rc := &receiver{URL: "http://" + ln.Addr().String() + "/hook", added: make(chan struct{}, 1000)}
	rc.status.Store(http.StatusOK)
	srv := &http.Server{Handler: http.HandlerFunc(rc.serve)}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { srv.Close() })
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	d := delivery{Header: r.Header.Clone(), Body: body}
	_ = json.Unmarshal(body, &d.Event)
	_ = json.Unmarshal(body, &d.Raw)
	a := answer{Status: int(rc.status.Load())}
	if rc.reply != nil {
		a = rc.reply(d)
	}
	d.Status = a.Status
	rc.mu.Lock()
	rc.got = append(rc.got, d)
	rc.mu.Unlock()
	rc.added <- struct{}{}
	if a.ContentType != "" {
		w.Header().Set("Content-Type", a.ContentType)
	}
	w.WriteHeader(a.Status)
	io.WriteString(w, a.Body)
}

// all returns the deliveries so far.
func (rc *receiver) all() []delivery {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return slices.Clone(rc.got)
}

// waitFor waits until a delivery answered with 2xx satisfies match and
// returns it. Deliveries answered otherwise do not count.
func (rc *receiver) waitFor(t *testing.T, within time.Duration, what string, match func(delivery) bool) delivery {
	t.Helper()
	deadline := time.After(within)
	for {
		for _, d := range rc.all() {
			if d.Status/100 == 2 && match(d) {
				return d
			}
		}
		select {
		case <-rc.added:
		case <-deadline:
			t.Fatalf("no webhook %s within %v; got %d deliveries: %s", what, within, len(rc.all()), rc.summary())
		}
	}
}

func (rc *receiver) summary() string {
	var s []string
	for _, d := range rc.all() {
		s = append(s, d.Event.Type+" "+d.Event.Upload.ID)
	}
	return strings.Join(s, "; ")
}

func isEvent(typ, uploadID string) func(delivery) bool {
	return func(d delivery) bool { return d.Event.Type == typ && d.Event.Upload.ID == uploadID }
}

// checkSigned verifies a delivery's signature and that it carries no
// credentials.
func checkSigned(t *testing.T, d delivery) {
	t.Helper()
	if err := webhook.Verify([]byte(webhookSecret), d.Header, d.Body, time.Now(), 5*time.Minute); err != nil {
		t.Fatalf("%s: signature does not verify: %v (headers %v)", d.Event.Type, err, d.Header)
	}
	if err := webhook.Verify([]byte("another-secret-0123456789"), d.Header, d.Body, time.Now(), 5*time.Minute); err == nil {
		t.Fatalf("%s: signature verifies with the wrong secret", d.Event.Type)
	}
	for _, h := range []string{"Authorization", "Cookie"} {
		if d.Header.Get(h) != "" || bytes.Contains(bytes.ToLower(d.Body), []byte("bearer ")) {
			t.Fatalf("%s: delivery carries %s", d.Event.Type, h)
		}
	}
	if d.Header.Get("Tusgate-Event-Id") != d.Event.ID || d.Header.Get("Tusgate-Event-Type") != d.Event.Type || d.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("%s: headers %v do not match the event", d.Event.Type, d.Header)
	}
}

// lifecycleBackend runs f against S3 and the disk store with webhooks to rc.
func withWebhookSecret(b *backend) *backend {
	b.env = append(b.env, "TUSGATE_WEBHOOK_SECRET="+webhookSecret)
	return b
}

func TestWebhooksShapeAndSignature(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		rc := startReceiver(t)
		a := startAuth(t, withWebhookSecret(b), "--webhook-url", rc.URL)
		alice := bearer(a.token(t, "rsa1", "auth0|alice"))
		data, sum := payload(7*MiB+5, 90)
		// filename "a.txt", filetype "text/plain", note "x"
		r := do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Length", strconv.Itoa(len(data)), "Upload-Metadata", "filename YS50eHQ=,filetype dGV4dC9wbGFpbg==,note eA=="), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("POST: %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		id := uploadID(loc)
		created := rc.waitFor(t, 15*time.Second, "upload.created", isEvent("upload.created", id))
		checkSigned(t, created)

		if r := do(t, "PATCH", loc, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data)); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
		finished := rc.waitFor(t, 15*time.Second, "upload.finished", isEvent("upload.finished", id))
		checkSigned(t, finished)

		// The documented shape, exactly.
		up, _ := finished.Raw["upload"].(map[string]any)
		wantKeys := []string{"id", "metadata", "offset", "owner", "size", "storage"}
		if keys := sortedKeys(up); !slices.Equal(keys, wantKeys) {
			t.Fatalf("upload keys %v, want %v (body %s)", keys, wantKeys, finished.Body)
		}
		if keys := sortedKeys(finished.Raw); !slices.Equal(keys, []string{"id", "time", "type", "upload"}) {
			t.Fatalf("event keys %v", keys)
		}
		ev := finished.Event
		if ev.Upload.Size != int64(len(data)) || ev.Upload.Offset != int64(len(data)) ||
			ev.Upload.Owner == nil || ev.Upload.Owner.Subject != "auth0|alice" || ev.Upload.Owner.Issuer != a.iss.URL ||
			!mapsEqual(ev.Upload.MetaData, map[string]string{"filename": "a.txt", "filetype": "text/plain", "note": "x"}) {
			t.Fatalf("finished event: %s", finished.Body)
		}
		if time.Since(ev.Time) > time.Minute || ev.Time.After(time.Now().Add(time.Second)) {
			t.Fatalf("event time %v", ev.Time)
		}
		st := ev.Upload.Storage
		if b.s3 != nil {
			head, err := b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(objectKey(id))})
			if err != nil {
				t.Fatal(err)
			}
			if st.Type != "s3" || st.Bucket != testBucket || st.Key != objectKey(id) || st.ETag == "" || st.ETag != aws.ToString(head.ETag) {
				t.Fatalf("storage %+v, want s3 %s/%s etag %s", st, testBucket, objectKey(id), aws.ToString(head.ETag))
			}
		} else if st.Type != "disk" || st.Key != id {
			t.Fatalf("storage %+v", st)
		}
		if created.Event.Upload.Expires == nil || created.Event.Upload.Expires.Before(time.Now().Add(23*time.Hour)) {
			t.Fatalf("created event: expires %v, want about 24h ahead", created.Event.Upload.Expires)
		}

		// Termination.
		r = do(t, "POST", a.g.URL+"/files/", with(alice, "Upload-Length", "10"), nil)
		loc2 := r.Header.Get("Location")
		if r := do(t, "DELETE", loc2, alice, nil); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d", r.Status)
		}
		term := rc.waitFor(t, 15*time.Second, "upload.terminated", isEvent("upload.terminated", uploadID(loc2)))
		checkSigned(t, term)

		// Each event once, although nothing here asked for retries.
		counts := map[string]int{}
		for _, d := range rc.all() {
			counts[d.Event.ID]++
		}
		for id, n := range counts {
			if n != 1 {
				t.Fatalf("event %s delivered %d times", id, n)
			}
		}
	})
}

func sortedKeys(m map[string]any) []string {
	var keys []string
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

// A receiver that fails for a while gets the event once it recovers.
func TestWebhookRetriedUntilReceiverRecovers(t *testing.T) {
	b := withWebhookSecret(s3Backend(t))
	rc := startReceiver(t)
	rc.status.Store(http.StatusServiceUnavailable)
	g := b.start(t, "--webhook-url", rc.URL)
	loc := create(t, g, 3)
	id := uploadID(loc)
	// Three failed attempts, then up.
	waitUntil(t, 20*time.Second, "three failed attempts", func() bool { return len(rc.all()) >= 3 })
	rc.status.Store(http.StatusOK)
	got := rc.waitFor(t, 30*time.Second, "after recovery", isEvent("upload.created", id))
	checkSigned(t, got)
	attempts := 0
	for _, d := range rc.all() {
		if d.Event.Type == "upload.created" {
			attempts++
			if d.Status/100 == 2 && attempts < 4 {
				t.Fatalf("attempt %d answered %d: the receiver was down then", attempts, d.Status)
			}
			if d.Event.ID != got.Event.ID {
				t.Fatalf("retries changed the event ID: %s vs %s", d.Event.ID, got.Event.ID)
			}
		}
	}
	if attempts < 4 {
		t.Fatalf("%d attempts, want at least 4", attempts)
	}
}

// Events stored before the answer survive a SIGKILL of tusgate and are
// delivered by the next process.
func TestWebhooksSurviveKill(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T) *backend
	}{
		{"s3", func(t *testing.T) *backend { return s3Backend(t) }},
		{"disk", func(t *testing.T) *backend { return diskBackend(t) }},
		{"redis", func(t *testing.T) *backend { return s3Backend(t, "--redis-url", testenv.StartRedis(t).URL()) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b := withWebhookSecret(tc.setup(t))
			rc := startReceiver(t)
			rc.status.Store(http.StatusInternalServerError)
			g := b.start(t, "--webhook-url", rc.URL)
			data, sum := payload(1*MiB, 91)
			loc := create(t, g, int64(len(data)))
			if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH: %d %s", r.Status, r.Body)
			}
			g.Kill()
			rc.status.Store(http.StatusOK)
			g.Start()
			id := uploadID(loc)
			rc.waitFor(t, 60*time.Second, "upload.created after restart", isEvent("upload.created", id))
			fin := rc.waitFor(t, 60*time.Second, "upload.finished after restart", isEvent("upload.finished", id))
			checkSigned(t, fin)
			b.assertStored(t, loc, sum, int64(len(data)))
		})
	}
}

// The pre-finish URL approves or rejects uploads; a rejected upload leaves
// nothing behind and the client sees the application's answer; an
// application that cannot answer (an error page from a proxy in front of
// it, a 5xx) leaves the upload to be finished later.
func TestPreFinishApproval(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		rc := startReceiver(t)
		var flaky atomic.Int32
		rc.reply = func(d delivery) answer {
			if d.Event.Type != "upload.pre-finish" {
				return answer{Status: http.StatusOK}
			}
			switch d.Event.Upload.MetaData["filename"] {
			case "bad.exe":
				return answer{http.StatusUnprocessableEntity, "application/json", `{"reject": true, "message": "executables are not allowed\r\nhere"}`}
			case "flaky":
				switch flaky.Add(1) {
				case 1: // a mistyped URL, or a router that lost the route
					return answer{http.StatusNotFound, "text/plain; charset=utf-8", "404 page not found"}
				case 2:
					return answer{Status: http.StatusBadGateway}
				}
			}
			return answer{Status: http.StatusOK}
		}
		g := withWebhookSecret(b).start(t, "--pre-finish-url", rc.URL)
		data, sum := payload(6*MiB+1, 92)

		// Rejected.
		loc := create(t, g, int64(len(data)), "Upload-Metadata", "filename YmFkLmV4ZQ==")
		r := patch(t, loc, 0, data)
		if r.Status != http.StatusUnprocessableEntity || r.Body != "ERR_UPLOAD_REJECTED: executables are not allowed here\n" {
			t.Fatalf("rejected upload: %d %q", r.Status, r.Body)
		}
		b.assertGone(t, loc)
		if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != http.StatusNotFound {
			t.Fatalf("HEAD of a rejected upload: %d", r.Status)
		}
		// The rejection was asked for synchronously, so it is recorded.
		var pre []delivery
		for _, d := range rc.all() {
			if isEvent("upload.pre-finish", uploadID(loc))(d) {
				pre = append(pre, d)
			}
		}
		if len(pre) != 1 || pre[0].Status != http.StatusUnprocessableEntity || pre[0].Event.Upload.Offset != int64(len(data)) {
			t.Fatalf("pre-finish requests for the rejected upload: %d", len(pre))
		}
		checkSigned(t, pre[0])

		// Approved.
		loc = create(t, g, int64(len(data)), "Upload-Metadata", "filename Z29vZC5iaW4=")
		if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
			t.Fatalf("approved upload: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))

		// The application cannot answer twice (a 404 without a rejection
		// body, then a 502): the client is told to retry each time, nothing
		// is deleted, and the upload is finished (and approved) on the
		// request after.
		loc = create(t, g, int64(len(data)), "Upload-Metadata", "filename Zmxha3k=")
		r = patch(t, loc, 0, data)
		if r.Status != http.StatusServiceUnavailable || r.Header.Get("Retry-After") == "" || !strings.HasPrefix(r.Body, "ERR_APPROVAL_UNAVAILABLE") {
			t.Fatalf("PATCH while the application answers 404: %d %q", r.Status, r.Body)
		}
		if b.s3 != nil {
			if keys := b.s3.Keys(t, testBucket, objectKey(uploadID(loc))); slices.Contains(keys, objectKey(uploadID(loc))) {
				t.Fatal("object exists before approval")
			}
		}
		if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != http.StatusLocked || r.Header.Get("Retry-After") == "" {
			t.Fatalf("HEAD while the application answers 502: %d, Retry-After %q", r.Status, r.Header.Get("Retry-After"))
		}
		if off := headOffset(t, loc); off != int64(len(data)) {
			t.Fatalf("HEAD after approval: offset %d", off)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
		if n := flaky.Load(); n != 3 {
			t.Fatalf("pre-finish asked %d times about the flaky upload, want 3", n)
		}
	})
}

// Idle uploads expire: the janitor removes every trace, and requests answer
// 410 while the tombstone lasts. Uploads being written never expire.
func TestIdleUploadsExpire(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		rc := startReceiver(t)
		g := withWebhookSecret(b).start(t, "--upload-ttl", "2s", "--webhook-url", rc.URL)

		// An idle upload with a tail smaller than a part (.part on S3).
		idle := create(t, g, 20*MiB)
		start := time.Now()
		r := patch(t, idle, 0, bytes.Repeat([]byte("x"), 1000))
		if r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d", r.Status)
		}
		exp, err := http.ParseTime(r.Header.Get("Upload-Expires"))
		if err != nil || exp.Before(start.Add(time.Second)) || exp.After(time.Now().Add(3*time.Second)) {
			t.Fatalf("Upload-Expires %q (%v), want about 2s ahead", r.Header.Get("Upload-Expires"), err)
		}

		// An upload paused mid-PATCH for longer than the TTL.
		data, sum := payload(12*MiB, 93)
		busy := create(t, g, int64(len(data)))
		body := &pausingReader{r: bytes.NewReader(data), n: 1 * MiB, paused: make(chan struct{}), resume: make(chan struct{})}
		result := make(chan response, 1)
		go func() {
			resp, err := tryDo(t.Context(), "PATCH", busy, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
			if err != nil {
				resp.Status = -1
			}
			result <- resp
		}()
		<-body.paused

		// An orphan multipart upload (no .info), as a crashed creation leaves.
		var orphanKey string
		if b.s3 != nil {
			// Another application's multipart upload in the same bucket
			// is not tusgate's to abort.
			orphanKey = "abcdefghijklmnopqrstuvwxyz/0123456789abcdef0123456789abcdef"
			for _, k := range []string{orphanKey, "other-app/big.bin"} {
				if _, err := b.s3.Client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(k)}); err != nil {
					t.Fatal(err)
				}
			}
		}

		deadline := time.Now().Add(20 * time.Second)
		for {
			r := do(t, "HEAD", idle, tusHeaders, nil)
			if r.Status == http.StatusGone {
				break
			}
			if r.Status != http.StatusOK || time.Now().After(deadline) {
				t.Fatalf("HEAD of the idle upload: %d, want 200 until it expires, then 410", r.Status)
			}
			time.Sleep(100 * time.Millisecond) // polling with a deadline
		}
		for _, m := range []string{"PATCH", "DELETE"} {
			if r := do(t, m, idle, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "1000"), nil); r.Status != http.StatusGone || !strings.HasPrefix(r.Body, "ERR_UPLOAD_EXPIRED") {
				t.Fatalf("%s of the expired upload: %d %q", m, r.Status, r.Body)
			}
		}
		// The 410 comes once the multipart upload is aborted; the janitor
		// deletes the .info last, and upload.expired is delivered only
		// when that is gone too.
		ev := rc.waitFor(t, 15*time.Second, "upload.expired", isEvent("upload.expired", uploadID(idle)))
		checkSigned(t, ev)
		b.assertGone(t, idle)

		// Let two more janitor runs pass over the paused upload.
		runs := janitorRuns(t, g)
		waitUntil(t, 15*time.Second, "two more janitor runs", func() bool { return janitorRuns(t, g) >= runs+2 })
		close(body.resume)
		if r := <-result; r.Status != http.StatusNoContent {
			t.Fatalf("the paused upload was expired under its PATCH: %d %q", r.Status, r.Body)
		}
		b.assertStored(t, busy, sum, int64(len(data)))
		if b.s3 != nil {
			waitUntil(t, 15*time.Second, "the orphan multipart upload to be aborted", func() bool {
				for _, mp := range b.s3.MultipartUploads(t, testBucket) {
					if strings.HasPrefix(mp, orphanKey+" ") {
						return false
					}
				}
				return true
			})
			if !slices.ContainsFunc(b.s3.MultipartUploads(t, testBucket), func(mp string) bool { return strings.HasPrefix(mp, "other-app/big.bin ") }) {
				t.Fatal("the janitor aborted another application's multipart upload")
			}
		}
	})
}

// After the tombstone TTL an expired upload is simply unknown; finished
// uploads' .info go after --finished-info-ttl, their objects stay.
func TestTombstoneAndFinishedInfoTTL(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t, "--upload-ttl", "1s", "--tombstone-ttl", "3s", "--finished-info-ttl", "2s")
	idle := create(t, g, 10)
	data, sum := payload(1000, 94)
	// Finished in its creation: a PATCH a second later would find it expired.
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", strconv.Itoa(len(data)), "Content-Type", "application/offset+octet-stream"), bytes.NewReader(data))
	if r.Status != http.StatusCreated || r.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
		t.Fatalf("creation with upload: %d offset %q %s", r.Status, r.Header.Get("Upload-Offset"), r.Body)
	}
	done := r.Header.Get("Location")
	key := objectKey(uploadID(done))
	waitUntil(t, 20*time.Second, "HEAD of the idle upload to answer 410", func() bool { return do(t, "HEAD", idle, tusHeaders, nil).Status == http.StatusGone })
	waitUntil(t, 20*time.Second, "HEAD of the idle upload to answer 404", func() bool { return do(t, "HEAD", idle, tusHeaders, nil).Status == http.StatusNotFound })
	waitUntil(t, 20*time.Second, "the finished upload's .info to go", func() bool {
		return !slices.Contains(b.s3.Keys(t, testBucket, key), key+".info")
	})
	b.assertStored(t, done, sum, int64(len(data)))
	waitUntil(t, 20*time.Second, "the tombstone to be swept", func() bool {
		return len(b.s3.Keys(t, testBucket, ".tusgate/expired/")) == 0
	})
}

// janitorRuns reads how many janitor runs tusgate has finished, from
// /metrics.
func janitorRuns(t *testing.T, g *gate) float64 {
	t.Helper()
	r := do(t, "GET", g.URL+"/metrics", nil, nil)
	for line := range strings.Lines(r.Body) {
		if v, ok := strings.CutPrefix(line, "tusgate_janitor_runs_total "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatal(err)
			}
			return f
		}
	}
	t.Fatalf("no tusgate_janitor_runs_total in /metrics")
	return 0
}

// waitUntil polls cond every 50 ms until it holds or within passes.
func waitUntil(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
