package integration

import (
	"encoding/base64"
	"mime"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// The finished S3 object carries the validated type, a Content-Disposition
// with the sanitised file name, and its owner, whatever the client sent.
func TestFinishedObjectMetadata(t *testing.T) {
	b, proxy := s3BehindProxy(t)
	// versitygw's posix backend keeps no storage class: observe what
	// tusgate asks for instead.
	var storageClass = make(chan string, 8)
	proxy.FailMatching(func(r *http.Request) bool {
		if r.Method == http.MethodPost && r.URL.Query().Has("uploads") {
			storageClass <- r.Header.Get("X-Amz-Storage-Class")
		}
		return false
	})
	a := startAuth(t, b, "--s3-storage-class", "REDUCED_REDUNDANCY")
	owner := "auth0|jürgen"
	tok := bearer(a.token(t, "rsa1", owner))
	b64 := func(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }
	rawName := "../../etc/Grüße \"quoted\"\nfinal.txt"
	wantName := "Grüße \"quoted\"final.txt"
	data, sum := payload(6*MiB, 60)
	r := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Length", strconv.Itoa(len(data)),
		"Upload-Metadata", "filename "+b64(rawName)+",filetype "+b64("Text/Plain; Charset=UTF-8")+",tusgate-owner "+b64("mallory")), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("POST: %d %s", r.Status, r.Body)
	}
	loc := r.Header.Get("Location")
	if p := do(t, "PATCH", loc, with(tok, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), strings.NewReader(string(data))); p.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", p.Status, p.Body)
	}
	b.assertStored(t, loc, sum, int64(len(data)))

	head, err := b.s3.Client.HeadObject(t.Context(), &s3.HeadObjectInput{Bucket: aws.String(testBucket), Key: aws.String(objectKey(uploadID(loc)))})
	if err != nil {
		t.Fatal(err)
	}
	if ct := aws.ToString(head.ContentType); ct != "text/plain; charset=UTF-8" {
		t.Errorf("Content-Type %q", ct)
	}
	cd := aws.ToString(head.ContentDisposition)
	disp, params, err := mime.ParseMediaType(cd)
	if err != nil || disp != "attachment" || params["filename"] != wantName {
		t.Errorf("Content-Disposition %q parses to %q %q (%v), want filename %q", cd, disp, params["filename"], err, wantName)
	}
	if strings.ContainsAny(cd, "\r\n") || strings.Contains(cd, "etc") {
		t.Errorf("Content-Disposition %q carries a path or a line break", cd)
	}
	var dec mime.WordDecoder
	got, err := dec.DecodeHeader(head.Metadata["tusgate-owner"])
	if err != nil || got != owner {
		t.Errorf("owner metadata %q decodes to %q (%v), want %q", head.Metadata["tusgate-owner"], got, err, owner)
	}
	if sc := <-storageClass; sc != "REDUCED_REDUNDANCY" {
		t.Errorf("CreateMultipartUpload asked for storage class %q", sc)
	}
}

// --s3-sse is sent on every object tusgate writes (.info, .part and the
// multipart upload), observed at the proxy.
func TestServerSideEncryptionRequested(t *testing.T) {
	b, proxy := s3BehindProxy(t, "--s3-sse", "AES256")
	seen := make(chan string, 64)
	proxy.FailMatching(func(r *http.Request) bool {
		if (r.Method == http.MethodPut && r.URL.Query().Get("partNumber") == "") || (r.Method == http.MethodPost && r.URL.Query().Has("uploads")) {
			seen <- r.URL.Path + " " + r.Header.Get("X-Amz-Server-Side-Encryption")
		}
		return false
	})
	g := b.start(t)
	data, _ := payload(7*MiB, 61)
	whole := append(append([]byte{}, data...), data[:2*MiB]...)
	loc := create(t, g, int64(len(whole)))
	if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d %s", r.Status, r.Body)
	}
	if r := patch(t, loc, int64(len(data)), data[:2*MiB]); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH 2: %d %s", r.Status, r.Body)
	}
	b.assertStored(t, loc, sha256Hex(whole), int64(len(whole)))
	close(seen)
	n := 0
	for s := range seen {
		n++
		if !strings.HasSuffix(s, " AES256") {
			t.Errorf("written without SSE: %s", s)
		}
	}
	if n < 3 { // multipart upload, .info, .part
		t.Fatalf("only %d object writes observed", n)
	}
}
