package testenv

import (
	"crypto/tls"
	"errors"
	"fmt"
	"html"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// FaultProxy is an HTTP reverse proxy in front of an S3 endpoint
// (127.0.0.1:<free port>) that can be told to fail requests.
//
// Point clients at URL (not at the target): the proxy forwards each request
// with its Host header unchanged, so the SigV4 signature the client computed
// for the proxy's host:port is the one the target verifies. Request and
// response bodies are streamed, never buffered.
type FaultProxy struct {
	URL string // http://127.0.0.1:PORT (https:// from NewTLSFaultProxy)

	rp *httputil.ReverseProxy

	mu    sync.Mutex
	down  bool
	every int64 // fail every n-th request; 0: never
	seq   int64 // requests counted since the last FailEvery
	match func(*http.Request) bool
	// refuse answers the requests it matches with its own error
	refuse *refusal
	// corrupt picks requests whose body is forwarded with one byte flipped
	corrupt func(*http.Request) bool
	rate    float64 // fail this fraction of requests at random
	rng     *rand.Rand
	// onForward sees each request before it is forwarded
	onForward func(*http.Request)
	// lose picks requests that are forwarded but whose answer is replaced
	// by a 503
	lose func(*http.Request) bool

	proxied, failed atomic.Int64
}

// NewFaultProxy starts a proxy on 127.0.0.1 forwarding to target (an http://
// or https:// base URL such as S3Server.Endpoint) and closes it when the test
// ends. An https target's certificate is not verified: the target is a local
// test server.
func NewFaultProxy(t testing.TB, target string) *FaultProxy {
	t.Helper()
	return newFaultProxy(t, target, nil)
}

// NewTLSFaultProxy is NewFaultProxy serving HTTPS (URL is https://…) with
// a throw-away certificate for 127.0.0.1; give clients CABundle (as
// AWS_CA_BUNDLE). Over HTTPS, aws-sdk-go-v2 streams unseekable bodies
// instead of hashing them first.
func NewTLSFaultProxy(t testing.TB, target string) (p *FaultProxy, caBundle string) {
	t.Helper()
	ca, cert, key := Certs(t)
	pair, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatalf("testenv: NewTLSFaultProxy: %v", err)
	}
	return newFaultProxy(t, target, &tls.Config{Certificates: []tls.Certificate{pair}}), ca
}

func newFaultProxy(t testing.TB, target string, serverTLS *tls.Config) *FaultProxy {
	t.Helper()
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		t.Fatalf("testenv: NewFaultProxy: target %q is not an http(s) URL (err: %v)", target, err)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.DisableCompression = true // pass Accept-Encoding and bodies through untouched
	tr.MaxIdleConnsPerHost = 64
	tr.TLSClientConfig = &tls.Config{InsecureSkipVerify: true} //nolint:gosec // loopback test server with a throw-away CA
	p := &FaultProxy{}
	p.rp = &httputil.ReverseProxy{
		Rewrite: func(r *httputil.ProxyRequest) {
			r.SetURL(u)
			r.Out.Host = r.In.Host // what the client signed
		},
		Transport: tr,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			writeS3Error(w, r, http.StatusBadGateway, "BadGateway", "testenv.FaultProxy: "+err.Error())
		},
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: NewFaultProxy: %v", err)
	}
	p.URL = "http://" + l.Addr().String()
	if serverTLS != nil {
		l = tls.NewListener(l, serverTLS)
		p.URL = "https://" + l.Addr().String()
	}
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 30 * time.Second}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(l) }()
	t.Cleanup(func() {
		_ = srv.Close()
		tr.CloseIdleConnections()
		if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("testenv: FaultProxy: %v", err)
		}
	})
	return p
}

// SetDown(true) makes every request answer 503 with an S3-style XML error
// body (<Error><Code>ServiceUnavailable</Code>…</Error>, Content-Type
// application/xml) without contacting the target; SetDown(false) resumes
// forwarding.
func (p *FaultProxy) SetDown(down bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.down = down
}

// FailEvery(n) makes every n-th request answer 503 (0 disables), counting
// from this call: the first request after it is never failed, then requests
// n, 2n, … are (n=1 fails all but the first). Safe for concurrent use.
func (p *FaultProxy) FailEvery(n int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.every, p.seq = int64(max(n, 0)), 0
}

// FailRandomly makes each request fail with probability rate (0 disables),
// drawn from a generator seeded with seed. Safe for concurrent use.
func (p *FaultProxy) FailRandomly(rate float64, seed uint64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.rate, p.rng = rate, rand.New(rand.NewPCG(seed, seed))
}

// FailMatching makes every request for which match returns true answer 503
// (nil disables). Safe for concurrent use.
func (p *FaultProxy) FailMatching(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.match = match
}

// refusal is an S3 error answer for the requests match picks.
type refusal struct {
	match     func(*http.Request) bool
	status    int
	code, msg string
}

// RefuseMatching makes every request for which match returns true answer
// status with an S3-style XML error document carrying code and msg (the
// same for HEAD, without the body), without contacting the target; nil
// match disables. It is checked before the other faults: FailMatching is
// the same with 503 ServiceUnavailable. Safe for concurrent use.
func (p *FaultProxy) RefuseMatching(match func(*http.Request) bool, status int, code, msg string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuse = nil
	if match != nil {
		p.refuse = &refusal{match: match, status: status, code: code, msg: msg}
	}
}

// CorruptMatching makes the proxy forward every request for which match
// returns true with byte 1000 of its body flipped (nil disables): a
// corruption in transit that only a checksum over the payload catches.
// Safe for concurrent use.
func (p *FaultProxy) CorruptMatching(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.corrupt = match
}

// LoseAnswerMatching makes the proxy forward every request for which match
// returns true, let the target carry it out, and answer the client 503 as
// if the target had failed (nil disables): an answer lost on the way back.
// Safe for concurrent use.
func (p *FaultProxy) LoseAnswerMatching(match func(*http.Request) bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lose = match
}

// OnForward makes the proxy call fn with each request it is about to
// forward (nil disables). fn runs on the request's goroutine: it may block,
// which holds the request back (its body unread) until fn returns. Safe for
// concurrent use.
func (p *FaultProxy) OnForward(fn func(*http.Request)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.onForward = fn
}

// corruptByte is the offset in a request body that CorruptMatching flips.
const corruptByte = 1000

// flipReader passes on r with the byte at offset corruptByte inverted.
type flipReader struct {
	r   io.ReadCloser
	off int64
}

func (f *flipReader) Read(p []byte) (int, error) {
	n, err := f.r.Read(p)
	if i := corruptByte - f.off; i >= 0 && i < int64(n) {
		p[i] ^= 0xff
	}
	f.off += int64(n)
	return n, err
}

func (f *flipReader) Close() error { return f.r.Close() }

// Counts returns how many requests were proxied to the target and how many
// were failed by the proxy.
func (p *FaultProxy) Counts() (proxied, failed int64) {
	return p.proxied.Load(), p.failed.Load()
}

// refused returns the refusal that answers r, if any.
func (p *FaultProxy) refused(r *http.Request) *refusal {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.refuse != nil && p.refuse.match(r) {
		return p.refuse
	}
	return nil
}

// shouldFail decides the fate of one request.
func (p *FaultProxy) shouldFail(r *http.Request) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.down || (p.match != nil && p.match(r)) {
		return true
	}
	if p.rate > 0 && p.rng.Float64() < p.rate {
		return true
	}
	if p.every <= 0 {
		return false
	}
	p.seq++
	return p.seq > 1 && p.seq%p.every == 0
}

// ServeHTTP forwards r to the target or fails it.
func (p *FaultProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if ref := p.refused(r); ref != nil {
		p.failed.Add(1)
		_, _ = io.Copy(io.Discard, r.Body) // see below
		writeS3Error(w, r, ref.status, ref.code, ref.msg)
		return
	}
	if !p.shouldFail(r) {
		p.proxied.Add(1)
		p.mu.Lock()
		corrupt := p.corrupt != nil && p.corrupt(r)
		lose := p.lose != nil && p.lose(r)
		onForward := p.onForward
		p.mu.Unlock()
		if onForward != nil {
			onForward(r)
		}
		if corrupt && r.Body != nil {
			r.Body = &flipReader{r: r.Body}
		}
		if lose {
			p.rp.ServeHTTP(httptest.NewRecorder(), r)
			writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable",
				"the answer was lost (fault injected by testenv.FaultProxy)")
			return
		}
		p.rp.ServeHTTP(w, r)
		return
	}
	p.failed.Add(1)
	// Read the whole body before answering, so the client gets the 503 and
	// not a connection reset in mid-upload. Answering early would rely on
	// "Expect: 100-continue", but aws-sdk-go-v2 sends that header on requests
	// whose Proto is unset, which makes net/http ignore it and stream the body
	// at once; answering without reading would then race with the upload.
	// (Reading also makes the server send "100 Continue" to clients that wait.)
	_, _ = io.Copy(io.Discard, r.Body)
	writeS3Error(w, r, http.StatusServiceUnavailable, "ServiceUnavailable",
		"Please reduce your request rate. (fault injected by testenv.FaultProxy)")
}

var requestIDs atomic.Int64

// writeS3Error answers with an S3-style XML error document.
func writeS3Error(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	id := fmt.Sprintf("TESTENV%010d", requestIDs.Add(1))
	body := `<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		"<Error><Code>" + code + "</Code><Message>" + html.EscapeString(msg) +
		"</Message><Resource>" + html.EscapeString(r.URL.Path) +
		"</Resource><RequestId>" + id + "</RequestId></Error>"
	h := w.Header()
	h.Set("Content-Type", "application/xml")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("X-Amz-Request-Id", id)
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = io.WriteString(w, body)
	}
}
