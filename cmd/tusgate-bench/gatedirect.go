package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"sync"
	"time"
)

// Request kinds of --gate-direct.
const (
	kindSign       = "sign"   // GET /s3/multipart/:uploadId/:partNumber
	kindDirectPart = "PUT"    // the part, straight to S3
	kindDirectAPI  = "create" // POST /s3/multipart and .../complete
)

// GateDirect uploads as a browser does with tusgate's direct uploads
// (--direct-uploads, docs/direct-uploads.md): tusgate creates the
// multipart upload and signs every part (with its size), the client PUTs
// the parts straight to S3, and tusgate completes the upload. The gateway
// then only signs; its CPU per GiB is what this mode measures.
type GateDirect struct {
	HC              *http.Client // to tusgate
	S3              *http.Client // to the presigned URLs
	Base            *url.URL     // tusgate's origin
	Token           string
	PartSize        int64
	PartConcurrency int
	Lat             *Latencies
}

// newS3HTTPClient is a client for presigned URLs, trusting AWS_CA_BUNDLE
// like the SDK does.
func newS3HTTPClient(conns int, insecure bool) (*http.Client, error) {
	hc := newHTTPClient(conns, insecure)
	if ca := os.Getenv("AWS_CA_BUNDLE"); ca != "" && !insecure {
		pem, err := os.ReadFile(ca)
		if err != nil {
			return nil, fmt.Errorf("AWS_CA_BUNDLE: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("AWS_CA_BUNDLE %s holds no certificate", ca)
		}
		hc.Transport.(*http.Transport).TLSClientConfig = &tls.Config{RootCAs: pool}
	}
	return hc, nil
}

// call sends a JSON request to a /s3/ route and decodes the answer.
func (g *GateDirect) call(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	u, err := g.Base.Parse(path)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, method, u.String(), rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+g.Token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := g.HC.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("%s %s: %d %s", method, path, resp.StatusCode, b)
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// Upload stores size bytes of the generator's stream from streamOff and
// returns the object's key; a failed upload is aborted.
func (g *GateDirect) Upload(ctx context.Context, gen *Generator, name string, streamOff, size int64) (string, error) {
	var created struct{ Key, UploadID string }
	t0 := time.Now()
	if err := g.call(ctx, http.MethodPost, "/s3/multipart", map[string]any{"filename": name, "type": "application/octet-stream", "size": size}, &created); err != nil {
		return "", err
	}
	g.Lat.Add(kindDirectAPI, time.Since(t0))
	// JSON names are uploadId and key; encoding/json matches them case-insensitively.
	q := "?key=" + url.QueryEscape(created.Key)
	base := "/s3/multipart/" + url.PathEscape(created.UploadID)
	nparts := max(int((size+g.PartSize-1)/g.PartSize), 1)
	type done struct {
		PartNumber int
		ETag       string
	}
	parts := make([]done, nparts)
	errs := make([]error, nparts)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(g.PartConcurrency, 1), nparts) {
		wg.Go(func() {
			for p := range next {
				off := int64(p) * g.PartSize
				n := min(g.PartSize, size-off)
				var signed struct {
					URL     string
					Headers map[string]string
				}
				t := time.Now()
				if err := g.call(ctx, http.MethodGet, base+"/"+strconv.Itoa(p+1)+q+"&size="+strconv.FormatInt(n, 10), nil, &signed); err != nil {
					errs[p] = err
					continue
				}
				g.Lat.Add(kindSign, time.Since(t))
				etag, err := g.put(ctx, signed.URL, signed.Headers, gen.Section(streamOff+off, n), n)
				if err != nil {
					errs[p] = fmt.Errorf("part %d: %w", p+1, err)
					continue
				}
				parts[p] = done{p + 1, etag}
			}
		})
	}
	for p := range nparts {
		next <- p
	}
	close(next)
	wg.Wait()
	err := errors.Join(errs...)
	if err == nil {
		t := time.Now()
		err = g.call(ctx, http.MethodPost, base+"/complete"+q, map[string]any{"parts": parts}, nil)
		g.Lat.Add(kindDirectAPI, time.Since(t))
	}
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_ = g.call(actx, http.MethodDelete, base+q, nil, nil)
		return "", err
	}
	return created.Key, nil
}

// put sends one part to its presigned URL and returns the ETag.
func (g *GateDirect) put(ctx context.Context, u string, headers map[string]string, body io.Reader, n int64) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, u, body)
	if err != nil {
		return "", err
	}
	req.ContentLength = n
	for k, v := range headers {
		req.Header.Set(k, v)
	}
	t := time.Now()
	resp, err := g.S3.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("S3 answered %d: %s", resp.StatusCode, msg)
	}
	g.Lat.Add(kindDirectPart, time.Since(t))
	return resp.Header.Get("ETag"), nil
}
