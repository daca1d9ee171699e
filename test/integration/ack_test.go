package integration

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

// eachFaultyWritePath is eachWritePath with a fault proxy between tusgate
// and versitygw (and no SDK retries, so that every fault reaches tusgate).
func eachFaultyWritePath(t *testing.T, f func(t *testing.T, i int, b *backend, proxy *testenv.FaultProxy)) {
	eachWritePath(t, func(t *testing.T, i int, _ string, b *backend) {
		var proxy *testenv.FaultProxy
		if writePaths[i].tls {
			var ca string
			proxy, ca = testenv.NewTLSFaultProxy(t, b.s3.Endpoint)
			b.env = append(b.env, "AWS_CA_BUNDLE="+ca)
		} else {
			proxy = testenv.NewFaultProxy(t, b.s3.Endpoint)
		}
		b.env = append(b.env, "AWS_ENDPOINT_URL_S3="+proxy.URL, "AWS_MAX_ATTEMPTS=1")
		f(t, i, b, proxy)
	})
}

// isPartUpload matches S3's UploadPart requests.
func isPartUpload(r *http.Request) bool {
	return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") != ""
}

// The case: 3 MiB of a 9 MiB upload were acknowledged and wait in
// the .part tail; the next PATCH fails because S3 refuses every part. Once
// S3 is back, HEAD must still report the 3 MiB. (It reported 0: the tail
// was read and deleted before its bytes were in a part.)
func TestAcknowledgedTailSurvivesFailedPart(t *testing.T) {
	data, sum := payload(9*MiB, 51)
	eachFaultyWritePath(t, func(t *testing.T, _ int, b *backend, proxy *testenv.FaultProxy) {
		g := b.start(t)
		loc := create(t, g, int64(len(data)))
		r := patch(t, loc, 0, data[:3*MiB])
		if r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(3*MiB) {
			t.Fatalf("first PATCH: %d offset %q", r.Status, r.Header.Get("Upload-Offset"))
		}
		proxy.FailMatching(isPartUpload)
		if r := patch(t, loc, 3*MiB, data[3*MiB:6*MiB]); r.Status != http.StatusServiceUnavailable {
			t.Fatalf("PATCH while S3 refuses parts: %d %s", r.Status, r.Body)
		}
		proxy.FailMatching(nil)
		if off := headOffset(t, loc); off != 3*MiB {
			t.Fatalf("offset %d after S3 recovered; %d bytes were acknowledged", off, 3*MiB)
		}
		uploadResumably(t, loc, data, 4*MiB, 10)
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

// Uploads in PATCHes of random sizes, through 15 % failed S3 requests and
// SIGKILLs at random moments (seeded: a failure can be replayed), on every
// write path. Every offset tusgate acknowledged (204 with Upload-Offset)
// must be reported by every later HEAD, after any failure and restart, and
// the object must be the bytes sent.
func TestAcknowledgedOffsetUnderFaultsAndKills(t *testing.T) {
	eachFaultyWritePath(t, func(t *testing.T, i int, b *backend, proxy *testenv.FaultProxy) {
		g := b.start(t)
		rng := rand.New(rand.NewPCG(5, uint64(i)))
		data, sum := payload(int64(24*MiB+rng.IntN(4*MiB)), uint64(60+i))
		size := int64(len(data))
		loc := create(t, g, size)
		proxy.FailRandomly(0.15, uint64(i+1))
		acked := int64(0)
		var log []string
		kills := 0
		for step := 0; ; step++ {
			if step > 300 {
				t.Fatalf("no progress after %d requests: %v", step, log)
			}
			off := resumeOffset(t, loc)
			if off < acked {
				t.Fatalf("HEAD reports %d after %d was acknowledged; requests: %v", off, acked, log)
			}
			if off == size {
				break
			}
			end := min(off+1+rng.Int64N(4*MiB), size)
			hdr := with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(off, 10))
			if kills < 4 && rng.IntN(4) == 0 {
				at := off + rng.Int64N(end-off)
				body := newCountingReader(bytes.NewReader(data[off:end]), at-off, false)
				errc := make(chan error, 1)
				go func() {
					_, err := tryDo(t.Context(), "PATCH", loc, hdr, body, end-off)
					errc <- err
				}()
				select {
				case <-body.reached:
					g.Kill()
					<-errc
					g.Restart()
					kills++
					log = append(log, fmt.Sprintf("%d-%d killed at %d", off, end, at))
				case err := <-errc:
					// Answered before the kill point (S3 failed first).
					log = append(log, fmt.Sprintf("%d-%d answered before the kill at %d: %v", off, end, at, err))
				}
				continue
			}
			r, err := tryDo(t.Context(), "PATCH", loc, hdr, bytes.NewReader(data[off:end]), end-off)
			switch {
			case err != nil:
				t.Fatalf("PATCH %d-%d: %v", off, end, err)
			case r.Status == http.StatusNoContent:
				n, _ := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
				if n != end {
					t.Fatalf("PATCH %d-%d acknowledged offset %d", off, end, n)
				}
				acked = n
			case r.Status != http.StatusServiceUnavailable && r.Status != http.StatusLocked:
				t.Fatalf("PATCH %d-%d: %d %s", off, end, r.Status, r.Body)
			}
			log = append(log, fmt.Sprintf("%d-%d: %d", off, end, r.Status))
		}
		proxy.FailRandomly(0, 0)
		_, failed := proxy.Counts()
		t.Logf("%d requests, %d kills, %d S3 requests failed", len(log), kills, failed)
		if failed == 0 || kills == 0 {
			t.Fatalf("no S3 request failed or no kill happened: the test proves nothing")
		}
		b.assertStored(t, loc, sum, size)
	})
}

// resumeOffset asks HEAD for the offset as tus-js-client does, waiting
// out 423 (S3 trouble) with a client's back-off.
func resumeOffset(t *testing.T, loc string) int64 {
	t.Helper()
	for attempt := 1; attempt <= 50; attempt++ {
		r, err := tryDo(context.Background(), "HEAD", loc, tusHeaders, nil, -1)
		if err == nil && r.Status == http.StatusOK {
			off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
			if err != nil {
				t.Fatalf("HEAD: Upload-Offset %q", r.Header.Get("Upload-Offset"))
			}
			return off
		}
		if err == nil && r.Status != http.StatusLocked {
			t.Fatalf("HEAD answered %d: a client would start over", r.Status)
		}
		time.Sleep(time.Duration(attempt) * 10 * time.Millisecond) // a client's back-off
	}
	t.Fatalf("HEAD did not answer 200 in 50 attempts")
	return 0
}
