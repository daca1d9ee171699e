package main

import (
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"hash"
	"hash/crc32"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// newHTTPClient returns a client for up to conns simultaneous connections
// to one server, without compression or proxies.
func newHTTPClient(conns int, insecure bool) *http.Client {
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:     &tls.Config{InsecureSkipVerify: insecure},
			TLSHandshakeTimeout: 10 * time.Second,
			MaxIdleConns:        conns + 4,
			MaxIdleConnsPerHost: conns + 4,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			WriteBufferSize:     256 << 10,
			ReadBufferSize:      64 << 10,
		},
		// tus answers are never redirects; following one would resend no body.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// fetchDevToken asks tusgate's development issuer (--dev) for a token:
// POST username=USER to tokenURL, answer {"access_token": …}.
func fetchDevToken(ctx context.Context, hc *http.Client, tokenURL, user string) (string, error) {
	body := url.Values{"username": {user}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, tokenURL, strings.NewReader(body))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := hc.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("POST %s: %s: %s", tokenURL, resp.Status, snippet(b))
	}
	var tok struct {
		AccessToken string `json:"access_token"`
	}
	if err := json.Unmarshal(b, &tok); err != nil || tok.AccessToken == "" {
		return "", fmt.Errorf("POST %s: no access_token in %s", tokenURL, snippet(b))
	}
	return tok.AccessToken, nil
}

// TusClient is a minimal tus 1.0 client: creation (with upload), PATCH,
// HEAD and termination. It records every request's duration.
type TusClient struct {
	HC       *http.Client
	Endpoint *url.URL // creation URL
	Token    string   // bearer token; "" sends none
	Lat      *Latencies
	// Checksum, if set, is the algorithm of the Upload-Checksum sent with
	// every PATCH (tus's checksum extension).
	Checksum string
}

// Request kinds recorded in Latencies.
const (
	kindPOST     = "POST"       // creation without data
	kindPOSTData = "POST+data"  // creation-with-upload
	kindPATCH    = "PATCH"      // data
	kindHEAD     = "HEAD"       // offset
	kindPart     = "UploadPart" // direct S3
	kindFill     = "fill-PATCH" // the PATCH that fills an upload for --head-parts
)

// do sends req with the tus headers and returns the response with its body
// read (at most 4 KiB kept) and closed.
func (c *TusClient) do(req *http.Request, kind string) (*http.Response, []byte, error) {
	req.Header.Set("Tus-Resumable", "1.0.0")
	if c.Token != "" {
		req.Header.Set("Authorization", "Bearer "+c.Token)
	}
	start := time.Now()
	resp, err := c.HC.Do(req)
	if err != nil {
		return nil, nil, err
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<10))
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if c.Lat != nil && kind != "" {
		c.Lat.Add(kind, time.Since(start))
	}
	return resp, b, nil
}

// Create creates an upload of length bytes. With a non-nil body (n bytes)
// it is a creation-with-upload request. It returns the upload's absolute
// URL and the server's offset after the request.
func (c *TusClient) Create(ctx context.Context, length int64, name string, body io.Reader, n int64) (string, int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.Endpoint.String(), body)
	if err != nil {
		return "", 0, err
	}
	req.Header.Set("Upload-Length", strconv.FormatInt(length, 10))
	req.Header.Set("Upload-Metadata", "filename "+base64.StdEncoding.EncodeToString([]byte(name))+
		",filetype "+base64.StdEncoding.EncodeToString([]byte("application/octet-stream")))
	kind := kindPOST
	if body != nil {
		kind = kindPOSTData
		req.ContentLength = n
		req.Header.Set("Content-Type", "application/offset+octet-stream")
	}
	resp, b, err := c.do(req, kind)
	if err != nil {
		return "", 0, fmt.Errorf("POST: %w", err)
	}
	if resp.StatusCode != http.StatusCreated {
		return "", 0, fmt.Errorf("POST: %s: %s", resp.Status, snippet(b))
	}
	loc, err := c.Endpoint.Parse(resp.Header.Get("Location"))
	if err != nil || resp.Header.Get("Location") == "" {
		return "", 0, fmt.Errorf("POST: bad Location %q", resp.Header.Get("Location"))
	}
	var off int64
	if body != nil {
		if off, err = offsetOf(resp); err != nil {
			return loc.String(), 0, fmt.Errorf("POST: %w", err)
		}
	}
	return loc.String(), off, nil
}

// Patch sends n bytes from body at offset off and returns the new offset.
// With Checksum set, body must be an io.ReadSeeker: it is read once to
// hash it, then sent.
func (c *TusClient) Patch(ctx context.Context, loc string, off int64, body io.Reader, n int64, kind string) (int64, error) {
	var sum string
	if c.Checksum != "" {
		var err error
		if sum, err = uploadChecksum(c.Checksum, body.(io.ReadSeeker)); err != nil {
			return 0, err
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPatch, loc, body)
	if err != nil {
		return 0, err
	}
	if sum != "" {
		req.Header.Set("Upload-Checksum", sum)
	}
	req.ContentLength = n
	req.Header.Set("Upload-Offset", strconv.FormatInt(off, 10))
	req.Header.Set("Content-Type", "application/offset+octet-stream")
	resp, b, err := c.do(req, kind)
	if err != nil {
		return 0, fmt.Errorf("PATCH at %d: %w", off, err)
	}
	if resp.StatusCode != http.StatusNoContent {
		return 0, fmt.Errorf("PATCH at %d: %s: %s", off, resp.Status, snippet(b))
	}
	return offsetOf(resp)
}

// Head returns the server's offset of an upload.
func (c *TusClient) Head(ctx context.Context, loc string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodHead, loc, nil)
	if err != nil {
		return 0, err
	}
	resp, _, err := c.do(req, kindHEAD)
	if err != nil {
		return 0, fmt.Errorf("HEAD: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("HEAD: %s", resp.Status)
	}
	return offsetOf(resp)
}

// Delete terminates an upload (tus termination): the server removes its
// data from storage, finished or not.
func (c *TusClient) Delete(ctx context.Context, loc string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodDelete, loc, nil)
	if err != nil {
		return err
	}
	resp, b, err := c.do(req, "")
	if err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("DELETE: %s: %s", resp.Status, snippet(b))
	}
	return nil
}

func offsetOf(resp *http.Response) (int64, error) {
	h := resp.Header.Get("Upload-Offset")
	off, err := strconv.ParseInt(h, 10, 64)
	if err != nil || off < 0 {
		return 0, fmt.Errorf("bad Upload-Offset %q", h)
	}
	return off, nil
}

// snippet shortens a response body for an error message.
func snippet(b []byte) string {
	s := strings.TrimSpace(string(b))
	if len(s) > 200 {
		s = s[:200] + "…"
	}
	if s == "" {
		return "(empty body)"
	}
	return s
}

// uploadChecksum is the Upload-Checksum of body with alg; body is read and
// rewound.
func uploadChecksum(alg string, body io.ReadSeeker) (string, error) {
	var h hash.Hash
	switch alg {
	case "sha256":
		h = sha256.New()
	case "sha1":
		h = sha1.New()
	case "md5":
		h = md5.New()
	case "crc32":
		h = crc32.NewIEEE()
	default:
		return "", fmt.Errorf("--checksum %q: use sha256, sha1, md5 or crc32", alg)
	}
	if _, err := io.Copy(h, body); err != nil {
		return "", err
	}
	if _, err := body.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return alg + " " + base64.StdEncoding.EncodeToString(h.Sum(nil)), nil
}

// errOffset reports a server that accepted a different number of bytes.
var errOffset = errors.New("unexpected offset")

// upload sends one whole upload of size bytes whose data is the generator's
// stream from streamOff: POST (with the first chunk when withData), then
// PATCHes of chunk bytes (0: all in one). It returns the upload URL (if it
// was created) and the first error.
func (c *TusClient) upload(ctx context.Context, gen *Generator, name string, streamOff, size, chunk int64, withData bool) (string, error) {
	piece := func(off int64) int64 {
		if chunk <= 0 {
			return size - off
		}
		return min(chunk, size-off)
	}
	var loc string
	var off int64
	var err error
	if withData {
		n := piece(0)
		loc, off, err = c.Create(ctx, size, name, gen.Section(streamOff, n), n)
		if err == nil && off != n {
			err = fmt.Errorf("%w: POST with %d bytes left the offset at %d", errOffset, n, off)
		}
	} else {
		loc, _, err = c.Create(ctx, size, name, nil, 0)
	}
	for err == nil && off < size {
		n := piece(off)
		var got int64
		got, err = c.Patch(ctx, loc, off, gen.Section(streamOff+off, n), n, kindPATCH)
		if err == nil && got != off+n {
			err = fmt.Errorf("%w: PATCH of %d bytes at %d answered offset %d", errOffset, n, off, got)
		}
		off = got
	}
	return loc, err
}
