package testenv

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// A start that finds its port taken (an outgoing connection's local port
// between FreePort and tusgate's listen) is tried again until the port is
// free.
func TestGateStartRetriesWhilePortIsTaken(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	g := &Gate{
		t:       t,
		URL:     fmt.Sprintf("http://127.0.0.1:%d", port),
		args:    []string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--insecure-no-auth", "--data-dir", t.TempDir()},
		LogPath: filepath.Join(t.TempDir(), "tusgate.log"),
	}
	t.Cleanup(g.Kill)
	released := make(chan struct{})
	go func() {
		defer close(released)
		defer l.Close()
		deadline := time.Now().Add(time.Minute)
		for time.Now().Before(deadline) {
			if b, _ := os.ReadFile(g.LogPath); strings.Contains(string(b), "address already in use") {
				return
			}
			time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
		}
	}()
	g.Start()
	<-released
	if b, _ := os.ReadFile(g.LogPath); !strings.Contains(string(b), "address already in use") {
		t.Fatal("the first start did not find the port taken")
	}
	resp, err := http.Get(g.URL + "/healthz")
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("healthz after the retried start: %v %v", err, resp)
	}
	resp.Body.Close()
}
