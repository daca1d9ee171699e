// Package client is the tus 1.0 client of the tusgate command line: it
// sends files (or a stream of unknown length) to a tus server in chunks,
// resumes uploads across runs from records kept by package resume, sends
// big files in several streams with tus concatenation, and retries what a
// retry can fix (package backoff).
package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/tusgate/tusgate/internal/client/backoff"
	"github.com/tusgate/tusgate/internal/client/progress"
	"github.com/tusgate/tusgate/internal/client/resume"
)

// Auth gives the bearer token of each request.
type Auth interface {
	// Token returns the token to send ("" for none), refreshed ahead of
	// its expiry where the source can.
	Token(ctx context.Context) (string, error)
	// Refresh returns a new token after the server refused rejected (401).
	Refresh(ctx context.Context, rejected string) (string, error)
}

// Options configure a Client.
type Options struct {
	// Endpoint is the tus creation URL, e.g. http://127.0.0.1:8080/files/.
	Endpoint string
	// Auth gives tokens; nil sends none.
	Auth Auth
	// HTTPClient sends the requests; nil uses NewHTTPClient().
	HTTPClient *http.Client
	// ChunkSize is the largest PATCH body (default DefaultChunkSize).
	ChunkSize int64
	// Streams is how many partial uploads a big file is sent in at once
	// (tus concatenation; default 1).
	Streams int
	// Retry is the back-off policy.
	Retry backoff.Policy
	// Records keeps resume records; nil keeps none (nothing resumes
	// across runs).
	Records *resume.Store
	// Sink is told what happens; nil tells no one.
	Sink progress.Sink
	// Limiter caps the rate of all request bodies together; nil: no cap.
	Limiter *rate.Limiter
	// StallTimeout ends a request whose body has not moved for this long
	// (default 60s), so that a dead connection is noticed and retried.
	StallTimeout time.Duration
	// UserAgent is sent with every request.
	UserAgent string
}

// DefaultChunkSize is the default PATCH body size.
const DefaultChunkSize = 64 << 20

// minPartialSize is the smallest partial upload a file is split into:
// S3 copies parts of at least 5 MiB server-side when it concatenates.
const minPartialSize = 5 << 20

// Client sends uploads to one tus endpoint. It is safe for concurrent use.
type Client struct {
	opts     Options
	endpoint *url.URL
	http     *http.Client
	sink     progress.Sink
	caps     Capabilities // from OPTIONS, read once before any upload
}

// New checks the options and returns a client.
func New(opts Options) (*Client, error) {
	u, err := url.Parse(opts.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("endpoint %q is not an http(s) URL", opts.Endpoint)
	}
	if opts.ChunkSize <= 0 {
		opts.ChunkSize = DefaultChunkSize
	}
	if opts.Streams <= 0 {
		opts.Streams = 1
	}
	if opts.StallTimeout <= 0 {
		opts.StallTimeout = 60 * time.Second
	}
	c := &Client{opts: opts, endpoint: u, http: opts.HTTPClient, sink: opts.Sink}
	if c.http == nil {
		c.http = NewHTTPClient()
	}
	if c.sink == nil {
		c.sink = nopSink{}
	}
	return c, nil
}

// NewHTTPClient returns an HTTP client for uploads: no overall time limit
// (a chunk may take long), but limits on connecting and on waiting for an
// answer once a body is sent.
func NewHTTPClient() *http.Client {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = 5 * time.Minute
	tr.MaxIdleConnsPerHost = 64
	return &http.Client{Transport: tr}
}

// StatusError is an answer with an unexpected status.
type StatusError struct {
	Method        string
	Status        int
	Text          string // the start of the body, one line
	RetryAfter    time.Duration
	HasRetryAfter bool
}

func (e *StatusError) Error() string {
	s := fmt.Sprintf("%s: %d %s", e.Method, e.Status, http.StatusText(e.Status))
	if e.Status == backoff.StatusChecksumMismatch {
		s = fmt.Sprintf("%s: %d Checksum Mismatch", e.Method, e.Status)
	}
	if e.Text != "" {
		s += ": " + e.Text
	}
	if e.Status == http.StatusUnauthorized {
		s += " (the token was refused: run tusgate login, or check --token / TUSGATE_TOKEN)"
	}
	return s
}

// statusError reads an unexpected answer into a StatusError.
func statusError(method string, resp *http.Response) *StatusError {
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
	text := strings.TrimSpace(string(body))
	if i := strings.IndexAny(text, "\r\n"); i >= 0 {
		text = text[:i]
	}
	if len(text) > 200 {
		text = text[:200] + "…"
	}
	e := &StatusError{Method: method, Status: resp.StatusCode, Text: text}
	e.RetryAfter, e.HasRetryAfter = backoff.ParseRetryAfter(resp.Header.Get("Retry-After"), time.Now())
	return e
}

// errPermanent marks errors no retry can fix (e.g. a token that cannot be
// refreshed).
var errPermanent = errors.New("permanent")

type permanentError struct{ err error }

func (e permanentError) Error() string        { return e.err.Error() }
func (e permanentError) Unwrap() []error      { return []error{e.err, errPermanent} }
func permanent(format string, a ...any) error { return permanentError{fmt.Errorf(format, a...)} }

// send sends one request. body makes a fresh body for each try (nil: no
// body). A 401 refreshes the token once and sends the request again.
func (c *Client) send(ctx context.Context, method, target string, hdr http.Header, body func() io.Reader, length int64) (*http.Response, error) {
	refreshed := false
	for {
		req, err := http.NewRequestWithContext(ctx, method, target, nil)
		if err != nil {
			return nil, permanentError{err}
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		req.Header.Set("Tus-Resumable", "1.0.0")
		if c.opts.UserAgent != "" {
			req.Header.Set("User-Agent", c.opts.UserAgent)
		}
		if body != nil {
			req.ContentLength = length
			req.Body = io.NopCloser(body())
			if length == 0 {
				req.Body = http.NoBody
			}
		}
		var tok string
		if c.opts.Auth != nil {
			if tok, err = c.opts.Auth.Token(ctx); err != nil {
				return nil, permanent("%s: %w", method, err)
			}
			if tok != "" {
				req.Header.Set("Authorization", "Bearer "+tok)
			}
		}
		resp, err := c.http.Do(req)
		if err != nil {
			return nil, err
		}
		if resp.StatusCode != http.StatusUnauthorized || c.opts.Auth == nil || refreshed || tok == "" {
			return resp, nil
		}
		drain(resp)
		refreshed = true
		if _, err := c.opts.Auth.Refresh(ctx, tok); err != nil {
			return nil, permanent("%s: 401 Unauthorized, and the token cannot be refreshed: %w", method, err)
		}
	}
}

// drain reads a little of an answer's body, so that the connection can
// be reused, and closes it.
func drain(resp *http.Response) {
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
}

// resolve makes a Location absolute, relative to the endpoint.
func (c *Client) resolve(loc string) (string, error) {
	u, err := c.endpoint.Parse(loc)
	if err != nil || loc == "" {
		return "", fmt.Errorf("the server answered an unusable Location %q", loc)
	}
	return u.String(), nil
}

type nopSink struct{}

func (nopSink) Start(*progress.Tracker)                       {}
func (nopSink) Notice(*progress.Tracker, string)              {}
func (nopSink) Retry(*progress.Tracker, error, time.Duration) {}
func (nopSink) Done(*progress.Tracker)                        {}
func (nopSink) Fail(*progress.Tracker, error)                 {}
func (nopSink) Close()                                        {}
