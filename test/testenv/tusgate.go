package testenv

import (
	"bytes"
	"crypto/tls"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// Binary builds cmd/tusgate once per test process and returns its path.
func Binary(t testing.TB) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "tusgate-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "tusgate")
		cmd := exec.Command("go", "build", "-o", binPath, "./cmd/tusgate")
		cmd.Dir = RepoRoot(t)
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// Gate is one running tusgate process, started from the binary Binary builds.
type Gate struct {
	t       testing.TB
	URL     string // http://127.0.0.1:PORT (https with --tls-cert)
	args    []string
	env     []string
	LogPath string
	cmd     *exec.Cmd
	done    chan struct{}
	exitErr error
}

// StartGate starts tusgate with args (listen address and auth flag are
// added) and waits until /healthz answers.
func StartGate(t testing.TB, env []string, args ...string) *Gate {
	t.Helper()
	port := FreePort(t)
	scheme := "http"
	if slices.Contains(args, "--tls-cert") {
		scheme = "https"
	}
	g := &Gate{
		t:       t,
		URL:     fmt.Sprintf("%s://127.0.0.1:%d", scheme, port),
		args:    append([]string{"--listen", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "debug"}, args...),
		env:     env,
		LogPath: filepath.Join(t.TempDir(), "tusgate.log"),
	}
	if !slices.Contains(args, "--oidc-issuer") && !slices.Contains(args, "--dev") {
		g.args = append(g.args, "--insecure-no-auth")
	}
	g.Start()
	t.Cleanup(func() {
		g.Kill()
		if t.Failed() {
			t.Logf("tusgate log (%s):\n%s", g.LogPath, Tail(g.LogPath, 60))
		}
	})
	return g
}

// Start starts the process (again) with the same settings and waits until
// /healthz answers. Between FreePort (or a kill) and tusgate's listen,
// another process may take the port for a moment (an outgoing connection's
// local port); a start that fails for that is tried again.
func (g *Gate) Start() {
	g.t.Helper()
	for range 20 {
		if g.start() {
			return
		}
		time.Sleep(250 * time.Millisecond) // back-off before taking the port again
	}
	g.t.Fatalf("tusgate could not listen on %s: the port stayed in use:\n%s", g.URL, Tail(g.LogPath, 30))
}

// start starts the process once and waits until /healthz answers; it
// reports false if the process exited because its port was in use.
func (g *Gate) start() bool {
	g.t.Helper()
	logf, err := os.OpenFile(g.LogPath, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		g.t.Fatal(err)
	}
	logStart, err := logf.Seek(0, io.SeekEnd)
	if err != nil {
		g.t.Fatal(err)
	}
	cmd := exec.Command(Binary(g.t), g.args...)
	cmd.Env = append(os.Environ(), g.env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		g.t.Fatal(err)
	}
	g.cmd = cmd
	g.done = make(chan struct{})
	go func() {
		g.exitErr = cmd.Wait()
		logf.Close()
		close(g.done)
	}()
	return g.waitHealthy(logStart)
}

// waitHealthy waits until /healthz answers; it reports false if the
// process exited because its port was in use (its log from logStart says
// so).
func (g *Gate) waitHealthy(logStart int64) bool {
	g.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-g.done:
			if log, err := os.ReadFile(g.LogPath); err == nil && int64(len(log)) >= logStart && strings.Contains(string(log[logStart:]), "address already in use") {
				g.cmd = nil
				return false
			}
			g.t.Fatalf("tusgate exited during start-up (%v):\n%s", g.exitErr, Tail(g.LogPath, 30))
		default:
		}
		resp, err := healthClient.Get(g.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return true
			}
		}
		time.Sleep(20 * time.Millisecond) // polling a condition with a deadline
	}
	g.t.Fatalf("tusgate did not answer /healthz within 15s:\n%s", Tail(g.LogPath, 30))
	return false
}

// healthClient checks liveness only, so it does not verify test certificates.
// Its timeout ends a check that reached something other than tusgate on
// the port (which may never answer).
var healthClient = &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}

// Kill stops the process with SIGKILL (no chance to save anything).
func (g *Gate) Kill() {
	if g.cmd == nil {
		return
	}
	_ = g.cmd.Process.Signal(syscall.SIGKILL)
	<-g.done
	g.cmd = nil
}

// Terminate sends SIGTERM and waits for the process to exit.
func (g *Gate) Terminate(timeout time.Duration) {
	g.t.Helper()
	if err := g.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		g.t.Fatal(err)
	}
	select {
	case <-g.done:
	case <-time.After(timeout):
		g.t.Fatalf("tusgate did not exit within %v of SIGTERM", timeout)
	}
	g.cmd = nil
}

// Restart starts the process again on the same address with the same settings.
func (g *Gate) Restart() {
	g.t.Helper()
	if g.cmd != nil {
		g.Kill()
	}
	g.Start()
}

// Log returns everything the process logged so far.
func (g *Gate) Log() string { return readFile(g.LogPath) }

// PID is the running tusgate's process ID (0 when it is not running).
func (g *Gate) PID() int {
	if g.cmd == nil || g.cmd.Process == nil {
		return 0
	}
	return g.cmd.Process.Pid
}

func readFile(p string) string {
	b, _ := os.ReadFile(p)
	return string(b)
}

// Tail returns the last n lines of the file at p.
func Tail(p string, n int) string {
	lines := strings.Split(strings.TrimRight(readFile(p), "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

// RunGate runs tusgate to completion (for start-up failures) and returns its
// exit code and output.
func RunGate(t testing.TB, env []string, args ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(Binary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	done := make(chan error, 1)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode(), out.String()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0, out.String()
	case <-time.After(30 * time.Second):
		_ = cmd.Process.Kill()
		t.Fatalf("tusgate did not exit within 30s:\n%s", out.String())
		return 0, ""
	}
}
