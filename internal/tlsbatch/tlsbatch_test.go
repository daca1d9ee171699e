package tlsbatch

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// countingConn counts the writes that reach the socket.
type countingConn struct {
	net.Conn
	writes *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	c.writes.Add(1)
	return c.Conn.Write(p)
}

// countingDial dials TCP and counts the socket writes of every connection.
func countingDial(writes *atomic.Int64) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return countingConn{c, writes}, nil
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// hashServer answers every POST with the SHA-256 of its body.
func hashServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil || n != r.ContentLength {
			http.Error(w, "short body", http.StatusBadRequest)
			return
		}
		io.WriteString(w, hex.EncodeToString(h.Sum(nil)))
	}))
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func dialerFor(srv *httptest.Server, writes *atomic.Int64) *Dialer {
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	return &Dialer{Config: &tls.Config{RootCAs: pool}, DialContext: countingDial(writes), HandshakeTimeout: 5 * time.Second}
}

// onlyReader hides a reader's other methods (bytes.Reader's WriteTo), as the
// AWS SDK's body wrappers do, so that net/http copies through ReadFrom.
type onlyReader struct{ io.Reader }

func TestTransportBodies(t *testing.T) {
	srv := hashServer(t)
	var writes atomic.Int64
	d := dialerFor(srv, &writes)
	client := &http.Client{Transport: &http.Transport{DialTLSContext: d.DialTLSContext}}
	for i, n := range []int{0, 1, 16 << 10, 16<<10 + 1, ChunkSize - 1, ChunkSize, ChunkSize + 1, 3<<20 + 12345} {
		body := randomBytes(n, uint64(i+1))
		writes.Store(0)
		var r io.Reader = http.NoBody
		if n > 0 {
			r = onlyReader{bytes.NewReader(body)}
		}
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/", r)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(n)
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("%d bytes: %v", n, err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != sum(body) {
			t.Fatalf("%d bytes: status %d, server hashed %q, want %q", n, resp.StatusCode, got, sum(body))
		}
		if resp.ProtoMajor != 1 {
			t.Errorf("%d bytes: %s; want HTTP/1.1", n, resp.Proto)
		}
		// Unbatched, every 16 KiB record is a write of its own.
		if limit := int64(n/ChunkSize + 4); n > ChunkSize && writes.Load() > limit {
			t.Errorf("%d bytes took %d socket writes, want at most %d (one per %d KiB)", n, writes.Load(), limit, ChunkSize>>10)
		}
	}
}

// echo accepts TLS connections and copies what each receives back.
func echoServer(t *testing.T) (addr string, cert *x509.Certificate) {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil)
	srv.StartTLS() // only for its certificate
	cfg := srv.TLS.Clone()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", cfg)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); srv.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), srv.Certificate()
}

func TestWriteAndReadFrom(t *testing.T) {
	addr, cert := echoServer(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	var writes atomic.Int64
	d := &Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "example.com"}, DialContext: countingDial(&writes)}
	c, err := d.DialTLSContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	conn := c.(*Conn)

	want := randomBytes(5<<20+7, 42)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(c, int64(len(want))))
		got <- b
	}()
	writes.Store(0)
	half := len(want) / 2
	if n, err := conn.Write(want[:half]); err != nil || n != half {
		t.Fatalf("Write = %d, %v; want %d, nil", n, err, half)
	}
	if n, err := conn.ReadFrom(onlyReader{bytes.NewReader(want[half:])}); err != nil || n != int64(len(want)-half) {
		t.Fatalf("ReadFrom = %d, %v; want %d, nil", n, err, len(want)-half)
	}
	if b := <-got; sum(b) != sum(want) {
		t.Fatalf("echoed %d bytes with SHA-256 %s, want %d bytes with %s", len(b), sum(b), len(want), sum(want))
	}
	if limit := int64(len(want)/ChunkSize + 4); writes.Load() > limit {
		t.Errorf("%d bytes took %d socket writes, want at most %d", len(want), writes.Load(), limit)
	}
}

func TestCertificateIsVerified(t *testing.T) {
	srv := hashServer(t)
	addr := strings.TrimPrefix(srv.URL, "https://")
	// No roots: the test server's certificate is not trusted.
	d := &Dialer{}
	if c, err := d.DialTLSContext(context.Background(), "tcp", addr); err == nil {
		c.Close()
		t.Fatal("dialled a server with an untrusted certificate")
	} else if !errors.As(err, new(*tls.CertificateVerificationError)) {
		t.Fatalf("error %v; want a certificate verification error", err)
	}
	// Trusted roots, wrong name.
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	d = &Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "not-the-server.invalid"}}
	if c, err := d.DialTLSContext(context.Background(), "tcp", addr); err == nil {
		c.Close()
		t.Fatal("dialled a server whose certificate names another host")
	}
}

func TestHandshakeTimeout(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			accepted <- c // never answers the handshake
		}
	}()
	d := &Dialer{HandshakeTimeout: 100 * time.Millisecond}
	_, err = d.DialTLSContext(context.Background(), "tcp", ln.Addr().String())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("error %v; want the handshake timeout (context.DeadlineExceeded)", err)
	}
	(<-accepted).Close()
}

// sealingBody writes itself to a Sealer, as s3stream's part bodies do. It
// scribbles over every run once Seal returns: what reaches the server must
// be what was sealed, not what the memory holds later.
type sealingBody struct {
	data []byte
	off  int  // data[:off] was written
	sent bool // WriteTo was given a Sealer
}

func (b *sealingBody) Read(p []byte) (int, error) {
	return 0, errors.New("sealingBody: Read used instead of WriteTo")
}

func (b *sealingBody) WriteTo(w io.Writer) (int64, error) {
	if b.off == len(b.data) {
		return 0, nil // net/http looks for bytes beyond Content-Length
	}
	s, ok := w.(Sealer)
	if !ok {
		return 0, fmt.Errorf("WriteTo got a %T, not a Sealer", w)
	}
	b.sent = true
	var n int64
	for b.off < len(b.data) {
		p := b.data[b.off:min(b.off+ChunkSize, len(b.data))]
		if err := s.Seal(p); err != nil {
			return n, err
		}
		clear(p)
		b.off += len(p)
		n += int64(len(p))
		if err := s.Send(); err != nil {
			return n, err
		}
	}
	return n, nil
}

// Bodies that implement io.WriterTo reach the server whole, in few socket
// writes, whether they seal their bytes themselves or only Write them.
func TestTransportBodiesThatWriteThemselves(t *testing.T) {
	srv := hashServer(t)
	var writes atomic.Int64
	d := dialerFor(srv, &writes)
	client := &http.Client{Transport: &http.Transport{DialTLSContext: d.DialTLSContext}}
	post := func(body io.Reader, n int) (*http.Response, error) {
		req, err := http.NewRequest(http.MethodPost, srv.URL+"/", body)
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = int64(n)
		return client.Do(req)
	}
	for i, n := range []int{1, ChunkSize, 3<<20 + 5} {
		want := randomBytes(n, uint64(100+i))
		for _, kind := range []string{"sealing", "bytes.Reader"} {
			var body io.Reader = bytes.NewReader(bytes.Clone(want))
			sb := &sealingBody{data: bytes.Clone(want)}
			if kind == "sealing" {
				body = sb
			}
			writes.Store(0)
			resp, err := post(body, n)
			if err != nil {
				t.Fatalf("%s body of %d bytes: %v", kind, n, err)
			}
			got, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK || string(got) != sum(want) {
				t.Fatalf("%s body of %d bytes: status %d, server hashed %q, want %q", kind, n, resp.StatusCode, got, sum(want))
			}
			if kind == "sealing" && !sb.sent {
				t.Fatalf("%d bytes: the body was not handed a Sealer", n)
			}
			if limit := int64(n/ChunkSize + 4); writes.Load() > limit {
				t.Errorf("%s body of %d bytes took %d socket writes, want at most %d", kind, n, writes.Load(), limit)
			}
		}
	}
}

// TestReadFromStopsAtTheLimit: a body that writes more than net/http's
// limit (its Content-Length) gets ErrBodyTooLong, and not a byte beyond the
// limit reaches the connection, where it would become the start of the next
// request.
func TestReadFromStopsAtTheLimit(t *testing.T) {
	addr, cert := echoServer(t)
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	d := &Dialer{Config: &tls.Config{RootCAs: pool, ServerName: "example.com"}}
	c, err := d.DialTLSContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	data := randomBytes(ChunkSize+10, 7)
	limit := int64(ChunkSize)
	want := append(bytes.Clone(data[:limit]), "next request"...)
	got := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(io.LimitReader(c, int64(len(want))))
		got <- b
	}()
	n, err := c.(*Conn).ReadFrom(&io.LimitedReader{R: &sealingBody{data: data}, N: limit})
	if !errors.Is(err, ErrBodyTooLong) || n != limit {
		t.Fatalf("ReadFrom = %d, %v; want %d, ErrBodyTooLong", n, err, limit)
	}
	if _, err := c.Write([]byte("next request")); err != nil {
		t.Fatal(err)
	}
	if b := <-got; !bytes.Equal(b, want) {
		t.Fatalf("the connection carried %d bytes (SHA-256 %s), want the %d of the limit and then the next request", len(b), sum(b), limit)
	}
}

// A new connection resumes the TLS session of an earlier one, so that it
// skips the certificate's signatures (the server's, and the client's check
// of the chain's): a gateway opens many connections to S3 when uploads
// come in bursts.
func TestNewConnectionsResumeSessions(t *testing.T) {
	var resumed []bool
	var mu sync.Mutex
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		resumed = append(resumed, r.TLS.DidResume)
		mu.Unlock()
		io.WriteString(w, "ok")
	}))
	srv.StartTLS()
	t.Cleanup(srv.Close)
	var writes atomic.Int64
	tr := &http.Transport{DialTLSContext: dialerFor(srv, &writes).DialTLSContext}
	client := &http.Client{Transport: tr}
	for range 3 {
		resp, err := client.Get(srv.URL + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections() // the next request dials anew
	}
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{false, true, true}; !slices.Equal(resumed, want) {
		t.Errorf("sessions resumed: %v, want %v", resumed, want)
	}
}
