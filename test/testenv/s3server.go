package testenv

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/ratelimit"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// S3Server is a running S3 server in a temp dir (versitygw with a posix
// backend, or MinIO with one drive), started by StartS3 and stopped by the
// test's cleanup.
type S3Server struct {
	Name      string // "versitygw" or "minio"
	Endpoint  string // e.g. http://127.0.0.1:PORT (or https:// when TLS)
	AccessKey string
	SecretKey string
	Region    string
	CABundle  string     // path of the CA PEM when TLS, else ""
	Client    *s3.Client // path-style, configured for this server
	Dir       string     // root dir of the data (versitygw: one directory per bucket)
	Log       string     // file receiving the server's stdout and stderr

	pool   *x509.CertPool // CA of the server certificate when TLS
	pid    int
	exited chan struct{} // closed when the process has been reaped

	bin        string // how it was started, for Restart
	args, env  []string
	restarting sync.Mutex
}

// Restart stops the server and starts it again on the
// same port with the same data (an upgrade, a crash).
func (s *S3Server) Restart(t testing.TB) {
	t.Helper()
	s.restarting.Lock()
	defer s.restarting.Unlock()
	stopProcess(s.pid, s.exited, 5*time.Second)
	if err := s.start(t, s.bin, s.args, s.env); err != nil {
		t.Fatalf("testenv: restarting %s: %v\n--- tail of %s ---\n%s", s.Name, err, s.Log, logTail(s.Log, 4096))
	}
}

// S3Options configures StartS3.
type S3Options struct {
	// TLS generates a throw-away CA and a server certificate for
	// 127.0.0.1/localhost (ECDSA P-256) and serves HTTPS with them.
	TLS bool
	// Server is "versitygw" or "minio"; "" takes $TUSGATE_TEST_S3, else
	// versitygw. MinIO comes from .cache/bin/minio (test/tools/deps.sh
	// builds it when TUSGATE_TEST_S3=minio) or $TUSGATE_TEST_MINIO.
	Server string
}

// ServerName is the S3 server StartS3 runs for opts.
func (opts S3Options) ServerName() string {
	if opts.Server != "" {
		return opts.Server
	}
	if v := os.Getenv("TUSGATE_TEST_S3"); v != "" {
		return v
	}
	return "versitygw"
}

// startTimeout bounds how long StartS3 waits for the server to answer.
const startTimeout = 20 * time.Second

// StartS3 starts versitygw (posix backend), or MinIO (see S3Options.Server),
// on 127.0.0.1:<free port> with its own temp dirs (for versitygw root and
// sidecar META dir as SIBLINGS, see field notes),
// waits until it answers S3 requests (poll ListBuckets with a deadline of
// 20s), and registers t.Cleanup that kills it by PID (process group) and waits
// for it. Its stdout/stderr go to a log file in the temp dir; on startup
// failure the log tail is included in the t.Fatalf message.
//
// The temp dir (and so every object and abandoned multipart part) is removed
// when the test ends.
func StartS3(t testing.TB, opts S3Options) *S3Server {
	t.Helper()
	name := opts.ServerName()
	if name != "versitygw" && name != "minio" {
		t.Fatalf("testenv: StartS3: unknown S3 server %q (TUSGATE_TEST_S3: versitygw or minio)", name)
	}
	bin := Tool(t, name)
	base := t.TempDir()
	s := &S3Server{
		Name:      name,
		AccessKey: "tusgate-test",
		SecretKey: randomHex(t, 20),
		Region:    "us-east-1",
		Dir:       filepath.Join(base, "root"),
		Log:       filepath.Join(base, "versitygw.log"),
	}
	// The sidecar dir must not share a string prefix with the root dir.
	meta := filepath.Join(base, "meta")
	for _, d := range []string{s.Dir, meta} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatalf("testenv: StartS3: %v", err)
		}
	}
	scheme := "http"
	var certs *testCerts
	if opts.TLS {
		var err error
		if certs, err = writeTestCerts(base); err != nil {
			t.Fatalf("testenv: StartS3: generating certificates: %v", err)
		}
		scheme, s.CABundle, s.pool = "https", certs.CA, certs.Pool
	}

	// FreePort can race with other processes; retry on a lost port.
	const attempts = 3
	for attempt := 1; ; attempt++ {
		port := FreePort(t)
		s.Endpoint = fmt.Sprintf("%s://127.0.0.1:%d", scheme, port)
		s.Client = s.ClientFor(s.Endpoint)
		args, env := s.versitygwArgs(port, certs, opts.TLS, meta)
		if name == "minio" {
			args, env = s.minioArgs(t, port, certs, opts.TLS, base)
		}
		err := s.start(t, bin, args, env)
		if err == nil {
			s.bin, s.args, s.env = bin, args, env
			return s
		}
		tail := logTail(s.Log, 4096)
		if attempt < attempts && strings.Contains(tail, "address already in use") {
			continue
		}
		t.Fatalf("testenv: StartS3: %s %v: %v\n--- tail of %s ---\n%s", name, args, err, s.Log, tail)
	}
}

// versitygwArgs are versitygw's arguments and environment (posix backend,
// the sidecar dir meta) for port.
func (s *S3Server) versitygwArgs(port int, certs *testCerts, useTLS bool, meta string) (args, env []string) {
	args = []string{
		"--port", fmt.Sprintf("127.0.0.1:%d", port),
		"--region", s.Region,
		// Without it versitygw closes the connection after every response.
		"--keep-alive",
	}
	if useTLS {
		args = append(args, "--cert", certs.Cert, "--key", certs.Key)
	}
	args = append(args, "posix", "--sidecar", meta, s.Dir)
	return args, []string{"ROOT_ACCESS_KEY=" + s.AccessKey, "ROOT_SECRET_KEY=" + s.SecretKey}
}

// minioArgs are MinIO's arguments and environment (one drive in s.Dir,
// the console off) for port. MinIO reads its certificate from a folder.
func (s *S3Server) minioArgs(t testing.TB, port int, certs *testCerts, useTLS bool, base string) (args, env []string) {
	args = []string{"server", "--quiet", "--address", fmt.Sprintf("127.0.0.1:%d", port)}
	if useTLS {
		dir := filepath.Join(base, "minio-certs")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			t.Fatalf("testenv: StartS3: %v", err)
		}
		for src, dst := range map[string]string{certs.Cert: "public.crt", certs.Key: "private.key"} {
			data, err := os.ReadFile(src)
			if err == nil {
				err = os.WriteFile(filepath.Join(dir, dst), data, 0o600)
			}
			if err != nil {
				t.Fatalf("testenv: StartS3: MinIO's certificate folder: %v", err)
			}
		}
		args = append(args, "--certs-dir", dir)
	}
	args = append(args, s.Dir)
	return args, []string{
		"MINIO_ROOT_USER=" + s.AccessKey,
		"MINIO_ROOT_PASSWORD=" + s.SecretKey,
		"MINIO_SITE_REGION=" + s.Region,
		"MINIO_BROWSER=off",
		"MINIO_UPDATE=off",
	}
}

// start runs the server with args and env and waits until it answers; on
// success the cleanup stopping it is registered, on failure it is already
// stopped.
func (s *S3Server) start(t testing.TB, bin string, args, env []string) error {
	logf, err := os.OpenFile(s.Log, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return err
	}
	defer logf.Close() // the child holds its own descriptor
	fmt.Fprintf(logf, "=== %s %s\n", bin, strings.Join(args, " "))

	cmd := exec.Command(bin, args...)
	cmd.Dir = filepath.Dir(s.Dir)
	cmd.Stdout, cmd.Stderr = logf, logf
	// A minimal environment: both servers read many settings from
	// variables (VGW_*, MINIO_*, LOGFILE, ...) that must not leak in from
	// the caller.
	cmd.Env = append([]string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Dir(s.Dir),
	}, env...)
	setProcessGroup(cmd)
	if err := cmd.Start(); err != nil {
		return err
	}
	s.pid = cmd.Process.Pid
	s.exited = make(chan struct{})
	var waitErr error
	go func() {
		waitErr = cmd.Wait()
		close(s.exited)
	}()

	if err := s.waitReady(); err != nil {
		stopProcess(s.pid, s.exited, 5*time.Second)
		if waitErr != nil {
			err = fmt.Errorf("%w (process: %v)", err, waitErr)
		}
		return err
	}
	t.Cleanup(func() { stopProcess(s.pid, s.exited, 5*time.Second) })
	return nil
}

// waitReady polls ListBuckets until it succeeds, the process exits or
// startTimeout passes.
func (s *S3Server) waitReady() error {
	deadline := time.Now().Add(startTimeout)
	var lastErr error
	for {
		select {
		case <-s.exited:
			return fmt.Errorf("%s exited during startup (last S3 error: %v)", s.Name, lastErr)
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		_, err := s.Client.ListBuckets(ctx, &s3.ListBucketsInput{}, func(o *s3.Options) { o.RetryMaxAttempts = 1 })
		cancel()
		if err == nil {
			return nil
		}
		lastErr = err
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not answer ListBuckets within %v: %v", s.Name, startTimeout, lastErr)
		}
		select {
		case <-s.exited:
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// ClientFor returns an S3 client with this server's credentials, region and
// CA, using path-style addressing against endpoint — s.Endpoint, or the URL
// of a FaultProxy in front of it.
//
// Its retryer is the SDK's standard one (3 attempts) with back-off capped at
// 200ms and no client-side retry quota, so tests with injected faults stay
// fast and do not run out of retry tokens.
func (s *S3Server) ClientFor(endpoint string) *s3.Client {
	hc := awshttp.NewBuildableClient()
	if s.pool != nil {
		pool := s.pool
		hc = hc.WithTransportOptions(func(tr *http.Transport) {
			if tr.TLSClientConfig == nil {
				tr.TLSClientConfig = &tls.Config{MinVersion: tls.VersionTLS12}
			}
			tr.TLSClientConfig.RootCAs = pool
		})
	}
	return s3.New(s3.Options{
		Region:       s.Region,
		Credentials:  credentials.NewStaticCredentialsProvider(s.AccessKey, s.SecretKey, ""),
		BaseEndpoint: aws.String(endpoint),
		UsePathStyle: true,
		HTTPClient:   hc,
		Retryer: retry.NewStandard(func(o *retry.StandardOptions) {
			o.MaxBackoff = 200 * time.Millisecond
			o.RateLimiter = ratelimit.None
		}),
	})
}

// Env returns environment variables (AWS_ACCESS_KEY_ID,
// AWS_SECRET_ACCESS_KEY, AWS_REGION, AWS_ENDPOINT_URL_S3, and AWS_CA_BUNDLE
// when TLS) for a child process to use this server.
//
// Append them to os.Environ(): exec.Cmd uses the last value of a duplicated
// key, so a later "AWS_ENDPOINT_URL_S3=" + proxy.URL points the child at a
// FaultProxy instead. Clients must use path-style addressing.
func (s *S3Server) Env() []string {
	env := []string{
		"AWS_ACCESS_KEY_ID=" + s.AccessKey,
		"AWS_SECRET_ACCESS_KEY=" + s.SecretKey,
		"AWS_REGION=" + s.Region,
		"AWS_ENDPOINT_URL_S3=" + s.Endpoint,
	}
	if s.CABundle != "" {
		env = append(env, "AWS_CA_BUNDLE="+s.CABundle)
	}
	return env
}

// CreateBucket creates a bucket, failing the test on error.
func (s *S3Server) CreateBucket(t testing.TB, name string) {
	t.Helper()
	if _, err := s.Client.CreateBucket(t.Context(), &s3.CreateBucketInput{Bucket: aws.String(name)}); err != nil {
		t.Fatalf("testenv: CreateBucket %q: %v", name, err)
	}
}

// ObjectSHA256 returns the hex SHA-256 and size of an object (t.Fatalf if
// missing). The object is streamed, not held in memory.
func (s *S3Server) ObjectSHA256(t testing.TB, bucket, key string) (sum string, size int64) {
	t.Helper()
	out, err := s.Client.GetObject(t.Context(), &s3.GetObjectInput{Bucket: aws.String(bucket), Key: aws.String(key)})
	if err != nil {
		t.Fatalf("testenv: GetObject %s/%s: %v", bucket, key, err)
	}
	defer out.Body.Close()
	h := sha256.New()
	size, err = io.Copy(h, out.Body)
	if err != nil {
		t.Fatalf("testenv: reading %s/%s: %v", bucket, key, err)
	}
	if out.ContentLength != nil && *out.ContentLength != size {
		t.Fatalf("testenv: %s/%s: read %d bytes, Content-Length %d", bucket, key, size, *out.ContentLength)
	}
	return hex.EncodeToString(h.Sum(nil)), size
}

// Keys lists all object keys in a bucket (under prefix), sorted.
func (s *S3Server) Keys(t testing.TB, bucket, prefix string) []string {
	t.Helper()
	keys := []string{}
	p := s3.NewListObjectsV2Paginator(s.Client, &s3.ListObjectsV2Input{
		Bucket: aws.String(bucket),
		Prefix: aws.String(prefix),
	})
	for p.HasMorePages() {
		page, err := p.NextPage(t.Context())
		if err != nil {
			t.Fatalf("testenv: ListObjectsV2 %s prefix %q: %v", bucket, prefix, err)
		}
		for _, o := range page.Contents {
			keys = append(keys, aws.ToString(o.Key))
		}
	}
	slices.Sort(keys)
	return keys
}

// MultipartUploads lists in-progress multipart uploads in a bucket as
// "key uploadID" strings, sorted.
func (s *S3Server) MultipartUploads(t testing.TB, bucket string) []string {
	t.Helper()
	uploads := []string{}
	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(bucket)}
	for {
		out, err := s.Client.ListMultipartUploads(t.Context(), in)
		if err != nil {
			t.Fatalf("testenv: ListMultipartUploads %s: %v", bucket, err)
		}
		for _, u := range out.Uploads {
			uploads = append(uploads, aws.ToString(u.Key)+" "+aws.ToString(u.UploadId))
		}
		if !aws.ToBool(out.IsTruncated) {
			break
		}
		if aws.ToString(out.NextKeyMarker) == "" && aws.ToString(out.NextUploadIdMarker) == "" {
			t.Fatalf("testenv: ListMultipartUploads %s: truncated answer without next markers", bucket)
		}
		in.KeyMarker, in.UploadIdMarker = out.NextKeyMarker, out.NextUploadIdMarker
	}
	slices.Sort(uploads)
	return uploads
}

// randomHex returns n random bytes, hex-encoded.
func randomHex(t testing.TB, n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatalf("testenv: %v", err)
	}
	return hex.EncodeToString(b)
}

// logTail returns up to the last limit bytes of a file.
func logTail(path string, limit int64) string {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err == nil && fi.Size() > limit {
		if _, err := f.Seek(-limit, io.SeekEnd); err != nil {
			return fmt.Sprintf("(cannot read log: %v)", err)
		}
	}
	b, err := io.ReadAll(f)
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Sprintf("(cannot read log: %v)", err)
	}
	return string(b)
}
