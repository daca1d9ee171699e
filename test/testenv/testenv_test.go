package testenv_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	smithyhttp "github.com/aws/smithy-go/transport/http"

	"github.com/tusgate/tusgate/test/testenv"
)

// randomBytes returns n reproducible pseudo-random bytes.
func randomBytes(seed uint64, n int) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := 0; i < n; i += 8 {
		v := r.Uint64()
		for j := 0; j < 8 && i+j < n; j++ {
			b[i+j] = byte(v >> (8 * j))
		}
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func put(t *testing.T, c *s3.Client, bucket, key string, body []byte, optFns ...func(*s3.Options)) error {
	t.Helper()
	_, err := c.PutObject(t.Context(), &s3.PutObjectInput{
		Bucket: aws.String(bucket),
		Key:    aws.String(key),
		Body:   bytes.NewReader(body),
	}, optFns...)
	return err
}

func mustPut(t *testing.T, c *s3.Client, bucket, key string, body []byte) {
	t.Helper()
	if err := put(t, c, bucket, key, body); err != nil {
		t.Fatalf("PutObject %s/%s: %v", bucket, key, err)
	}
}

func checkObject(t *testing.T, s *testenv.S3Server, bucket, key string, want []byte) {
	t.Helper()
	sum, size := s.ObjectSHA256(t, bucket, key)
	if sum != sha(want) || size != int64(len(want)) {
		t.Errorf("%s/%s: sha256 %s size %d, want %s size %d", bucket, key, sum, size, sha(want), len(want))
	}
}

// statusOf returns the HTTP status and S3 error code of an SDK error.
func statusOf(err error) (status int, code string) {
	var re *smithyhttp.ResponseError
	if errors.As(err, &re) {
		status = re.HTTPStatusCode()
	}
	var ae smithy.APIError
	if errors.As(err, &ae) {
		code = ae.ErrorCode()
	}
	return status, code
}

// fatalRecorder is a testing.TB whose Fatalf records the message and ends
// the calling goroutine, to test helpers that must fail the test.
type fatalRecorder struct {
	testing.TB
	msg string
}

func (f *fatalRecorder) Helper() {}

func (f *fatalRecorder) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// expectFatal runs fn with a fatalRecorder and returns its Fatalf message
// ("" if fn returned normally).
func expectFatal(t *testing.T, fn func(tb testing.TB)) string {
	t.Helper()
	rec := &fatalRecorder{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn(rec)
	}()
	<-done
	return rec.msg
}

func TestRepoRootToolFreePort(t *testing.T) {
	root := testenv.RepoRoot(t)
	gomod, err := os.ReadFile(filepath.Join(root, "go.mod"))
	if err != nil || !strings.Contains(string(gomod), "module github.com/tusgate/tusgate") {
		t.Fatalf("RepoRoot %s: go.mod %q, %v", root, gomod, err)
	}

	vgw := testenv.Tool(t, "versitygw")
	if want := filepath.Join(root, ".cache", "bin", "versitygw"); vgw != want {
		t.Errorf("Tool(versitygw) = %s, want %s", vgw, want)
	}
	if sc := testenv.Tool(t, "staticcheck"); sc != filepath.Join(root, ".cache", "bin", "staticcheck") {
		t.Errorf("Tool(staticcheck) = %s", sc)
	}

	// The environment variable overrides the cached path.
	t.Setenv("TUSGATE_TEST_VERSITYGW", "/bin/true")
	if got := testenv.Tool(t, "versitygw"); got != "/bin/true" {
		t.Errorf("Tool with TUSGATE_TEST_VERSITYGW=/bin/true = %s", got)
	}
	t.Setenv("TUSGATE_TEST_VERSITYGW", filepath.Join(t.TempDir(), "missing"))
	msg := expectFatal(t, func(tb testing.TB) { testenv.Tool(tb, "versitygw") })
	if !strings.Contains(msg, "TUSGATE_TEST_VERSITYGW=") || !strings.Contains(msg, "to install versitygw") {
		t.Errorf("Tool with a missing override: Fatalf %q", msg)
	}
	msg = expectFatal(t, func(tb testing.TB) { testenv.Tool(tb, "no-such-tool") })
	if want := "run `make test` (or bash test/tools/deps.sh) to install no-such-tool"; !strings.Contains(msg, want) {
		t.Errorf("Tool(no-such-tool): Fatalf %q, want it to contain %q", msg, want)
	}

	port := testenv.FreePort(t)
	l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatalf("FreePort %d is not free: %v", port, err)
	}
	l.Close()
}

// TestStartS3Failure checks that a server that dies at startup fails the test
// at once with the tail of its log.
func TestStartS3Failure(t *testing.T) {
	fake := filepath.Join(t.TempDir(), "versitygw")
	script := "#!/bin/sh\necho \"fake versitygw: $*\"\necho 'cannot start: disk on fire' >&2\nexit 3\n"
	if err := os.WriteFile(fake, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("TUSGATE_TEST_VERSITYGW", fake)
	msg := expectFatal(t, func(tb testing.TB) { testenv.StartS3(tb, testenv.S3Options{Server: "versitygw"}) })
	for _, want := range []string{"exited during startup", "exit status 3", "cannot start: disk on fire", "posix --sidecar"} {
		if !strings.Contains(msg, want) {
			t.Errorf("StartS3 with a failing server: Fatalf %q lacks %q", msg, want)
		}
	}
}

func TestS3Plain(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	if !strings.HasPrefix(s.Endpoint, "http://127.0.0.1:") || s.CABundle != "" {
		t.Errorf("Endpoint %q CABundle %q", s.Endpoint, s.CABundle)
	}
	env := s.Env()
	wantEnv := []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
	}
	if !slices.Equal(env, wantEnv) {
		t.Errorf("Env() = %q, want %q", env, wantEnv)
	}

	const bucket = "plain"
	s.CreateBucket(t, bucket)
	objects := map[string][]byte{
		"dir/a.bin":   randomBytes(1, 1<<20+3),
		"dir/b.txt":   []byte("hello tusgate\n"),
		"other/c.bin": {},
	}
	for k, v := range objects {
		mustPut(t, s.Client, bucket, k, v)
	}
	for k, v := range objects {
		checkObject(t, s, bucket, k, v)
	}
	if got, want := s.Keys(t, bucket, ""), []string{"dir/a.bin", "dir/b.txt", "other/c.bin"}; !slices.Equal(got, want) {
		t.Errorf("Keys = %q, want %q", got, want)
	}
	if got, want := s.Keys(t, bucket, "dir/"), []string{"dir/a.bin", "dir/b.txt"}; !slices.Equal(got, want) {
		t.Errorf("Keys(dir/) = %q, want %q", got, want)
	}
	if got := s.Keys(t, bucket, "nothing/"); len(got) != 0 {
		t.Errorf("Keys(nothing/) = %q, want none", got)
	}
	// The posix backend stores objects as plain files under Dir.
	data, err := os.ReadFile(filepath.Join(s.Dir, bucket, "dir", "a.bin"))
	if err != nil || !bytes.Equal(data, objects["dir/a.bin"]) {
		t.Errorf("file for dir/a.bin under %s: %d bytes, err %v", s.Dir, len(data), err)
	}

	// Requests must be signed.
	resp, err := http.Get(s.Endpoint + "/" + bucket + "/dir/b.txt")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("unsigned GET: status %d, want 403", resp.StatusCode)
	}

	msg := expectFatal(t, func(tb testing.TB) { s.ObjectSHA256(tb, bucket, "missing") })
	if !strings.Contains(msg, "NoSuchKey") {
		t.Errorf("ObjectSHA256 of a missing object: Fatalf %q, want NoSuchKey", msg)
	}
}

// TestS3TLS is not parallel: it sets process environment variables to check
// that Env() is enough for the SDK's default configuration.
func TestS3TLS(t *testing.T) {
	s := testenv.StartS3(t, testenv.S3Options{TLS: true, Server: "versitygw"})
	if !strings.HasPrefix(s.Endpoint, "https://127.0.0.1:") {
		t.Errorf("Endpoint %q", s.Endpoint)
	}
	pemData, err := os.ReadFile(s.CABundle)
	if err != nil || !bytes.Contains(pemData, []byte("-----BEGIN CERTIFICATE-----")) {
		t.Fatalf("CABundle %q: %v", s.CABundle, err)
	}
	if env := s.Env(); !slices.Contains(env, "AWS_CA_BUNDLE="+s.CABundle) {
		t.Errorf("Env() = %q lacks AWS_CA_BUNDLE", env)
	}

	const bucket = "secure"
	s.CreateBucket(t, bucket)
	body := randomBytes(2, 3<<20)
	mustPut(t, s.Client, bucket, "x.bin", body)
	checkObject(t, s, bucket, "x.bin", body)

	// Without the CA the certificate is rejected; with it, it verifies for
	// both 127.0.0.1 and localhost.
	_, err = http.Get(s.Endpoint + "/")
	var unknownCA x509.UnknownAuthorityError
	if !errors.As(err, &unknownCA) {
		t.Errorf("GET without the CA: err %v, want x509.UnknownAuthorityError", err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pemData)
	hc := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, host := range []string{"127.0.0.1", "localhost"} {
		u := strings.Replace(s.Endpoint, "127.0.0.1", host, 1) + "/"
		resp, err := hc.Get(u)
		if err != nil {
			t.Fatalf("GET %s with the CA: %v", u, err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden { // unsigned
			t.Errorf("GET %s: status %d, want 403", u, resp.StatusCode)
		}
	}

	// A client configured only from Env() (as a child process would be).
	dir := t.TempDir()
	for _, kv := range []string{
		"AWS_CONFIG_FILE=" + filepath.Join(dir, "config"),
		"AWS_SHARED_CREDENTIALS_FILE=" + filepath.Join(dir, "credentials"),
		"AWS_PROFILE=", "AWS_SESSION_TOKEN=", "AWS_ENDPOINT_URL=",
	} {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	for _, kv := range s.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	cfg, err := config.LoadDefaultConfig(t.Context())
	if err != nil {
		t.Fatalf("LoadDefaultConfig: %v", err)
	}
	c := s3.NewFromConfig(cfg, func(o *s3.Options) { o.UsePathStyle = true })
	out, err := c.ListBuckets(t.Context(), &s3.ListBucketsInput{})
	if err != nil {
		t.Fatalf("ListBuckets with the SDK configured from Env(): %v", err)
	}
	if len(out.Buckets) != 1 || aws.ToString(out.Buckets[0].Name) != bucket {
		t.Errorf("ListBuckets = %+v, want just %q", out.Buckets, bucket)
	}

	// A FaultProxy can front an HTTPS server; clients talk plain HTTP to it.
	p := testenv.NewFaultProxy(t, s.Endpoint)
	pc := s.ClientFor(p.URL)
	small := []byte("through the proxy")
	mustPut(t, pc, bucket, "via-proxy.txt", small)
	checkObject(t, s, bucket, "via-proxy.txt", small)
	if proxied, failed := p.Counts(); proxied != 1 || failed != 0 {
		t.Errorf("Counts = %d, %d; want 1, 0", proxied, failed)
	}
}

func TestMultipartUploads(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	const bucket = "mpu"
	s.CreateBucket(t, bucket)
	ctx := t.Context()

	create := func(key string) string {
		out, err := s.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
		if err != nil {
			t.Fatalf("CreateMultipartUpload %s: %v", key, err)
		}
		return aws.ToString(out.UploadId)
	}
	bigID := create("big.bin")
	abortID := create("aborted.bin")
	want := []string{"aborted.bin " + abortID, "big.bin " + bigID}
	if got := s.MultipartUploads(t, bucket); !slices.Equal(got, want) {
		t.Fatalf("MultipartUploads = %q, want %q", got, want)
	}

	parts := [][]byte{randomBytes(3, 5<<20), randomBytes(4, 1<<20+17)}
	var completed []types.CompletedPart
	for i, p := range parts {
		n := int32(i + 1)
		out, err := s.Client.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(bucket), Key: aws.String("big.bin"), UploadId: aws.String(bigID),
			PartNumber: aws.Int32(n), Body: bytes.NewReader(p),
		})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
		completed = append(completed, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(n)})
	}
	lp, err := s.Client.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(bucket), Key: aws.String("big.bin"), UploadId: aws.String(bigID)})
	if err != nil || len(lp.Parts) != 2 || aws.ToInt64(lp.Parts[1].Size) != int64(len(parts[1])) {
		t.Fatalf("ListParts: %+v, %v", lp, err)
	}
	if got := s.Keys(t, bucket, ""); len(got) != 0 {
		t.Errorf("Keys before completion = %q, want none", got)
	}
	if _, err := s.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String("big.bin"), UploadId: aws.String(bigID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	if got, want := s.MultipartUploads(t, bucket), []string{"aborted.bin " + abortID}; !slices.Equal(got, want) {
		t.Errorf("MultipartUploads after completion = %q, want %q", got, want)
	}
	if _, err := s.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String("aborted.bin"), UploadId: aws.String(abortID),
	}); err != nil {
		t.Fatalf("AbortMultipartUpload: %v", err)
	}
	if got := s.MultipartUploads(t, bucket); len(got) != 0 {
		t.Errorf("MultipartUploads after abort = %q, want none", got)
	}
	checkObject(t, s, bucket, "big.bin", slices.Concat(parts...))
	if got, want := s.Keys(t, bucket, ""), []string{"big.bin"}; !slices.Equal(got, want) {
		t.Errorf("Keys = %q, want %q", got, want)
	}
}

func TestFaultProxyFailEvery(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	const bucket = "flaky"
	s.CreateBucket(t, bucket)
	p := testenv.NewFaultProxy(t, s.Endpoint)
	c := s.ClientFor(p.URL)

	// Without retries every second request fails with a clean 503 (not a
	// connection reset), for small bodies and for ones above the SDK's 2 MB
	// "Expect: 100-continue" threshold.
	p.FailEvery(2)
	bodies := map[string][]byte{}
	noRetry := func(o *s3.Options) { o.RetryMaxAttempts = 1 }
	for i := range 6 {
		key := fmt.Sprintf("noretry/%d", i)
		body := randomBytes(uint64(10+i), 1000+i)
		if i%4 >= 2 {
			body = randomBytes(uint64(10+i), 16<<20+i)
		}
		err := put(t, c, bucket, key, body, noRetry)
		if i%2 == 0 {
			if err != nil {
				t.Errorf("put %d (request %d): %v, want success", i, i+1, err)
			}
			bodies[key] = body
			continue
		}
		if status, code := statusOf(err); status != http.StatusServiceUnavailable || code != "ServiceUnavailable" {
			t.Errorf("put %d (%d bytes): status %d code %q (err %v), want 503 ServiceUnavailable", i, len(body), status, code, err)
		}
	}
	if proxied, failed := p.Counts(); proxied != 3 || failed != 3 {
		t.Errorf("Counts = %d, %d; want 3, 3", proxied, failed)
	}

	// With the SDK's retries (3 attempts) every put succeeds: put 1 is
	// request 1; put k>1 fails on request 2k-2 and succeeds on 2k-1.
	p.FailEvery(2)
	const puts = 8
	for i := range puts {
		key := fmt.Sprintf("retry/%d", i)
		body := randomBytes(uint64(100+i), 1000+i)
		if i%2 == 1 {
			body = randomBytes(uint64(100+i), 3<<20+i)
		}
		if err := put(t, c, bucket, key, body); err != nil {
			t.Errorf("put %d with retries: %v", i, err)
		}
		bodies[key] = body
	}
	if proxied, failed := p.Counts(); proxied != 3+puts || failed != 3+puts-1 {
		t.Errorf("Counts = %d, %d; want %d, %d", proxied, failed, 3+puts, 3+puts-1)
	}

	// Concurrent clients: the failure pattern stays exact.
	p.FailEvery(4)
	p0, f0 := p.Counts()
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 8 {
				key := fmt.Sprintf("concurrent/%d-%d", g, i)
				body := []byte(key)
				if err := put(t, c, bucket, key, body, func(o *s3.Options) { o.RetryMaxAttempts = 10 }); err != nil {
					errs <- fmt.Errorf("%s: %w", key, err)
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	proxied, failed := p.Counts()
	proxied, failed = proxied-p0, failed-f0
	if proxied != 64 || failed != (proxied+failed)/4 {
		t.Errorf("concurrent Counts delta = %d proxied, %d failed; want 64 and (total)/4", proxied, failed)
	}
	for g := range 8 {
		for i := range 8 {
			key := fmt.Sprintf("concurrent/%d-%d", g, i)
			bodies[key] = []byte(key)
		}
	}

	p.FailEvery(0)
	want := slices.Sorted(func(yield func(string) bool) {
		for k := range bodies {
			if !yield(k) {
				return
			}
		}
	})
	if got := s.Keys(t, bucket, ""); !slices.Equal(got, want) {
		t.Errorf("Keys = %q, want %q", got, want)
	}
	for k, v := range bodies {
		checkObject(t, s, bucket, k, v)
	}
}

func TestFaultProxyDown(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	const bucket = "outage"
	s.CreateBucket(t, bucket)
	p := testenv.NewFaultProxy(t, s.Endpoint)
	c := s.ClientFor(p.URL)
	head := func() error {
		_, err := c.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(bucket)})
		return err
	}
	if err := head(); err != nil {
		t.Fatalf("HeadBucket through the proxy: %v", err)
	}

	p.SetDown(true)
	err := head()
	if status, _ := statusOf(err); status != http.StatusServiceUnavailable {
		t.Errorf("HeadBucket while down: status %d (err %v), want 503", status, err)
	}
	if proxied, failed := p.Counts(); proxied != 1 || failed != 3 {
		t.Errorf("Counts while down = %d, %d; want 1 and 3 (the SDK's 3 attempts)", proxied, failed)
	}
	resp, err := http.Get(p.URL + "/" + bucket + "/some/key")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable ||
		resp.Header.Get("Content-Type") != "application/xml" ||
		!bytes.Contains(body, []byte("<Error><Code>ServiceUnavailable</Code><Message>")) {
		t.Errorf("GET while down: %d %q %s", resp.StatusCode, resp.Header.Get("Content-Type"), body)
	}
	// The SDK parses the XML error of a request with a response body.
	_, err = c.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String("k")},
		func(o *s3.Options) { o.RetryMaxAttempts = 1 })
	if status, code := statusOf(err); status != http.StatusServiceUnavailable || code != "ServiceUnavailable" {
		t.Errorf("GetObject while down: status %d code %q (err %v)", status, code, err)
	}
	if proxied, _ := p.Counts(); proxied != 1 {
		t.Errorf("the target was contacted while down: proxied = %d", proxied)
	}

	p.SetDown(false)
	if err := head(); err != nil {
		t.Fatalf("HeadBucket after SetDown(false): %v", err)
	}
	if proxied, failed := p.Counts(); proxied != 2 || failed != 5 {
		t.Errorf("Counts = %d, %d; want 2, 5", proxied, failed)
	}
}

// TestFaultProxyRefuse answers chosen requests with a chosen S3 error,
// which the SDK parses like the real one.
func TestFaultProxyRefuse(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	const bucket = "refuse"
	s.CreateBucket(t, bucket)
	p := testenv.NewFaultProxy(t, s.Endpoint)
	c := s.ClientFor(p.URL)
	p.RefuseMatching(func(r *http.Request) bool { return r.Method == http.MethodPut }, http.StatusBadRequest, "InvalidArgument", "no such thing")
	put := func() error {
		_, err := c.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(bucket), Key: aws.String("k"), Body: bytes.NewReader([]byte("x"))})
		return err
	}
	if status, code := statusOf(put()); status != http.StatusBadRequest || code != "InvalidArgument" {
		t.Errorf("refused PutObject: status %d code %q", status, code)
	}
	if _, err := c.HeadBucket(t.Context(), &s3.HeadBucketInput{Bucket: aws.String(bucket)}); err != nil {
		t.Errorf("HeadBucket is not matched, yet: %v", err)
	}
	if proxied, failed := p.Counts(); proxied != 1 || failed != 1 {
		t.Errorf("Counts = %d, %d; want 1, 1 (a 400 is not retried)", proxied, failed)
	}
	p.RefuseMatching(nil, 0, "", "")
	if err := put(); err != nil {
		t.Fatalf("PutObject after RefuseMatching(nil): %v", err)
	}
}

// TestFaultProxyLargeObject streams tens of MiB both ways through the proxy,
// including under injected failures, with a key that needs URL escaping.
func TestFaultProxyLargeObject(t *testing.T) {
	t.Parallel()
	s := testenv.StartS3(t, testenv.S3Options{Server: "versitygw"})
	const bucket = "large"
	s.CreateBucket(t, bucket)
	p := testenv.NewFaultProxy(t, s.Endpoint)
	c := s.ClientFor(p.URL)
	ctx := context.Background()
	const key = "uploads/with space/ünïcode+plus=&?#.bin"

	p.FailEvery(3)
	out, err := c.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("CreateMultipartUpload: %v", err)
	}
	const partSize = 16 << 20
	var all []byte
	var completed []types.CompletedPart
	for n := int32(1); n <= 3; n++ {
		part := randomBytes(uint64(1000+n), partSize)
		all = append(all, part...)
		up, err := c.UploadPart(ctx, &s3.UploadPartInput{
			Bucket: aws.String(bucket), Key: aws.String(key), UploadId: out.UploadId,
			PartNumber: aws.Int32(n), Body: bytes.NewReader(part),
		})
		if err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
		completed = append(completed, types.CompletedPart{ETag: up.ETag, PartNumber: aws.Int32(n)})
	}
	if _, err := c.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
		Bucket: aws.String(bucket), Key: aws.String(key), UploadId: out.UploadId,
		MultipartUpload: &types.CompletedMultipartUpload{Parts: completed},
	}); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	if _, failed := p.Counts(); failed == 0 {
		t.Errorf("no request was failed by FailEvery(3)")
	}
	p.FailEvery(0)

	checkObject(t, s, bucket, key, all)
	if got := s.Keys(t, bucket, ""); !slices.Equal(got, []string{key}) {
		t.Errorf("Keys = %q", got)
	}
	if got := s.MultipartUploads(t, bucket); len(got) != 0 {
		t.Errorf("MultipartUploads = %q, want none", got)
	}

	// Download through the proxy.
	get, err := c.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("GetObject through the proxy: %v", err)
	}
	h := sha256.New()
	n, err := io.Copy(h, get.Body)
	get.Body.Close()
	if err != nil || n != int64(len(all)) || hex.EncodeToString(h.Sum(nil)) != sha(all) {
		t.Errorf("GetObject through the proxy: %d bytes, err %v, sha256 match %v", n, err, hex.EncodeToString(h.Sum(nil)) == sha(all))
	}
}
