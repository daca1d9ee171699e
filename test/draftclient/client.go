// Package draftclient is a small client of the IETF resumable-upload draft
// (draft-ietf-httpbis-resumable-upload, interop versions 7 and 8), written
// from the draft's text for testing tusgate independently of its server
// code: it imports nothing of tusgate.
//
// It implements the draft's client side: upload creation with an
// Upload-Complete field, reading the 104 (Upload Resumption Supported)
// interim response (ignored unless it carries the interop version sent),
// offset retrieval with HEAD, upload append with PATCH and the
// application/partial-upload media type, and cancellation with DELETE;
// Structured Field parsing of Upload-Offset, Upload-Complete,
// Upload-Length and Upload-Limit (RFC 9651), and problem details
// (RFC 9457).
package draftclient

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"
	"sync"
)

// Client talks the draft to one server.
type Client struct {
	HTTP *http.Client // http.DefaultClient if nil
	// Version is the interop version sent in every request.
	Version string
	// Header is added to every request (e.g. Authorization).
	Header http.Header
	// OnInterim, if set, is told of each 104 the client accepts, while the
	// request content may still be on its way.
	OnInterim func(Interim)
}

// Limits are the members of an Upload-Limit field; a missing one is -1.
type Limits struct {
	MaxSize, MinSize, MaxAppendSize, MinAppendSize, MaxAge int64
}

// Interim is a 104 (Upload Resumption Supported) interim response.
type Interim struct {
	Header   http.Header
	Location string
	Limits   *Limits // nil without Upload-Limit
	Offset   int64   // -1 without Upload-Offset
}

// Response is a final response, with the draft's fields parsed.
type Response struct {
	Status   int
	Header   http.Header
	Body     []byte
	Location string // resolved against the request URL; "" if absent
	Offset   int64  // Upload-Offset; -1 if absent or invalid
	Complete *bool  // Upload-Complete; nil if absent or invalid
	Length   int64  // Upload-Length; -1 if absent or invalid
	Limits   *Limits
	// Interims are the 104 responses that carried the interop version
	// sent; Ignored counts those that did not (the draft tells clients to
	// ignore them).
	Interims []Interim
	Ignored  int
	// Problem is the problem details body, if the response has one.
	Problem map[string]any
}

// ProblemType returns the problem details' type, or "".
func (r *Response) ProblemType() string {
	s, _ := r.Problem["type"].(string)
	return s
}

// Options sends OPTIONS to target.
func (c *Client) Options(ctx context.Context, target string) (*Response, error) {
	return c.do(ctx, http.MethodOptions, target, nil, -1, nil)
}

// Create starts an upload at target with content (n bytes, or -1 if not
// known up front). complete says whether content is the whole
// representation; length, if not negative, is sent as Upload-Length.
func (c *Client) Create(ctx context.Context, target string, content io.Reader, n int64, complete bool, length int64, extra http.Header) (*Response, error) {
	h := http.Header{}
	h.Set("Upload-Complete", sfBool(complete))
	if length >= 0 {
		h.Set("Upload-Length", strconv.FormatInt(length, 10))
	}
	for k, vs := range extra {
		h[k] = vs
	}
	return c.do(ctx, http.MethodPost, target, content, n, h)
}

// Offset retrieves the upload's state with HEAD.
func (c *Client) Offset(ctx context.Context, upload string) (*Response, error) {
	return c.do(ctx, http.MethodHead, upload, nil, -1, nil)
}

// Append sends content (n bytes, or -1) at offset; complete says whether
// it ends the representation.
func (c *Client) Append(ctx context.Context, upload string, offset int64, content io.Reader, n int64, complete bool) (*Response, error) {
	h := http.Header{}
	h.Set("Content-Type", "application/partial-upload")
	h.Set("Upload-Offset", strconv.FormatInt(offset, 10))
	h.Set("Upload-Complete", sfBool(complete))
	return c.do(ctx, http.MethodPatch, upload, content, n, h)
}

// Cancel deletes the upload.
func (c *Client) Cancel(ctx context.Context, upload string) (*Response, error) {
	return c.do(ctx, http.MethodDelete, upload, nil, -1, nil)
}

// Resume finishes an upload of data after an interruption, as the draft
// describes: retrieve the offset, then append the rest from there in one
// request that completes it. The server may have stored less than was
// sent (the client backtracks), never more.
func (c *Client) Resume(ctx context.Context, upload string, data []byte) (*Response, error) {
	st, err := c.Offset(ctx, upload)
	if err != nil {
		return nil, err
	}
	if st.Status/100 != 2 || st.Offset < 0 {
		return st, fmt.Errorf("draftclient: offset retrieval answered %d, Upload-Offset %q", st.Status, st.Header.Get("Upload-Offset"))
	}
	if st.Offset > int64(len(data)) {
		// The draft: the upload then MUST be considered a failure.
		return st, fmt.Errorf("draftclient: the server's offset %d is past the %d bytes of the representation", st.Offset, len(data))
	}
	rest := data[st.Offset:]
	return c.Append(ctx, upload, st.Offset, strings.NewReader(string(rest)), int64(len(rest)), true)
}

// do sends one request and parses the answer. Interim responses are read
// as they come (httptrace), before the request content is sent in full.
func (c *Client) do(ctx context.Context, method, target string, content io.Reader, n int64, h http.Header) (*Response, error) {
	resp := &Response{}
	var mu sync.Mutex
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, hdr textproto.MIMEHeader) error {
		if code != 104 {
			return nil
		}
		mu.Lock()
		defer mu.Unlock()
		// The draft: ignore a 104 with a missing or mismatching interop
		// version.
		if v, ok := sfItem(http.Header(hdr), "Upload-Draft-Interop-Version"); !ok || v != c.Version {
			resp.Ignored++
			return nil
		}
		in := Interim{Header: http.Header(hdr).Clone(), Location: resolve(target, http.Header(hdr).Get("Location")), Offset: sfInt(http.Header(hdr), "Upload-Offset")}
		if l, ok := parseLimits(http.Header(hdr)); ok {
			in.Limits = &l
		}
		resp.Interims = append(resp.Interims, in)
		if c.OnInterim != nil {
			c.OnInterim(in)
		}
		return nil
	}}
	req, err := http.NewRequestWithContext(httptrace.WithClientTrace(ctx, trace), method, target, content)
	if err != nil {
		return nil, err
	}
	if content != nil && n >= 0 {
		req.ContentLength = n
		if n == 0 {
			req.Body = http.NoBody
		}
	} else if content != nil {
		req.ContentLength = -1
	}
	req.Header.Set("Upload-Draft-Interop-Version", c.Version)
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	for k, vs := range h {
		req.Header[k] = vs
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	res, err := hc.Do(req)
	mu.Lock()
	defer mu.Unlock()
	if err != nil {
		return resp, err // resp.Interims may name the upload to resume
	}
	defer res.Body.Close()
	resp.Body, err = io.ReadAll(io.LimitReader(res.Body, 1<<20))
	if err != nil {
		return resp, err
	}
	resp.Status, resp.Header = res.StatusCode, res.Header
	if loc := res.Header.Get("Location"); loc != "" {
		resp.Location = resolve(target, loc)
	}
	resp.Offset = sfInt(res.Header, "Upload-Offset")
	resp.Length = sfInt(res.Header, "Upload-Length")
	if b, ok := sfBoolean(res.Header, "Upload-Complete"); ok {
		resp.Complete = &b
	}
	if l, ok := parseLimits(res.Header); ok {
		resp.Limits = &l
	}
	if strings.HasPrefix(res.Header.Get("Content-Type"), "application/problem+json") {
		_ = json.Unmarshal(resp.Body, &resp.Problem)
	}
	return resp, nil
}

func resolve(base, ref string) string {
	if ref == "" {
		return ""
	}
	b, err1 := url.Parse(base)
	r, err2 := url.Parse(ref)
	if err := errors.Join(err1, err2); err != nil {
		return ref
	}
	return b.ResolveReference(r).String()
}

func sfBool(b bool) string {
	if b {
		return "?1"
	}
	return "?0"
}

// sfItem returns an Item field's bare item, without parameters.
func sfItem(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) != 1 {
		return "", false
	}
	v, _, _ := strings.Cut(strings.TrimSpace(vs[0]), ";")
	return v, v != ""
}

// sfBoolean parses a Boolean field; other values are ignored.
func sfBoolean(h http.Header, name string) (bool, bool) {
	v, ok := sfItem(h, name)
	switch {
	case ok && v == "?1":
		return true, true
	case ok && v == "?0":
		return false, true
	}
	return false, false
}

// sfInt parses a non-negative Integer field; -1 if absent or not one.
func sfInt(h http.Header, name string) int64 {
	v, ok := sfItem(h, name)
	if !ok || len(v) > 15 {
		return -1
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 || strings.HasPrefix(v, "+") {
		return -1
	}
	return n
}

// parseLimits parses Upload-Limit, a Dictionary: unknown keys are
// ignored; a known key with a value that is not an Integer makes the whole
// field ignored.
func parseLimits(h http.Header) (Limits, bool) {
	l := Limits{-1, -1, -1, -1, -1}
	v := strings.Join(h.Values("Upload-Limit"), ",")
	if strings.TrimSpace(v) == "" {
		return l, false
	}
	for member := range strings.SplitSeq(v, ",") {
		key, val, hasVal := strings.Cut(strings.TrimSpace(member), "=")
		val, _, _ = strings.Cut(val, ";")
		var dst *int64
		switch key {
		case "max-size":
			dst = &l.MaxSize
		case "min-size":
			dst = &l.MinSize
		case "max-append-size":
			dst = &l.MaxAppendSize
		case "min-append-size":
			dst = &l.MinAppendSize
		case "max-age":
			dst = &l.MaxAge
		default:
			continue
		}
		n, err := strconv.ParseInt(val, 10, 64)
		if !hasVal || err != nil || len(val) > 16 {
			return Limits{-1, -1, -1, -1, -1}, false
		}
		*dst = n
	}
	return l, true
}
