package integration

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

// writePaths are the ways a PATCH body reaches S3 (internal/s3stream), and
// what makes tusgate take each: streamed from part buffers as it arrives
// (S3 over HTTPS), read into part buffers first (plain HTTP), or streamed
// through a small window (when the part buffer budget is spent).
var writePaths = []struct {
	name  string
	tls   bool
	extra []string
}{
	{"stream", true, nil},
	{"buffer", false, nil},
	{"window", true, []string{"--s3-buffer-memory", "0"}},
	{"window-http", false, []string{"--s3-buffer-memory", "0"}},
}

// eachWritePath runs f as a subtest for each write path (i is its index in
// writePaths), with a backend of 5 MiB parts on a versitygw of its own.
func eachWritePath(t *testing.T, f func(t *testing.T, i int, path string, b *backend)) {
	for i, p := range writePaths {
		t.Run(p.name, func(t *testing.T) {
			s3 := testenv.StartS3(t, testenv.S3Options{TLS: p.tls})
			s3.CreateBucket(t, testBucket)
			dir := t.TempDir()
			f(t, i, p.name, &backend{name: "s3", s3: s3, env: s3.Env(), dataDir: dir,
				args: append([]string{"--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", dir}, p.extra...)})
		})
	}
}

// Each write path stores the bytes a client sent. When the client
// disconnects in the middle of a part, the paths with part buffers keep
// every byte it sent; a window keeps the parts stored before (docs/s3.md).
// Either way the offset never goes below what was acknowledged.
func TestWritePaths(t *testing.T) {
	data, sum := payload(23*MiB+7, 31)
	eachWritePath(t, func(t *testing.T, _ int, path string, b *backend) {
		g := b.start(t)

		// One PATCH: four full parts and a last one of 3 MiB + 7.
		whole := create(t, g, int64(len(data)))
		if r := patch(t, whole, 0, data); r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
			t.Fatalf("PATCH: %d offset %q %s", r.Status, r.Header.Get("Upload-Offset"), r.Body)
		}
		b.assertStored(t, whole, sum, int64(len(data)))

		// Small PATCHes (tails below the minimum part size), then one
		// cut mid-part by the client: every byte it sent is kept.
		loc := create(t, g, int64(len(data)))
		off := 0
		for _, n := range []int{3 * MiB, 1, 3*MiB - 1, 4 * MiB} {
			if r := patch(t, loc, int64(off), data[off:off+n]); r.Status != http.StatusNoContent {
				t.Fatalf("PATCH at %d: %d %s", off, r.Status, r.Body)
			}
			off += n
			if got := headOffset(t, loc); got != int64(off) {
				t.Fatalf("offset after PATCH = %d, want %d", got, off)
			}
		}
		sent := 7*MiB + 5 // the rest of a part, a full one and 5 bytes more
		if status := cutPatch(t, loc, int64(off), data[off:], sent); status < 400 {
			t.Fatalf("cut PATCH answered %d", status)
		}
		got := int(headOffset(t, loc))
		switch {
		case !strings.HasPrefix(path, "window") && got != off+sent:
			t.Fatalf("offset after the client disconnected = %d, want every byte it sent: %d", got, off+sent)
		case got < off || got > off+sent:
			t.Fatalf("offset after the client disconnected = %d, want the parts stored of the %d bytes sent from %d", got, sent, off)
		}
		off = got
		if r := patch(t, loc, int64(off), data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("resume PATCH: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))

		m := scrapeMetrics(t, g)
		for _, p := range []string{"stream", "buffer", "window", "tempfile"} {
			n := m[`tusgate_s3_writes_total{path="`+p+`"}`]
			if (p == strings.TrimSuffix(path, "-http")) != (n > 0) {
				t.Errorf("writes by path %s = %v; every write should take the %s path", p, n, path)
			}
		}
		switch path {
		case "stream":
			if m[`tusgate_s3_parts_total{how="streamed"}`] < 5 || m[`tusgate_s3_parts_total{how="tail"}`] < 2 {
				t.Errorf("parts: %v", m)
			}
		case "buffer":
			if m[`tusgate_s3_parts_total{how="buffered"}`] < 5 || m[`tusgate_s3_parts_total{how="streamed"}`] != 0 {
				t.Errorf("parts: %v", m)
			}
		}
	})
}

// uploadThroughFaultyS3 uploads data (SHA-256 sum) with one PATCH through
// tusgate with 5 MiB parts, to versitygw over HTTPS (or plain HTTP) behind a
// fault proxy that fault sets up; it checks the stored object and returns
// tusgate's metrics.
func uploadThroughFaultyS3(t *testing.T, https bool, data []byte, sum string, fault func(*testenv.FaultProxy)) map[string]float64 {
	t.Helper()
	s3 := testenv.StartS3(t, testenv.S3Options{TLS: https})
	s3.CreateBucket(t, testBucket)
	env := s3.Env()
	var proxy *testenv.FaultProxy
	if https {
		var ca string
		proxy, ca = testenv.NewTLSFaultProxy(t, s3.Endpoint)
		env = append(env, "AWS_CA_BUNDLE="+ca)
	} else {
		proxy = testenv.NewFaultProxy(t, s3.Endpoint)
	}
	fault(proxy)
	env = append(env, "AWS_ENDPOINT_URL_S3="+proxy.URL)
	g := startGate(t, env, "--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", t.TempDir())
	loc := create(t, g, int64(len(data)))
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	(&backend{s3: s3}).assertStored(t, loc, sum, int64(len(data)))
	return scrapeMetrics(t, g)
}

// A streamed part that S3 refuses is sent again from memory.
func TestStreamedPartResentWhenS3Fails(t *testing.T) {
	data, sum := payload(17*MiB, 32)
	var failed atomic.Int64
	m := uploadThroughFaultyS3(t, true, data, sum, func(p *testenv.FaultProxy) {
		p.FailMatching(func(r *http.Request) bool {
			// The first attempt at part 2 of every upload.
			return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "2" && failed.Add(1) == 1
		})
	})
	if failed.Load() < 2 || m[`tusgate_s3_parts_total{how="resent"}`] != 1 || m[`tusgate_s3_parts_total{how="streamed"}`] != 3 {
		t.Fatalf("part 2 requests %d; parts %v", failed.Load(), m)
	}
}

// S3 checks the CRC32 trailer of a streamed part: a part whose bytes are
// changed in transit is refused, and sent again from memory.
func TestStreamedPartChecksumVerifiedByS3(t *testing.T) {
	data, sum := payload(12*MiB, 33)
	var corrupted atomic.Int64
	var trailers sync.Map // the X-Amz-Trailer and payload hash of each part request
	m := uploadThroughFaultyS3(t, true, data, sum, func(p *testenv.FaultProxy) {
		p.CorruptMatching(func(r *http.Request) bool {
			if r.Method != http.MethodPut || r.URL.Query().Get("partNumber") == "" {
				return false
			}
			trailers.Store(r.Header.Get("X-Amz-Trailer")+" "+r.Header.Get("X-Amz-Content-Sha256"), true)
			// The first attempt at part 1.
			return r.URL.Query().Get("partNumber") == "1" && corrupted.Add(1) == 1
		})
	})
	if corrupted.Load() < 2 || m[`tusgate_s3_parts_total{how="resent"}`] != 1 || m[`tusgate_s3_parts_total{how="streamed"}`] != 2 {
		t.Fatalf("part 1 requests %d; parts %v", corrupted.Load(), m)
	}
	// Streamed and resent parts both carry a CRC32 trailer.
	const want = "x-amz-checksum-crc32 STREAMING-UNSIGNED-PAYLOAD-TRAILER"
	var seen []string
	trailers.Range(func(k, _ any) bool { seen = append(seen, k.(string)); return true })
	if len(seen) != 1 || seen[0] != want {
		t.Fatalf("part requests had trailer and payload hash %q, want only %q", seen, want)
	}
}

// Over plain HTTP, each part goes once it is complete, signed with its
// SHA-256 and with a CRC32 header: versitygw refuses a part changed in
// transit, and tusgate sends it again from memory. The next part goes to
// S3 while the one before still waits for its answer.
func TestBufferedPartsOverHTTP(t *testing.T) {
	data, sum := payload(12*MiB, 34)
	var corrupted atomic.Int64
	part2 := make(chan struct{})
	var part2Once sync.Once
	var mu sync.Mutex
	var heldUntilPart2 bool
	var bad []string // part requests without the part's sums
	m := uploadThroughFaultyS3(t, false, data, sum, func(p *testenv.FaultProxy) {
		p.CorruptMatching(func(r *http.Request) bool {
			return r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "1" && corrupted.Add(1) == 1
		})
		p.OnForward(func(r *http.Request) {
			n := r.URL.Query().Get("partNumber")
			if r.Method != http.MethodPut || n == "" {
				return
			}
			if h := r.Header.Get("X-Amz-Content-Sha256"); len(h) != 64 || r.Header.Get("X-Amz-Checksum-Crc32") == "" {
				mu.Lock()
				bad = append(bad, fmt.Sprintf("part %s: X-Amz-Content-Sha256 %q, X-Amz-Checksum-Crc32 %q", n, h, r.Header.Get("X-Amz-Checksum-Crc32")))
				mu.Unlock()
			}
			switch {
			case n == "2":
				part2Once.Do(func() { close(part2) })
			case n == "1" && corrupted.Load() == 1:
				// Hold the first attempt at part 1 until part 2 is on its
				// way (a guard of 20 s for a gateway that waits).
				select {
				case <-part2:
					mu.Lock()
					heldUntilPart2 = true
					mu.Unlock()
				case <-time.After(20 * time.Second):
				}
			}
		})
	})
	mu.Lock()
	defer mu.Unlock()
	if !heldUntilPart2 {
		t.Error("part 2 did not go to S3 while part 1 waited for its answer")
	}
	if len(bad) > 0 {
		t.Errorf("part requests without a SHA-256 payload hash and a CRC32: %q", bad)
	}
	if corrupted.Load() < 2 || m[`tusgate_s3_parts_total{how="resent"}`] != 1 || m[`tusgate_s3_parts_total{how="buffered"}`] != 2 {
		t.Fatalf("part 1 requests %d; parts %v", corrupted.Load(), m)
	}
}

// cutPatch sends a PATCH declaring all of rest but only its first send
// bytes, then half-closes the connection, as a client whose upload broke
// off; it returns the status of the answer, which tusgate writes after it
// stored what arrived.
func cutPatch(t *testing.T, loc string, offset int64, rest []byte, send int) int {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, offset, len(rest))
	if _, err := conn.Write(rest[:send]); err != nil {
		t.Fatal(err)
	}
	if err := conn.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("reading the answer to the cut PATCH: %v", err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// scrapeMetrics returns the samples of /metrics by series name with labels.
func scrapeMetrics(t *testing.T, g *gate) map[string]float64 {
	t.Helper()
	r := do(t, "GET", g.URL+"/metrics", nil, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("/metrics: %d", r.Status)
	}
	m := map[string]float64{}
	for line := range strings.Lines(r.Body) {
		if strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(strings.TrimSpace(line[i+1:]), 64); err == nil {
			m[line[:i]] = v
		}
	}
	return m
}
