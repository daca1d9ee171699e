// Package e2e drives the example pages (Dropzone and Uppy over tus) in
// headless Chromium against tusgate and versitygw, and checks what arrived in
// S3 by SHA-256.
//
// The browser side is test/e2e/driver.mjs (playwright-core); it prints one
// JSON line per page event, which these tests read to act (kill the server,
// …) and to assert.
package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"hash/crc32"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

const (
	MiB    = 1 << 20
	bucket = "uploads"
)

// event is one line the driver prints.
type event struct {
	Event         string `json:"event"`
	File          string `json:"file"`
	URL           string `json:"url"`
	BytesUploaded int64  `json:"bytesUploaded"`
	BytesTotal    int64  `json:"bytesTotal"`
	Status        int    `json:"status"`
	Message       string `json:"message"`
	Reason        string `json:"reason"`
	OK            *bool  `json:"ok"`
	PartNumber    int    `json:"partNumber"`
	Generation    int    `json:"generation"`
	Checksum      string `json:"checksum"`
}

// env is versitygw plus a tusgate in --dev mode storing into it.
type env struct {
	s3   *testenv.S3Server
	gate *testenv.Gate
}

func start(t *testing.T, extra ...string) *env {
	t.Helper()
	s3 := testenv.StartS3(t, testenv.S3Options{})
	s3.CreateBucket(t, bucket)
	args := append([]string{"--dev", "--s3-bucket", bucket, "--s3-part-size", "16MiB", "--data-dir", t.TempDir()}, extra...)
	g := testenv.StartGate(t, s3.Env(), args...)
	pagesBuilt(t, g)
	return &env{s3: s3, gate: g}
}

// pagesBuilt fails the test if the binary was built without the pages.
func pagesBuilt(t *testing.T, g *testenv.Gate) {
	t.Helper()
	for _, p := range []string{"/dropzone/", "/uppy/"} {
		resp, err := http.Get(g.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %d; build the pages first (bash scripts/build-examples.sh, done by scripts/test.sh)", p, resp.StatusCode)
		}
	}
}

// file is a generated upload source.
type file struct {
	Path string
	Name string
	Size int64
	SHA  string
}

// makeFile writes size deterministic pseudo-random bytes.
func makeFile(t *testing.T, dir, name string, size int64, seed byte) file {
	t.Helper()
	p := filepath.Join(dir, name)
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := sha256.New()
	r := io.LimitReader(rand.NewChaCha8([32]byte{seed, 9, 9}), size)
	if _, err := io.Copy(io.MultiWriter(f, h), r); err != nil {
		t.Fatal(err)
	}
	return file{Path: p, Name: name, Size: size, SHA: hex.EncodeToString(h.Sum(nil))}
}

// driver is a running driver.mjs.
type driver struct {
	cmd    *exec.Cmd
	events chan event
	stdin  io.WriteCloser
	all    []event
	stderr *strings.Builder
}

// runDriver starts the browser driver; events arrive on d.events until the
// process ends.
func runDriver(t *testing.T, g *testenv.Gate, page string, files []file, args ...string) *driver {
	t.Helper()
	root := testenv.RepoRoot(t)
	script := filepath.Join(root, "test", "e2e", "driver.mjs")
	if _, err := os.Stat(filepath.Join(root, "test", "e2e", "node_modules", "playwright-core")); err != nil {
		t.Fatalf("playwright-core is not installed in test/e2e; run bash test/tools/deps.sh")
	}
	paths := make([]string, len(files))
	for i, f := range files {
		paths[i] = f.Path
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	t.Cleanup(cancel)
	all := append([]string{script, "--url", g.URL, "--page", page, "--files", strings.Join(paths, ",")}, args...)
	cmd := exec.CommandContext(ctx, "node", all...)
	cmd.Dir = filepath.Join(root, "test", "e2e")
	d := &driver{cmd: cmd, events: make(chan event, 1024), stderr: &strings.Builder{}}
	cmd.Stderr = d.stderr
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if d.stdin, err = cmd.StdinPipe(); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var e event
			if json.Unmarshal(sc.Bytes(), &e) == nil && e.Event != "" {
				d.events <- e
			}
		}
		_ = cmd.Wait()
		close(d.events)
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		if t.Failed() {
			t.Logf("driver stderr:\n%s", d.stderr.String())
		}
	})
	return d
}

// until reads events until pred returns true (and returns that event) or
// the driver ends (fails the test).
func (d *driver) until(t *testing.T, what string, pred func(event) bool) event {
	t.Helper()
	for e := range d.events {
		d.all = append(d.all, e)
		if e.Event == "check" && e.OK != nil && !*e.OK {
			t.Errorf("driver check failed: %s", e.Reason)
		}
		if pred(e) {
			return e
		}
		if e.Event == "done" {
			t.Fatalf("driver finished (ok=%v, %s) before %s", e.OK != nil && *e.OK, e.Reason, what)
		}
	}
	t.Fatalf("driver exited before %s", what)
	return event{}
}

// finish waits for the driver's final "done" line and requires ok.
func (d *driver) finish(t *testing.T) {
	t.Helper()
	e := d.until(t, "the end", func(e event) bool { return e.Event == "done" })
	if e.OK == nil || !*e.OK {
		t.Fatalf("driver: not ok: %s", e.Reason)
	}
}

// of returns the events of one type for one file.
func (d *driver) of(kind, name string) []event {
	var out []event
	for _, e := range d.all {
		if e.Event == kind && e.File == name {
			out = append(out, e)
		}
	}
	return out
}

func progressAtLeast(name string, frac float64) func(event) bool {
	return func(e event) bool {
		return e.Event == "progress" && e.File == name && e.BytesTotal > 0 && float64(e.BytesUploaded) >= frac*float64(e.BytesTotal)
	}
}

// objectKey turns an upload URL into its S3 key: the ID after /files/, up to
// the "+" of the multipart upload ID.
func objectKey(url string) string {
	_, id, _ := strings.Cut(url, "/files/")
	if i := strings.LastIndex(id, "+"); i >= 0 {
		id = id[:i]
	}
	return id
}

// assertUploaded checks that each file arrived once, intact, as the upload
// the page created for it.
func (e *env) assertUploaded(t *testing.T, d *driver, files ...file) {
	t.Helper()
	for _, f := range files {
		succ := d.of("success", f.Name)
		if len(succ) != 1 {
			t.Fatalf("%s: %d success events", f.Name, len(succ))
		}
		url := succ[0].URL
		if created := d.of("created", f.Name); len(created) != 1 || created[0].URL != url {
			t.Fatalf("%s: created %v, success URL %q: the page started the upload over", f.Name, created, url)
		}
		sum, size := e.s3.ObjectSHA256(t, bucket, objectKey(url))
		if sum != f.SHA || size != f.Size {
			t.Fatalf("%s: S3 object sha256 %s (%d bytes), want %s (%d)", f.Name, sum, size, f.SHA, f.Size)
		}
		assertProgress(t, d, f)
	}
}

// assertProgress checks that progress rose without going back (except where
// the page resumed or retried) and reached the whole file.
func assertProgress(t *testing.T, d *driver, f file) {
	t.Helper()
	var last int64
	seen := 0
	for _, e := range d.all {
		if e.File != f.Name {
			continue
		}
		switch e.Event {
		case "resumed", "retry":
			last = 0
		case "progress":
			seen++
			if e.BytesUploaded < last {
				t.Fatalf("%s: progress went back from %d to %d", f.Name, last, e.BytesUploaded)
			}
			last = e.BytesUploaded
		}
	}
	if seen < 2 || last != f.Size {
		t.Fatalf("%s: %d progress events, last at %d of %d", f.Name, seen, last, f.Size)
	}
}

// metric reads a counter from /metrics.
func metric(t *testing.T, g *testenv.Gate, name string) int64 {
	t.Helper()
	resp, err := http.Get(g.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("metric %s not found", name)
	}
	v, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	return int64(v)
}

func TestPagesUploadThreeFilesAtOnce(t *testing.T) {
	dir := t.TempDir()
	files := []file{
		makeFile(t, dir, "big.bin", 300*MiB, 1),
		makeFile(t, dir, "small.bin", 1*MiB, 2),
		makeFile(t, dir, "odd.bin", 3*MiB+7, 3),
	}
	for _, page := range []string{"dropzone", "uppy"} {
		t.Run(page, func(t *testing.T) {
			e := start(t)
			args := []string{"--scenario", "basic"}
			if page == "dropzone" {
				args = append(args, "--checksums")
			}
			d := runDriver(t, e.gate, page, files, args...)
			d.finish(t)
			e.assertUploaded(t, d, files...)
			if page == "dropzone" {
				// The page shows each finished object's checksum: the
				// CRC32 S3 validated (docs/integrity.md).
				for _, f := range files {
					ev := d.of("checksum", f.Name)
					if want := "crc32 " + fileCRC32(t, f.Path); len(ev) != 1 || ev[0].Checksum != want {
						t.Errorf("%s: checksum events %+v, want one with %q", f.Name, ev, want)
					}
				}
			}
		})
	}
}

// fileCRC32 is the CRC32 of the file at path, in base64 as S3 writes it.
func fileCRC32(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	h := crc32.NewIEEE()
	if _, err := io.Copy(h, f); err != nil {
		t.Fatal(err)
	}
	return base64.StdEncoding.EncodeToString(h.Sum(nil))
}

func TestPagesCancelAbortsMultipartUpload(t *testing.T) {
	dir := t.TempDir()
	big := makeFile(t, dir, "cancel-me.bin", 300*MiB, 4)
	for _, page := range []string{"dropzone", "uppy"} {
		t.Run(page, func(t *testing.T) { cancelOn(t, page, big) })
	}
}

func cancelOn(t *testing.T, page string, big file) {
	e := start(t)
	// Throttled so that the cancel surely lands mid-upload.
	d := runDriver(t, e.gate, page, []file{big}, "--scenario", "cancel", "--throttle", strconv.Itoa(40*MiB))
	d.finish(t)
	created := d.of("created", big.Name)
	if len(created) != 1 || len(d.of("cancelled", big.Name)) != 1 || len(d.of("success", big.Name)) != 0 {
		t.Fatalf("events: %d created, %d cancelled, %d success", len(created), len(d.of("cancelled", big.Name)), len(d.of("success", big.Name)))
	}
	key := objectKey(created[0].URL)
	if keys := e.s3.Keys(t, bucket, key); len(keys) != 0 {
		t.Fatalf("objects left after cancel: %v", keys)
	}
	if mps := e.s3.MultipartUploads(t, bucket); len(mps) != 0 {
		t.Fatalf("multipart uploads left after cancel: %v", mps)
	}
}

func TestPagesSurviveServerRestart(t *testing.T) {
	dir := t.TempDir()
	big := makeFile(t, dir, "restart.bin", 300*MiB, 5)
	for _, page := range []string{"dropzone", "uppy"} {
		t.Run(page, func(t *testing.T) {
			e := start(t)
			d := runDriver(t, e.gate, page, []file{big}, "--scenario", "wait", "--throttle", strconv.Itoa(60*MiB))
			d.until(t, "30 % progress", progressAtLeast(big.Name, 0.3))
			e.gate.Kill()
			e.gate.Start()
			d.finish(t)
			e.assertUploaded(t, d, big)
		})
	}
}

func TestPagesResumeAfterReload(t *testing.T) {
	dir := t.TempDir()
	big := makeFile(t, dir, "reload.bin", 300*MiB, 6)
	for _, page := range []string{"dropzone", "uppy"} {
		t.Run(page, func(t *testing.T) { reloadOn(t, page, big) })
	}
}

func reloadOn(t *testing.T, page string, big file) {
	e := start(t)
	d := runDriver(t, e.gate, page, []file{big}, "--scenario", "reload", "--throttle", strconv.Itoa(60*MiB))
	d.finish(t)
	if len(d.of("resumed", big.Name)) != 1 {
		t.Fatalf("the reloaded page did not resume the upload: %d resumed events", len(d.of("resumed", big.Name)))
	}
	e.assertUploaded(t, d, big)
	// Bytes sent twice: at most what was in flight when the page reloaded
	// and not yet stored as a part.
	received := metric(t, e.gate, "tusd_bytes_received")
	if extra := received - big.Size; extra < 0 || extra > 16*MiB {
		t.Fatalf("server received %d bytes for a %d-byte file: %d resent, want at most one part (16 MiB)", received, big.Size, extra)
	}
}

// Tokens expire during the upload: several requests, and the resume HEAD
// after a server restart, run with tokens the page refreshed. The upload
// completes as the same upload.
func TestPagesRefreshTokensDuringLongUpload(t *testing.T) {
	dir := t.TempDir()
	f := makeFile(t, dir, "slow.bin", 64*MiB, 7)
	for _, page := range []string{"dropzone", "uppy"} {
		t.Run(page, func(t *testing.T) { longUploadOn(t, page, f) })
	}
}

func longUploadOn(t *testing.T, page string, f file) {
	e := start(t, "--dev-token-ttl", "10s", "--oidc-leeway", "1s")
	began := time.Now()
	d := runDriver(t, e.gate, page, []file{f}, "--scenario", "wait", "--chunk", strconv.Itoa(4*MiB), "--throttle", strconv.Itoa(2*MiB))
	// Restart once the first token has expired.
	d.until(t, "upload under way after the first token expired", func(ev event) bool {
		return ev.Event == "progress" && ev.File == f.Name && time.Since(began) > 14*time.Second
	})
	e.gate.Kill()
	e.gate.Start()
	d.finish(t)
	if took := time.Since(began); took < 25*time.Second {
		t.Fatalf("upload took %v: too fast to outlive two 10s tokens, the test proves nothing", took)
	}
	e.assertUploaded(t, d, f)
}
