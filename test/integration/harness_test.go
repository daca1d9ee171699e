// Package integration runs the tusgate binary against a real S3 server
// (versitygw) and the disk store, talking tus over HTTP like real clients.
package integration

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// binary builds cmd/tusgate once per test process.
func binary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tusgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tusgate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/tusgate")
		cmd.Dir = testenv.RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// gate is one running tusgate process.
type gate struct {
	t       *testing.T
	URL     string // http://127.0.0.1:PORT
	args    []string
	env     []string
	logPath string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// startGate starts tusgate with args (listen address and auth flag are
// added) and waits until /healthz answers.
func startGate(t *testing.T, env []string, args ...string) *gate {
	t.Helper()
	port := testenv.FreePort(t)
	scheme := "http"
	if slices.Contains(args, "--tls-cert") {
		scheme = "https"
	}
	g := &gate{
		t:       t,
		URL:     fmt.Sprintf("%s://127.0.0.1:%d", scheme, port),
		args:    append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "debug"}, args...),
		env:     env,
		logPath: filepath.Join(t.TempDir(), "tusgate.log"),
	}
	if !slices.Contains(args, "--oidc-issuer") && !slices.Contains(args, "--dev") {
		g.args = append(g.args, "--insecure-no-auth")
	}
	g.start()
	t.Cleanup(func() {
		g.kill()
		if t.Failed() {
			t.Logf("tusgate log (%s):\n%s", g.logPath, tail(g.logPath, 60))
		}
	})
	return g
}

func (g *gate) start() {
	g.t.Helper()
	logf, err := os.OpenFile(g.logPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(binary(g.t), g.args...)
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd = cmd
	g.done = make(chan struct{})
	go func() {
		g.exitErr = cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	g.waitHealthy()
}

func (g *gate) waitHealthy() {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			g.t.Fatalf("tusgate exited during start-up (%v):\n%s", g.exitErr, tail(g.logPath, 30))
		default:
		}
		resp, err := healthClient.Get(g.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	g.t.Fatalf("tusgate did not answer /healthz within 15s:\n%s", tail(g.logPath, 30))
}

// healthClient checks liveness only, so it does not verify test certificates.
var healthClient = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// kill stops the process with SIGKILL (no chance to save anything).
func (g *gate) kill() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
	g.cmd = nil
}

// terminate sends SIGTERM and waits for the process to exit.
func (g *gate) terminate(timeout time.Duration) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatal(err)
	}
	select {
	case <-g.done:
	case <-time.After(timeout):
		g.t.Fatalf("tusgate did not exit within %v of SIGTERM", timeout)
	}
	g.cmd = nil
}

// restart starts the process again on the same address with the same settings.
func (g *gate) restart() {
	g.t.Helper()
	if g.cmd != nil {
		g.kill()
	}
	g.start()
}

func (g *gate) log() string { return readFile(g.logPath) }

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

func tail(p string, n int) string {
	lines := strings.Split(strings.TrimRight(readFile(p), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// runGate runs tusgate to completion (for start-up failures) and returns its
// exit code and output.
func runGate(t *testing.T, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("tusgate did not exit within 30s:\n%s", out.String())
		return 0, ""
	}
}

// payload returns n deterministic pseudo-random bytes and their SHA-256.
func payload(n int64, seed uint64) ([]byte, string) {
	b := make([]byte, n)
	r := rand.NewChaCha8([32]byte{byte(seed), byte(seed >> 8), 1, 2, 3})
	_, _ = r.Read(b)
	return b, sha256Hex(b)
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// response is the part of an HTTP answer the tests look at.
type response struct {
	Status int
	Header http.Header
	Body   string
}

// do sends one request and returns its answer; network errors fail the test.
func do(t *testing.T, method, url string, header map[string]string, body io.Reader) response {
	t.Helper()
	r, err := tryDo(context.Background(), method, url, header, body, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	return r
}

func tryDo(ctx context.Context, method, url string, header map[string]string, body io.Reader, length int64) (response, error) {
	req, err := http.NewRequestWithContext(ctx, method, url, body)
	if err != nil {
		return response{}, err
	}
	if length >= 0 {
		req.ContentLength = length
	}
	for k, v := range header {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}, nil
}

var tusHeaders = map[string]string{"Tus-Resumable": "1.0.0"}

func with(h map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range h {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// create makes a new upload of the given size and returns its URL.
func create(t *testing.T, g *gate, size int64, extra ...string) string {
	t.Helper()
	r := do(t, "POST", g.URL+"/files/", with(tusHeaders, append([]string{"Upload-Length", strconv.FormatInt(size, 10)}, extra...)...), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("create: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if !strings.HasPrefix(loc, g.URL+"/files/") {
		t.Fatalf("create: Location %q not under %s/files/", loc, g.URL)
	}
	return loc
}

// patch sends data at offset and returns the answer.
func patch(t *testing.T, url string, offset int64, data []byte) response {
	t.Helper()
	return do(t, "PATCH", url, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)), bytes.NewReader(data))
}

// headOffset returns the upload's offset from a HEAD request.
func headOffset(t *testing.T, url string) int64 {
	t.Helper()
	r := do(t, "HEAD", url, tusHeaders, nil)
	if r.Status != http.StatusOK {
		t.Fatalf("HEAD %s: %d", url, r.Status)
	}
	off, err := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if err != nil {
		t.Fatalf("HEAD %s: Upload-Offset %q", url, r.Header.Get("Upload-Offset"))
	}
	return off
}

// uploadResumably sends data to url the way tus-js-client does: PATCH from
// the server's offset, and after any failure (network error, 5xx, 423, 409)
// HEAD for the offset and go on, up to maxAttempts requests.
func uploadResumably(t *testing.T, url string, data []byte, chunk int64, maxAttempts int) (attempts int) {
	t.Helper()
	ctx := context.Background()
	offset := int64(-1)
	for attempts = 1; attempts <= maxAttempts; attempts++ {
		if offset < 0 {
			r, err := tryDo(ctx, "HEAD", url, tusHeaders, nil, -1)
			switch {
			case err != nil || r.Status == http.StatusLocked || r.Status >= 500:
				backoff(attempts)
				continue
			case r.Status != http.StatusOK:
				t.Fatalf("resume HEAD answered %d: tus-js-client would start over", r.Status)
			}
			offset, _ = strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
		}
		if offset == int64(len(data)) {
			return attempts
		}
		end := min(offset+chunk, int64(len(data)))
		r, err := tryDo(ctx, "PATCH", url, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)), bytes.NewReader(data[offset:end]), end-offset)
		switch {
		case err != nil || r.Status >= 500 || r.Status == http.StatusLocked || r.Status == http.StatusConflict:
			offset = -1
			backoff(attempts)
		case r.Status == http.StatusNoContent:
			offset, _ = strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
			if offset == int64(len(data)) {
				return attempts
			}
		default:
			t.Fatalf("PATCH answered %d %q: not retryable", r.Status, r.Body)
		}
	}
	t.Fatalf("upload not finished after %d requests", maxAttempts)
	return attempts
}

// backoff is a client's retry delay (tus-js-client waits too); it is not
// used to wait for the server to reach some state.
func backoff(attempt int) {
	time.Sleep(time.Duration(min(attempt, 10)) * 20 * time.Millisecond)
}

// uploadID is the last part of an upload URL after the base path.
func uploadID(url string) string {
	_, id, _ := strings.Cut(url, "/files/")
	return id
}

// countingReader signals once n bytes were read through it, then blocks
// further reads until release is closed (if block is set).
type countingReader struct {
	r       io.Reader
	n       int64
	read    int64
	reached chan struct{}
	once    sync.Once
	block   bool
	release chan struct{}
}

func newCountingReader(r io.Reader, n int64, block bool) *countingReader {
	return &countingReader{r: r, n: n, reached: make(chan struct{}), block: block, release: make(chan struct{})}
}

func (c *countingReader) Read(p []byte) (int, error) {
	if c.read >= c.n {
		c.once.Do(func() { close(c.reached) })
		if c.block {
			<-c.release
			return 0, io.ErrUnexpectedEOF
		}
	}
	if c.block && int64(len(p)) > c.n-c.read && c.read < c.n {
		p = p[:c.n-c.read]
	}
	k, err := c.r.Read(p)
	c.read += int64(k)
	return k, err
}
