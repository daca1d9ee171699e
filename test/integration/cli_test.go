package integration

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/hooks/oidc"
)

// The client is SIGKILLed mid-upload; the same command run again continues
// the same upload from the server's offset.
func TestCLIResumeAfterClientKill(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	home := newCLIHome(t)
	data, sum := payload(48*MiB, 60)
	path := writeData(t, "big.bin", data)
	const chunk = 8 * MiB
	args := []string{"upload", "--endpoint", g.URL + "/files/", "--chunk-size", "8MiB", "--limit-rate", "16MiB", path}

	first := startCLI(t, home.env(), nil, args...)
	first.waitOffset(t, 20*MiB, time.Minute)
	first.kill()
	if recs := home.records(t); len(recs) != 1 {
		t.Fatalf("resume records after the kill: %v", recs)
	}

	second := startCLI(t, home.env(), nil, args...)
	if code := second.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("second run: exit %d\n%s", code, second.output())
	}
	urls := second.urls()
	if len(urls) != 1 {
		t.Fatalf("second run printed %q", urls)
	}
	var resumedAt int64 = -1
	for _, e := range second.events() {
		if e.Event == "start" {
			resumedAt = e.Offset
		}
	}
	m := scrapeMetrics(t, g)
	created, received := m["tusd_uploads_created"], m["tusd_bytes_received"]
	twice := int64(received) - int64(len(data))
	t.Logf("killed past 20 MiB; resumed at %d bytes; uploads created %v; bytes received %v, of them twice: %d", resumedAt, created, received, twice)
	// Two chunks were acknowledged before the third, in flight at the
	// kill, passed 20 MiB; of the third, the server kept what reached it
	// (the client's last buffer may not have).
	if resumedAt < 2*chunk {
		t.Fatalf("the second run started at %d, not where the first left off", resumedAt)
	}
	if created != 1 || twice < 0 || twice > chunk {
		t.Fatalf("uploads created %v (want 1), bytes received twice %d (want at most one chunk, %d)", created, twice, chunk)
	}
	b.assertStored(t, urls[0], sum, int64(len(data)))
	if recs := home.records(t); len(recs) != 0 {
		t.Fatalf("records left after success: %v", recs)
	}
	// The object's full-object CRC32, which S3 validated over both runs'
	// parts, printed after the URL and in the done event.
	if got := second.checksums(); len(got) != 1 || got[0]["crc32"] != crc32Of(data) {
		t.Fatalf("printed checksums %v, want crc32=%s", got, crc32Of(data))
	}
	var done map[string]string
	for _, e := range second.events() {
		if e.Event == "done" {
			done = e.Checksums
		}
	}
	if done["crc32"] != crc32Of(data) {
		t.Fatalf("done event's checksums %v, want crc32 %s", done, crc32Of(data))
	}
}

// tusgate is killed and restarted mid-upload; the running client waits it
// out and finishes the same upload.
func TestCLIServerRestartMidUpload(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	home := newCLIHome(t)
	data, sum := payload(40*MiB, 61)
	path := writeData(t, "restart.bin", data)
	run := startCLI(t, home.env(), nil, "upload", "--endpoint", g.URL+"/files/", "--chunk-size", "8MiB", "--limit-rate", "16MiB", path)
	run.waitOffset(t, 16*MiB, time.Minute)
	g.Restart()
	if code := run.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, run.output())
	}
	retries := 0
	for _, e := range run.events() {
		if e.Event == "retry" {
			retries++
		}
	}
	urls := run.urls()
	if retries == 0 || len(urls) != 1 {
		t.Fatalf("%d retries, URLs %q:\n%s", retries, urls, run.output())
	}
	if created := scrapeMetrics(t, g)["tusd_uploads_created"]; created != 0 {
		t.Fatalf("the restarted server saw %v uploads created; the client should have resumed", created)
	}
	b.assertStored(t, urls[0], sum, int64(len(data)))
	t.Logf("finished after %d retries", retries)
}

// roundRobin is a load balancer in front of gates: each request goes to
// the next instance; an instance that refuses a connection is dropped, as
// a balancer's health check would.
func roundRobin(t *testing.T, gates []*gate) (string, *[3]atomic.Int64) {
	t.Helper()
	var (
		mu   sync.Mutex
		next int
		dead = map[int]bool{}
		hits [3]atomic.Int64
	)
	pick := func() int {
		mu.Lock()
		defer mu.Unlock()
		for range gates {
			i := next % len(gates)
			next++
			if !dead[i] {
				return i
			}
		}
		return 0
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		i := pick()
		hits[i].Add(1)
		target, _ := url.Parse(gates[i].URL)
		rp := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(target)
				pr.Out.Host = pr.In.Host // upload URLs name the balancer
			},
			ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
				mu.Lock()
				dead[i] = true
				mu.Unlock()
				w.WriteHeader(http.StatusBadGateway)
			},
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv.URL, &hits
}

// Three instances behind a round-robin balancer, with Redis for the upload
// locks: two files at once, each in two concatenated streams, while one
// instance is killed.
func TestCLIRoundRobinCluster(t *testing.T) {
	c := startCluster(t, 3, shortLease...)
	lb, hits := roundRobin(t, c.gates)
	home := newCLIHome(t)
	a, sumA := payload(24*MiB, 62)
	bb, sumB := payload(20*MiB+5, 63)
	pa, pb := writeData(t, "a.bin", a), writeData(t, "b.bin", bb)
	run := startCLI(t, home.env(), nil, "upload", "--endpoint", lb+"/files/", "--streams", "2", "--parallel", "2",
		"--chunk-size", "4MiB", "--limit-rate", "16MiB", pa, pb)
	run.waitOffset(t, 8*MiB, time.Minute)
	c.gates[1].Kill()
	if code := run.wait(t, 3*time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, run.output())
	}
	urls := run.urls()
	if len(urls) != 2 || !strings.HasPrefix(urls[0], lb+"/files/") || !strings.HasPrefix(urls[1], lb+"/files/") {
		t.Fatalf("URLs %q (want two, in argument order, under %s)", urls, lb)
	}
	c.b.assertStored(t, urls[0], sumA, int64(len(a)))
	c.b.assertStored(t, urls[1], sumB, int64(len(bb)))
	t.Logf("requests per instance: %d, %d (killed), %d", hits[0].Load(), hits[1].Load(), hits[2].Load())
	if hits[0].Load() < 5 || hits[2].Load() < 5 {
		t.Fatal("the balancer did not spread the requests")
	}
}

// Standard input goes up with a deferred length, declared with the last
// chunk.
func TestCLIStdin(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	home := newCLIHome(t)
	data, sum := payload(12*MiB+3, 64)
	run := startCLI(t, home.env(), bytes.NewReader(data), "upload", "--endpoint", g.URL+"/files/", "--chunk-size", "5MiB", "--name", "dump.sql", "-")
	if code := run.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, run.output())
	}
	urls := run.urls()
	if len(urls) != 1 {
		t.Fatalf("URLs %q", urls)
	}
	b.assertStored(t, urls[0], sum, int64(len(data)))
	h := do(t, "HEAD", urls[0], tusHeaders, nil)
	if h.Header.Get("Upload-Length") != strconv.Itoa(len(data)) || !strings.Contains(h.Header.Get("Upload-Metadata"), "filename "+base64.StdEncoding.EncodeToString([]byte("dump.sql"))) {
		t.Fatalf("HEAD: length %q, metadata %q", h.Header.Get("Upload-Length"), h.Header.Get("Upload-Metadata"))
	}
	if ev := run.events(); len(ev) == 0 || ev[0].Event != "start" || ev[0].Size != nil {
		t.Fatalf("the first event should be a start of unknown size: %+v", ev)
	}
}

// A file changed between runs is sent anew, with a message, and the
// earlier run's upload is removed.
func TestCLIChangedFileStartsAnew(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	home := newCLIHome(t)
	old, _ := payload(24*MiB, 65)
	path := writeData(t, "changing.bin", old)
	args := []string{"upload", "--endpoint", g.URL + "/files/", "--chunk-size", "4MiB", "--limit-rate", "8MiB", path}
	first := startCLI(t, home.env(), nil, args...)
	first.waitOffset(t, 8*MiB, time.Minute)
	first.kill()
	var oldURL string
	for _, e := range first.events() {
		if e.Event == "start" {
			oldURL = e.URL
		}
	}

	data, sum := payload(24*MiB, 66)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	second := startCLI(t, home.env(), nil, append([]string{args[0], "--limit-rate", "0"}, args[1:]...)...)
	if code := second.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("exit %d\n%s", code, second.output())
	}
	var notice string
	for _, e := range second.events() {
		if e.Event == "notice" {
			notice = e.Message
		}
	}
	if !strings.Contains(notice, "the file changed since the last run") {
		t.Fatalf("no message about the changed file:\n%s", second.output())
	}
	urls := second.urls()
	if len(urls) != 1 || urls[0] == oldURL {
		t.Fatalf("URLs %q (old upload %s)", urls, oldURL)
	}
	b.assertStored(t, urls[0], sum, int64(len(data)))
	if created := scrapeMetrics(t, g)["tusd_uploads_created"]; created != 2 {
		t.Fatalf("uploads created %v, want 2", created)
	}
	if h := do(t, "HEAD", oldURL, tusHeaders, nil); h.Status != http.StatusNotFound {
		t.Fatalf("HEAD of the old upload: %d, want 404 (removed)", h.Status)
	}
	t.Logf("message: %s", notice)
}

// tusgate login against --dev with the device flow end to end; then an
// upload with the stored login that outlives the 10-second access token.
func TestCLILoginDeviceFlow(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t, "--dev", "--dev-token-ttl", "10s", "--oidc-leeway", "0s")
	home := newCLIHome(t)
	issuer := g.URL + "/dev/oidc"

	login := startCLI(t, home.env(), nil, "login", "--issuer", issuer, "--client-id", "tusgate-cli")
	line := login.waitFor(t, 30*time.Second, "the user code", func(l string) bool { return strings.Contains(l, "code: ") })
	userCode := strings.TrimSpace(line[strings.Index(line, "code: ")+len("code: "):])
	// The person opens the verification page and approves the code as alice.
	form := url.Values{"user_code": {userCode}, "username": {"alice"}}.Encode()
	if r := do(t, "POST", issuer+"/device", map[string]string{"Content-Type": "application/x-www-form-urlencoded"}, strings.NewReader(form)); r.Status != http.StatusOK {
		t.Fatalf("approving %q: %d %s", userCode, r.Status, r.Body)
	}
	if code := login.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("login: exit %d\n%s", code, login.output())
	}
	tokenFile := filepath.Join(home.config, "tusgate", "token.json")
	for p, want := range map[string]os.FileMode{tokenFile: 0o600, filepath.Dir(tokenFile): 0o700} {
		if fi, err := os.Stat(p); err != nil || fi.Mode().Perm() != want {
			t.Fatalf("%s: %v (want mode %v)", p, err, want)
		}
	}
	firstToken := storedAccessToken(t, tokenFile)

	data, sum := payload(20*MiB, 67)
	path := writeData(t, "login.bin", data)
	start := time.Now()
	up := startCLI(t, home.env(), nil, "upload", "--endpoint", g.URL+"/files/", "--chunk-size", "2MiB", "--limit-rate", "1536KiB", path)
	if code := up.wait(t, 2*time.Minute); code != 0 {
		t.Fatalf("upload: exit %d\n%s", code, up.output())
	}
	urls := up.urls()
	owner := hooks.OwnerFolder(&oidc.Principal{Issuer: issuer, Subject: "alice"})
	if len(urls) != 1 || !strings.HasPrefix(urls[0], g.URL+"/files/"+owner+"/") {
		t.Fatalf("URLs %q, want one in alice's folder %s", urls, owner)
	}
	b.assertStored(t, urls[0], sum, int64(len(data)))
	took := time.Since(start)
	if took < 11*time.Second || storedAccessToken(t, tokenFile) == firstToken {
		t.Fatalf("the upload took %v with a 10s token; the stored token was refreshed: %t", took, storedAccessToken(t, tokenFile) != firstToken)
	}
	t.Logf("upload of %v outlived the 10s token; refreshed token stored", took.Round(time.Second))

	logout := startCLI(t, home.env(), nil, "logout")
	if code := logout.wait(t, 30*time.Second); code != 0 {
		t.Fatalf("logout: exit %d", code)
	}
	if _, err := os.Stat(tokenFile); !os.IsNotExist(err) {
		t.Fatalf("token file after logout: %v", err)
	}
}

func storedAccessToken(t *testing.T, path string) string {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(raw, &tok); err != nil || tok.AccessToken == "" {
		t.Fatalf("token file: %v", err)
	}
	return tok.AccessToken
}
