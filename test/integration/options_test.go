package integration

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// S3 over HTTPS with a private CA, as in production: the CA reaches the
// AWS SDK through AWS_CA_BUNDLE (set by S3Server.Env).
func TestS3OverHTTPSWithPrivateCA(t *testing.T) {
	s3 := testenv.StartS3(t, testenv.S3Options{TLS: true})
	s3.CreateBucket(t, testBucket)
	if !strings.HasPrefix(s3.Endpoint, "https://") || !slices.Contains(s3.Env(), "AWS_CA_BUNDLE="+s3.CABundle) {
		t.Fatalf("S3 is not on HTTPS with a CA bundle: %s %v", s3.Endpoint, s3.Env())
	}
	b := &backend{name: "s3-https", s3: s3, env: s3.Env(), dataDir: t.TempDir()}
	b.args = []string{"--s3-bucket", testBucket, "--data-dir", b.dataDir}
	g := b.start(t)
	data, sum := payload(12*MiB, 30)
	loc := create(t, g, int64(len(data)))
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, loc, sum, int64(len(data)))

	// Without the CA the server is not trusted: a definite start-up problem
	// would be wrong (it may be a transient MITM box), so tusgate starts
	// but is not ready.
	var env []string
	for _, kv := range s3.Env() {
		if !strings.HasPrefix(kv, "AWS_CA_BUNDLE=") {
			env = append(env, kv)
		}
	}
	metrics := "127.0.0.1:" + strconv.Itoa(testenv.FreePort(t))
	g2 := startGate(t, env, "--s3-bucket", testBucket, "--data-dir", t.TempDir(), "--metrics-listen", metrics)
	if r := do(t, "GET", g2.URL+"/readyz", nil, nil); r.Status != http.StatusServiceUnavailable || r.Body != "s3: unavailable\n" {
		t.Fatalf("readyz without the CA: %d %q", r.Status, r.Body)
	}
	// Operators see why on the metrics listener.
	if r := do(t, "GET", "http://"+metrics+"/readyz", nil, nil); r.Status != http.StatusServiceUnavailable || !strings.Contains(r.Body, "certificate") {
		t.Fatalf("readyz on the metrics listener without the CA: %d %q", r.Status, r.Body)
	}
}

func TestServeTLS(t *testing.T) {
	ca, cert, key := testenv.Certs(t)
	g := startGate(t, nil, "--data-dir", t.TempDir(), "--tls-cert", cert, "--tls-key", key)
	pem, err := os.ReadFile(ca)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	req, _ := http.NewRequest("POST", g.URL+"/files/", nil)
	req.Header.Set("Tus-Resumable", "1.0.0")
	req.Header.Set("Upload-Length", "3")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated || !strings.HasPrefix(resp.Header.Get("Location"), "https://127.0.0.1:") {
		t.Fatalf("POST over TLS: %d Location %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	// tusgate healthcheck speaks TLS when --tls-cert is set.
	code, out := runGate(t, []string{"TUSGATE_LISTEN=" + strings.TrimPrefix(g.URL, "https://"), "TUSGATE_TLS_CERT=" + cert}, "healthcheck")
	if code != 0 {
		t.Fatalf("healthcheck over TLS: %d %s", code, out)
	}
	// Also when both come from the server's config file.
	cfgFile := filepath.Join(t.TempDir(), "tusgate.yaml")
	if err := os.WriteFile(cfgFile, []byte("listen: "+strings.TrimPrefix(g.URL, "https://")+"\ntls-cert: "+cert+"\ntls-key: "+key+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if code, out := runGate(t, []string{"TUSGATE_CONFIG=" + cfgFile}, "healthcheck"); code != 0 {
		t.Fatalf("healthcheck over TLS with TUSGATE_CONFIG: %d %s", code, out)
	}
	// A mismatched key pair is a start-up error naming the flags.
	_, otherCert, _ := testenv.Certs(t)
	code, out = runGate(t, nil, "--insecure-no-auth", "--data-dir", t.TempDir(), "--tls-cert", otherCert, "--tls-key", key)
	if code != 2 || !strings.Contains(out, "--tls-cert/--tls-key") {
		t.Fatalf("bad key pair: %d %s", code, out)
	}
}

func TestBehindProxyAndDisableDownload(t *testing.T) {
	dir := t.TempDir()
	g := startGate(t, nil, "--data-dir", dir, "--behind-proxy", "--disable-download", "--base-path", "/up")
	r := do(t, "POST", g.URL+"/up/", with(tusHeaders, "Upload-Length", "3", "X-Forwarded-Host", "uploads.example", "X-Forwarded-Proto", "https"), nil)
	loc := r.Header.Get("Location")
	if r.Status != http.StatusCreated || !strings.HasPrefix(loc, "https://uploads.example/up/") {
		t.Fatalf("POST behind proxy: %d Location %q", r.Status, loc)
	}
	local := g.URL + strings.TrimPrefix(loc, "https://uploads.example")
	if p := do(t, "PATCH", local, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader([]byte("abc"))); p.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d", p.Status)
	}
	if get := do(t, "GET", local, nil, nil); get.Status != http.StatusMethodNotAllowed {
		t.Fatalf("GET with --disable-download: %d", get.Status)
	}
	// Without --behind-proxy the forwarded headers are ignored.
	g2 := startGate(t, nil, "--data-dir", t.TempDir())
	r = do(t, "POST", g2.URL+"/files/", with(tusHeaders, "Upload-Length", "3", "X-Forwarded-Host", "evil.example"), nil)
	if loc := r.Header.Get("Location"); !strings.HasPrefix(loc, g2.URL+"/files/") {
		t.Fatalf("forwarded host trusted without --behind-proxy: %q", loc)
	}
}
