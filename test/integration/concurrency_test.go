package integration

import (
	"bytes"
	"fmt"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// concurrentUploads runs n uploads of size bytes (plus a few KiB each, so
// that no two are alike) at once through tusgate with its default settings
// on versitygw over HTTPS, and checks every stored object by SHA-256. It
// returns tusgate's metrics afterwards.
func concurrentUploads(t *testing.T, g *gate, b *backend, n int, size int64) map[string]float64 {
	t.Helper()
	type result struct {
		loc, sum string
		size     int64
		err      error
	}
	results := make([]result, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			data, sum := payload(size+int64(i)*4096, uint64(1000+i))
			r := result{sum: sum, size: int64(len(data))}
			defer func() { results[i] = r }()
			c, err := tryDo(t.Context(), "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", strconv.Itoa(len(data))), nil, -1)
			if err != nil || c.Status != http.StatusCreated {
				r.err = fmt.Errorf("create: %d %v", c.Status, err)
				return
			}
			r.loc = c.Header.Get("Location")
			p, err := tryDo(t.Context(), "PATCH", r.loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data), int64(len(data)))
			if err != nil || p.Status != http.StatusNoContent {
				r.err = fmt.Errorf("PATCH: %d %v %s", p.Status, err, p.Body)
			}
		}()
	}
	wg.Wait()
	for i, r := range results {
		if r.err != nil {
			t.Fatalf("upload %d: %v", i, r.err)
		}
		b.assertStored(t, r.loc, r.sum, r.size)
	}
	return scrapeMetrics(t, g)
}

// 256 uploads at once, with the default buffer budget: every object is
// stored byte for byte, the PATCHes beyond the budget stream through
// windows, and none touches a temp file.
func TestManyConcurrentUploads(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	m := concurrentUploads(t, g, b, 256, 2*MiB)
	if n := m[`tusgate_s3_writes_total{path="tempfile"}`]; n != 0 {
		t.Errorf("%v PATCHes took a temp file", n)
	}
	window, stream := m[`tusgate_s3_writes_total{path="window"}`], m[`tusgate_s3_writes_total{path="stream"}`]
	if window == 0 || stream == 0 || window+stream != 256 {
		t.Errorf("write paths: stream %v, window %v; want both, 256 in all", stream, window)
	}
	if n := m["tusgate_s3_windows"] + m["tusgate_s3_buffer_bytes"]; n != 0 {
		t.Errorf("windows or buffer bytes still held after the uploads: %v", n)
	}
	if entries, err := os.ReadDir(b.dataDir + "/s3-tmp"); err == nil {
		for _, e := range entries {
			if !strings.HasPrefix(e.Name(), ".") {
				t.Errorf("temp dir holds %s", e.Name())
			}
		}
	}
}

// BenchmarkConcurrentUploadsMemory asserts the memory bound of issue 15:
// 256 uploads of 8 MiB at once through tusgate with its defaults, on
// versitygw over HTTPS, must peak under 256 MiB of RSS (VmHWM of the
// tusgate process). It reports the peak, and the RSS per upload in flight
// beyond tusgate's idle RSS.
//
//	go test -run '^$' -bench ConcurrentUploadsMemory -benchtime 1x ./test/integration/
func BenchmarkConcurrentUploadsMemory(b *testing.B) {
	const n, limitMiB = 256, 256
	s3 := testenv.StartS3(b, testenv.S3Options{TLS: true})
	s3.CreateBucket(b, testBucket)
	dir := b.TempDir()
	be := &backend{name: "s3", s3: s3, env: s3.Env(), dataDir: dir, args: []string{"--s3-bucket", testBucket, "--data-dir", dir}}
	g := testenv.StartGate(b, be.env, be.args...)
	idle := vmKiB(b, g.PID(), "VmRSS")
	for b.Loop() {
		benchUploads(b, g, n, 8*MiB)
	}
	peak := vmKiB(b, g.PID(), "VmHWM")
	b.ReportMetric(float64(peak)/1024, "peak-RSS-MiB")
	b.ReportMetric(float64(peak-idle)/float64(n), "KiB/upload")
	if peak/1024 > limitMiB {
		b.Fatalf("peak RSS %d MiB with %d uploads in flight; the bound is %d MiB", peak/1024, n, limitMiB)
	}
}

// benchUploads uploads n payloads of size bytes at once and fails on any
// error (the objects are checked by TestManyConcurrentUploads).
func benchUploads(b *testing.B, g *gate, n int, size int64) {
	data, _ := payload(size, 7)
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c, err := tryDo(b.Context(), "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", strconv.FormatInt(size, 10)), nil, -1)
			if err != nil || c.Status != http.StatusCreated {
				errs[i] = fmt.Errorf("create: %d %v", c.Status, err)
				return
			}
			p, err := tryDo(b.Context(), "PATCH", c.Header.Get("Location"), with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data), size)
			if err != nil || p.Status != http.StatusNoContent {
				errs[i] = fmt.Errorf("PATCH: %d %v", p.Status, err)
			}
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			b.Fatalf("upload %d: %v", i, err)
		}
	}
}

// vmKiB reads a Vm* line (VmRSS, VmHWM) of /proc/PID/status, in KiB.
func vmKiB(tb testing.TB, pid int, name string) int64 {
	tb.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for line := range strings.Lines(string(status)) {
		if v, ok := strings.CutPrefix(line, name+":"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			if err != nil {
				tb.Fatal(err)
			}
			return kb
		}
	}
	tb.Fatalf("no %s in /proc/%d/status", name, pid)
	return 0
}
