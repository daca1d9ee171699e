package s3backend

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"testing/iotest"
	"time"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// TestTransportKeepsConnections: after a burst of concurrent requests to
// S3, the connections stay open for the next burst instead of each new
// request paying for a TLS handshake.
func TestTransportKeepsConnections(t *testing.T) {
	// More than the SDK's 10 idle connections per host, and more than the
	// 256 uploads at once of the benchmarks (docs/benchmarks.md).
	const burst = 300
	var arrived sync.WaitGroup
	release := make(chan struct{})
	var opened atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		<-release // every request of the burst is in flight at once
		io.WriteString(w, "ok")
	}))
	srv.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			opened.Add(1)
		}
	}
	srv.StartTLS()
	defer srv.Close()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	c := tuneTransport(awshttp.NewBuildableClient().WithTransportOptions(func(tr *http.Transport) {
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
	}))

	for round := range 2 {
		opened.Store(0)
		arrived.Add(burst)
		var done sync.WaitGroup
		errs := make(chan error, burst)
		for range burst {
			done.Add(1)
			go func() {
				defer done.Done()
				req, _ := http.NewRequest(http.MethodGet, srv.URL, nil)
				resp, err := c.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK || string(b) != "ok" {
					errs <- &unexpected{resp.StatusCode, string(b)}
				}
			}()
		}
		arrived.Wait()
		close(release)
		done.Wait()
		close(errs)
		for err := range errs {
			t.Fatalf("round %d: %v", round, err)
		}
		release = make(chan struct{})
		if round == 1 && opened.Load() != 0 {
			t.Fatalf("the second burst of %d requests opened %d new connections, want 0 (all kept idle)", burst, opened.Load())
		}
	}
}

type unexpected struct {
	status int
	body   string
}

func (u *unexpected) Error() string {
	return "unexpected answer " + http.StatusText(u.status) + ": " + u.body
}

// errClientGone is a request body's error: its client went away.
var errClientGone = errors.New("the client went away")

// A request whose body is cut off ends its connection with a reset, over
// HTTPS and plain HTTP: the server's read fails, and never sees a clean
// end of the stream, which S3 servers have taken for a complete (short)
// part. The same holds when the kernel closes the socket of a killed
// process, and after the SDK replaced the transport's dialer, as
// s3.NewFromConfig does for any defaults mode but legacy.
func TestCutBodyEndsWithReset(t *testing.T) {
	for _, tc := range []struct {
		name            string
		https, redialed bool
	}{{"https", true, false}, {"http", false, false}, {"https, dialer replaced", true, true}, {"http, dialer replaced", false, true}} {
		https := tc.https
		t.Run(tc.name, func(t *testing.T) {
			got := make(chan error, 1)
			srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n, err := io.Copy(io.Discard, r.Body)
				got <- fmt.Errorf("after %d bytes: %w", n, err)
			}))
			base := awshttp.NewBuildableClient()
			if https {
				srv.StartTLS()
				pool := x509.NewCertPool()
				pool.AddCert(srv.Certificate())
				base = base.WithTransportOptions(func(tr *http.Transport) { tr.TLSClientConfig = &tls.Config{RootCAs: pool} })
			} else {
				srv.Start()
			}
			defer srv.Close()
			c := tuneTransport(base)
			if tc.redialed {
				c = c.(*awshttp.BuildableClient).WithDialerOptions(func(d *net.Dialer) { d.Timeout = 10 * time.Second })
			}
			const sent = 100 << 10
			body := io.MultiReader(bytes.NewReader(make([]byte, sent)), iotest.ErrReader(errClientGone))
			req, _ := http.NewRequest(http.MethodPut, srv.URL, body)
			req.ContentLength = 1 << 20
			if _, err := c.Do(req); !errors.Is(err, errClientGone) {
				t.Fatalf("request: %v, want the body's error", err)
			}
			err := <-got
			if !errors.Is(err, syscall.ECONNRESET) {
				t.Fatalf("the server's read of the body ended %v; want a connection reset", err)
			}
		})
	}
}
