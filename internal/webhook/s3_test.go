package webhook

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/test/testenv"
)

// The S3 client must be usable as S3API.
var _ S3API = (*s3.Client)(nil)

const testBucket = "webhook-outbox"

func s3Backend(t *testing.T, prefix string) (backend, *testenv.S3Server) {
	srv := testenv.StartS3(t, testenv.S3Options{})
	srv.CreateBucket(t, testBucket)
	read := func(area string) func(*testing.T, string) ([]byte, bool) {
		return func(t *testing.T, id string) ([]byte, bool) {
			out, err := srv.Client.GetObject(t.Context(), &s3.GetObjectInput{
				Bucket: aws.String(testBucket), Key: aws.String(prefix + area + "/" + id + ".json"),
			})
			if notFound(err) {
				return nil, false
			}
			must(t, err)
			defer out.Body.Close()
			b, err := io.ReadAll(out.Body)
			must(t, err)
			return b, true
		}
	}
	return backend{
		fresh:  func() Outbox { return &S3Outbox{Client: srv.Client, Bucket: testBucket, Prefix: prefix} },
		shared: true,
		queued: read(queueDir),
		dead:   read(deadDir),
		corrupt: func(t *testing.T, id string) {
			_, err := srv.Client.PutObject(t.Context(), &s3.PutObjectInput{
				Bucket: aws.String(testBucket), Key: aws.String(prefix + queueDir + "/" + id + ".json"),
				Body: strings.NewReader("{not json"),
			})
			must(t, err)
		},
	}, srv
}

func TestS3Outbox(t *testing.T) {
	b, srv := s3Backend(t, "hooks/")
	testOutboxContract(t, b)
	// Strays under the prefix are left alone.
	if keys := srv.Keys(t, testBucket, ""); len(keys) == 0 || !strings.HasPrefix(keys[0], "hooks/") {
		t.Errorf("keys %v", keys)
	}
}

func TestS3OutboxRestart(t *testing.T) {
	b, _ := s3Backend(t, "")
	testOutboxRestart(t, b)
}

// versitygw v1.8.0 honours If-Match and If-None-Match on PutObject (see
// TestS3ConditionalWrites), so concurrent claims have exactly one winner.
func TestS3OutboxConcurrentClaims(t *testing.T) {
	b, _ := s3Backend(t, "")
	testOutboxConcurrentClaims(t, b, false)
}

// TestS3ConditionalWrites pins down what S3Outbox relies on in the server.
func TestS3ConditionalWrites(t *testing.T) {
	srv := testenv.StartS3(t, testenv.S3Options{})
	srv.CreateBucket(t, testBucket)
	ctx := t.Context()
	put := func(body string, in *s3.PutObjectInput) (*s3.PutObjectOutput, error) {
		in.Bucket, in.Key, in.Body = aws.String(testBucket), aws.String("k"), strings.NewReader(body)
		return srv.Client.PutObject(ctx, in)
	}
	first, err := put("one", &s3.PutObjectInput{})
	must(t, err)
	if _, err := put("two", &s3.PutObjectInput{IfNoneMatch: aws.String("*")}); storeerr.HTTPStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-None-Match: * over an object: %v, want 412", err)
	}
	if _, err := put("three", &s3.PutObjectInput{IfMatch: aws.String(`"0123456789abcdef0123456789abcdef"`)}); storeerr.HTTPStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match with another ETag: %v, want 412", err)
	}
	if _, err := put("four", &s3.PutObjectInput{IfMatch: first.ETag}); err != nil {
		t.Errorf("If-Match with the current ETag: %v", err)
	}
	if _, err := put("five", &s3.PutObjectInput{IfMatch: first.ETag}); storeerr.HTTPStatus(err) != http.StatusPreconditionFailed {
		t.Errorf("If-Match with a replaced ETag: %v, want 412", err)
	}
}

// TestS3OutboxSeesChangesByOthers: a record this value saw waiting is
// claimed once another instance made it due.
func TestS3OutboxSeesChangesByOthers(t *testing.T) {
	b, _ := s3Backend(t, "")
	ctx := t.Context()
	a := b.fresh()
	rec := newRecord("evt_moved", testStart.Add(time.Hour))
	must(t, a.Put(ctx, rec))
	if got := claim(t, a, testStart, 10); len(got) != 0 {
		t.Fatalf("claimed a record not due: %v", ids(got))
	}
	rec.NextAttempt = testStart
	must(t, b.fresh().Reschedule(ctx, rec))
	if got := claim(t, a, testStart, 10); len(got) != 1 {
		t.Fatalf("record made due by another instance not claimed: %v", ids(got))
	}
}

// countingS3 counts GetObject calls.
type countingS3 struct {
	S3API
	gets int
}

func (c *countingS3) GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	c.gets++
	return c.S3API.GetObject(ctx, in, optFns...)
}

func TestS3OutboxDoesNotRereadWaitingRecords(t *testing.T) {
	srv := testenv.StartS3(t, testenv.S3Options{})
	srv.CreateBucket(t, testBucket)
	c := &countingS3{S3API: srv.Client}
	ob := &S3Outbox{Client: c, Bucket: testBucket}
	for _, e := range []string{"evt_w1", "evt_w2", "evt_w3"} {
		must(t, ob.Put(t.Context(), newRecord(e, testStart.Add(time.Hour))))
	}
	for range 3 {
		claim(t, ob, testStart, 10)
	}
	if c.gets != 0 {
		t.Errorf("%d GETs of records this value wrote and knows to be waiting", c.gets)
	}
	fresh := &S3Outbox{Client: c, Bucket: testBucket}
	claim(t, fresh, testStart, 10)
	claim(t, fresh, testStart, 10)
	if c.gets != 3 {
		t.Errorf("a fresh value made %d GETs in two claims, want 3", c.gets)
	}
	if got := claim(t, fresh, testStart.Add(time.Hour), 10); len(got) != 3 {
		t.Errorf("claimed %d records once due, want 3", len(got))
	}
}

func TestDispatcherS3EndToEnd(t *testing.T) {
	srv := testenv.StartS3(t, testenv.S3Options{})
	srv.CreateBucket(t, testBucket)
	rc := newReceiver(t, clock.Real{}, nil)
	d, err := New(Options{
		Outbox: &S3Outbox{Client: srv.Client, Bucket: testBucket, Prefix: "webhooks/"},
		URLs:   []string{rc.URL + "/hook"},
		Secret: testSecret,
		Log:    testLog(t),
	})
	must(t, err)
	runDispatcher(t, d)
	ev := testEvent("evt_e2e")
	must(t, d.Enqueue(t.Context(), ev))
	got := rc.next(t)
	want, _ := json.Marshal(ev)
	if !bytes.Equal(got.body, want) {
		t.Errorf("body\n%s\nwant\n%s", got.body, want)
	}
	if err := Verify(testSecret, got.header, got.body, time.Now(), time.Minute); err != nil {
		t.Error(err)
	}
	waitFor(t, "the queue to be empty", func() bool { return len(srv.Keys(t, testBucket, "webhooks/queue/")) == 0 })
	rc.none(t)
	if keys := srv.Keys(t, testBucket, ""); len(keys) != 0 {
		t.Errorf("left behind: %v", keys)
	}
}
