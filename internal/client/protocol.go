package client

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Capabilities is what the server's OPTIONS answer announces.
type Capabilities struct {
	Extensions map[string]bool // Tus-Extension
	Checksums  map[string]bool // Tus-Checksum-Algorithm
	MaxSize    int64           // Tus-Max-Size, 0 if none
}

// checksumSHA256 tells whether chunks carry Upload-Checksum: the server
// has the checksum extension and takes sha256 (tus 1.0 checksum
// extension).
func (c Capabilities) checksumSHA256() bool {
	return c.Extensions["checksum"] && c.Checksums["sha256"]
}

func headerSet(v string) map[string]bool {
	m := map[string]bool{}
	for _, f := range strings.Split(v, ",") {
		if f = strings.ToLower(strings.TrimSpace(f)); f != "" {
			m[f] = true
		}
	}
	return m
}

// options asks the endpoint what it supports.
func (c *Client) options(ctx context.Context) (Capabilities, error) {
	resp, err := c.send(ctx, http.MethodOptions, c.endpoint.String(), nil, nil, 0)
	if err != nil {
		return Capabilities{}, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusNoContent {
		return Capabilities{}, statusError("OPTIONS", resp)
	}
	caps := Capabilities{
		Extensions: headerSet(resp.Header.Get("Tus-Extension")),
		Checksums:  headerSet(resp.Header.Get("Tus-Checksum-Algorithm")),
	}
	caps.MaxSize, _ = strconv.ParseInt(resp.Header.Get("Tus-Max-Size"), 10, 64)
	return caps, nil
}

// creation is what a POST creates.
type creation struct {
	length   int64             // -1: deferred
	metadata map[string]string // Upload-Metadata
	concat   string            // Upload-Concat: "partial", "final;URL URL…" or ""
}

// encodeMetadata renders Upload-Metadata (keys sorted for stable output).
func encodeMetadata(md map[string]string) string {
	keys := make([]string, 0, len(md))
	for k := range md {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, k+" "+base64.StdEncoding.EncodeToString([]byte(md[k])))
	}
	return strings.Join(parts, ",")
}

// create sends POST and returns the new upload's absolute URL.
func (c *Client) create(ctx context.Context, cr creation) (string, error) {
	h := http.Header{}
	switch {
	case strings.HasPrefix(cr.concat, "final;"):
		// A final upload's length is its partials'.
	case cr.length < 0:
		h.Set("Upload-Defer-Length", "1")
	default:
		h.Set("Upload-Length", strconv.FormatInt(cr.length, 10))
	}
	if cr.concat != "" {
		h.Set("Upload-Concat", cr.concat)
	}
	if len(cr.metadata) > 0 {
		h.Set("Upload-Metadata", encodeMetadata(cr.metadata))
	}
	resp, err := c.send(ctx, http.MethodPost, c.endpoint.String(), h, nil, 0)
	if err != nil {
		return "", err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusCreated {
		return "", statusError("POST", resp)
	}
	return c.resolve(resp.Header.Get("Location"))
}

// state is what HEAD tells of an upload.
type state struct {
	offset int64
	length int64 // -1 while deferred
}

// head reads an upload's offset and length.
func (c *Client) head(ctx context.Context, url string) (state, error) {
	resp, err := c.send(ctx, http.MethodHead, url, nil, nil, 0)
	if err != nil {
		return state{}, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return state{}, statusError("HEAD", resp)
	}
	st := state{length: -1}
	if st.offset, err = strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64); err != nil || st.offset < 0 {
		return state{}, permanent("HEAD: the server answered no valid Upload-Offset (%q)", resp.Header.Get("Upload-Offset"))
	}
	if v := resp.Header.Get("Upload-Length"); v != "" {
		if st.length, err = strconv.ParseInt(v, 10, 64); err != nil || st.length < 0 {
			return state{}, permanent("HEAD: the server answered an invalid Upload-Length (%q)", v)
		}
		if st.offset > st.length {
			return state{}, permanent("HEAD: the server answered an Upload-Offset of %d beyond its Upload-Length of %d", st.offset, st.length)
		}
	}
	return st, nil
}

// patch sends n bytes of u's source at offset and returns the new
// offset. declare ≥ 0 declares the upload's length (deferred until now)
// with this chunk. raw makes a fresh reader of the chunk's bytes.
func (c *Client) patch(ctx context.Context, u *upload, offset int64, raw func() io.Reader, n, declare int64) (int64, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/offset+octet-stream")
	h.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	if declare >= 0 {
		h.Set("Upload-Length", strconv.FormatInt(declare, 10))
	}
	if c.caps.checksumSHA256() {
		sum := sha256.New()
		if _, err := io.Copy(sum, raw()); err != nil {
			return 0, permanent("reading the chunk at %d: %w", offset, err)
		}
		h.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum.Sum(nil)))
	}
	// A body that stops moving (a dead connection) cancels the request.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(c.opts.StallTimeout, func() { cancel(errStalled) })
	defer stall.Stop()
	body := func() io.Reader {
		return &meteredBody{r: raw(), ctx: ctx, limiter: c.opts.Limiter, pos: u.pos, base: offset, n: n, stall: stall, stallAfter: c.opts.StallTimeout}
	}
	resp, err := c.send(ctx, http.MethodPatch, u.url, h, body, n)
	if err != nil {
		if cause := context.Cause(ctx); cause == errStalled {
			return 0, cause
		}
		return 0, err
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusNoContent && resp.StatusCode != http.StatusOK {
		return 0, statusError("PATCH", resp)
	}
	next, err := strconv.ParseInt(resp.Header.Get("Upload-Offset"), 10, 64)
	if err != nil || next < offset || next > offset+n {
		return 0, permanent("PATCH: the server answered an Upload-Offset of %q after %d bytes at %d", resp.Header.Get("Upload-Offset"), n, offset)
	}
	return next, nil
}

// remove sends DELETE (tus termination), for uploads this client no longer
// needs. Failures are ignored: the server expires what is left.
func (c *Client) remove(ctx context.Context, url string) {
	if resp, err := c.send(ctx, http.MethodDelete, url, nil, nil, 0); err == nil {
		drain(resp)
	}
}

// concatFinal is the Upload-Concat value of a final upload.
func concatFinal(urls []string) string {
	return "final;" + strings.Join(urls, " ")
}
