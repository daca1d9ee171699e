package integration

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// directSetup is a tusgate with --direct-uploads on versitygw (HTTPS), a
// test issuer, and an HTTP client that trusts versitygw's CA for the
// presigned URLs.
type directSetup struct {
	*authSetup
	s3c *http.Client
}

func startDirect(t *testing.T, b *backend, extra ...string) *directSetup {
	t.Helper()
	a := startAuth(t, b, append([]string{"--direct-uploads"}, extra...)...)
	return &directSetup{authSetup: a, s3c: caClient(t, b.s3.CABundle)}
}

// caClient is an HTTP client trusting the CA in file (or the system's).
func caClient(t *testing.T, file string) *http.Client {
	t.Helper()
	// S3 refuses a bad signature before the body: with 100-continue the
	// client sees its answer rather than a reset connection.
	tr := &http.Transport{ExpectContinueTimeout: 5 * time.Second}
	if file == "" {
		return &http.Client{Timeout: time.Minute, Transport: tr}
	}
	pem, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	return &http.Client{Timeout: time.Minute, Transport: tr}
}

// user is someone calling the /s3/ routes with a token.
type user struct {
	d   *directSetup
	h   map[string]string
	sub string
}

func (d *directSetup) user(t *testing.T, subject string) *user {
	return &user{d: d, sub: subject, h: map[string]string{"Authorization": "Bearer " + d.token(t, "rsa1", subject)}}
}

// call sends a JSON request to a /s3/ route and decodes a 2xx answer into
// out (if not nil).
func (u *user) call(t *testing.T, method, path string, body any, out any) response {
	t.Helper()
	var rd io.Reader
	h := u.h
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
		h = with(h, "Content-Type", "application/json")
	}
	r := do(t, method, u.d.g.URL+path, h, rd)
	if out != nil && r.Status/100 == 2 {
		if err := json.Unmarshal([]byte(r.Body), out); err != nil {
			t.Fatalf("%s %s: %v in %q", method, path, err, r.Body)
		}
	}
	return r
}

// created is the answer to POST /s3/multipart.
type created struct {
	Key      string `json:"key"`
	UploadID string `json:"uploadId"`
	Bucket   string `json:"bucket"`
}

// create starts a multipart upload and fails the test unless it is 200.
func (u *user) create(t *testing.T, body map[string]any) created {
	t.Helper()
	var c created
	if r := u.call(t, "POST", "/s3/multipart", body, &c); r.Status != http.StatusOK {
		t.Fatalf("create as %s: %d %s", u.sub, r.Status, r.Body)
	}
	return c
}

// signed is a presigned request.
type signed struct {
	Method  string            `json:"method"`
	URL     string            `json:"url"`
	Expires int64             `json:"expires"`
	Headers map[string]string `json:"headers"`
}

func partPath(c created, pn int, size int64) string {
	p := "/s3/multipart/" + url.PathEscape(c.UploadID) + "/" + strconv.Itoa(pn) + "?key=" + url.QueryEscape(c.Key)
	if size >= 0 {
		p += "&size=" + strconv.FormatInt(size, 10)
	}
	return p
}

func uploadPath(c created, suffix string) string {
	return "/s3/multipart/" + url.PathEscape(c.UploadID) + suffix + "?key=" + url.QueryEscape(c.Key)
}

// sign presigns part pn (size -1: unbound) and fails the test unless 200.
func (u *user) sign(t *testing.T, c created, pn int, size int64) signed {
	t.Helper()
	var s signed
	if r := u.call(t, "GET", partPath(c, pn, size), nil, &s); r.Status != http.StatusOK {
		t.Fatalf("sign part %d as %s: %d %s", pn, u.sub, r.Status, r.Body)
	}
	return s
}

// put sends data to a presigned URL and returns the status and ETag.
// S3 may answer a refused signature before it has read the body and close
// the connection; the request is therefore written while the answer is
// read, as a browser does, so that the answer is seen either way.
func (d *directSetup) put(t *testing.T, s signed, data []byte) (int, string) {
	t.Helper()
	return d.putCut(t, s, data, len(data))
}

// putCut announces data but sends only its first n bytes before it closes
// the connection (n < len(data)), as a browser does when a page reloads
// mid-part; then it reports status 0.
func (d *directSetup) putCut(t *testing.T, s signed, data []byte, n int) (int, string) {
	t.Helper()
	u, err := url.Parse(s.URL)
	if err != nil {
		t.Fatal(err)
	}
	var conn net.Conn
	if u.Scheme == "https" {
		conn, err = tls.Dial("tcp", u.Host, d.s3c.Transport.(*http.Transport).TLSClientConfig)
	} else {
		conn, err = net.Dial("tcp", u.Host)
	}
	if err != nil {
		t.Fatalf("PUT to S3: %v", err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Minute))
	var head bytes.Buffer
	fmt.Fprintf(&head, "PUT %s HTTP/1.1\r\nHost: %s\r\nContent-Length: %d\r\nConnection: close\r\n", u.RequestURI(), u.Host, len(data))
	for k, v := range s.Headers {
		fmt.Fprintf(&head, "%s: %s\r\n", k, v)
	}
	head.WriteString("\r\n")
	if n < len(data) {
		_, _ = conn.Write(head.Bytes())
		_, _ = conn.Write(data[:n])
		return 0, ""
	}
	go func() {
		if _, err := conn.Write(head.Bytes()); err == nil {
			_, _ = conn.Write(data)
		}
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), &http.Request{Method: http.MethodPut})
	if err != nil {
		t.Fatalf("PUT to S3: reading the answer: %v", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, resp.Header.Get("ETag")
}

// uploadPart signs and sends one part, failing the test unless S3 stores
// it; it returns the part's ETag.
func (u *user) uploadPart(t *testing.T, c created, pn int, data []byte, bind bool) string {
	t.Helper()
	size := int64(-1)
	if bind {
		size = int64(len(data))
	}
	status, etag := u.d.put(t, u.sign(t, c, pn, size), data)
	if status != http.StatusOK || etag == "" {
		t.Fatalf("PUT part %d: %d, ETag %q", pn, status, etag)
	}
	return etag
}

// completedPart names a part for POST .../complete.
type completedPart struct {
	PartNumber int    `json:"PartNumber"`
	ETag       string `json:"ETag"`
}

func (u *user) complete(t *testing.T, c created, parts []completedPart) response {
	t.Helper()
	return u.call(t, "POST", uploadPath(c, "/complete"), map[string]any{"parts": parts}, nil)
}

// multipartGone reports whether S3 no longer has the upload.
func (d *directSetup) multipartGone(t *testing.T, c created) bool {
	t.Helper()
	_, err := d.b.s3.Client.ListParts(t.Context(), &s3.ListPartsInput{Bucket: aws.String(testBucket), Key: aws.String(c.Key), UploadId: aws.String(c.UploadID)})
	return err != nil && strings.Contains(err.Error(), "NoSuchUpload")
}

// directKey matches the keys tusgate gives direct uploads (no prefix).
var directKey = regexp.MustCompile(`^[a-z2-7]{26}/d-[0-9a-f]{32}$`)
