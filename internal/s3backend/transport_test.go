package s3backend

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
)

// TestTransportKeepsConnections: after a burst of concurrent requests to
// S3, the connections stay open for the next burst instead of each new
// request paying for a TLS handshake.
func TestTransportKeepsConnections(t *testing.T) {
	const burst = 40 // more than the SDK's 10 idle connections per host
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
