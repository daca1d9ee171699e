package integration

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

// cliHome is a user's private directories for the client: its resume
// records (XDG_STATE_HOME) and tokens (XDG_CONFIG_HOME).
type cliHome struct {
	state, config string
}

func newCLIHome(t *testing.T) cliHome {
	t.Helper()
	d := t.TempDir()
	return cliHome{state: filepath.Join(d, "state"), config: filepath.Join(d, "config")}
}

func (h cliHome) env(extra ...string) []string {
	return append([]string{"XDG_STATE_HOME=" + h.state, "XDG_CONFIG_HOME=" + h.config, "HOME=" + filepath.Dir(h.state),
		"TUSGATE_TOKEN=", "TUSGATE_ENDPOINT="}, extra...)
}

// records lists the resume record files left.
func (h cliHome) records(t *testing.T) []string {
	t.Helper()
	var out []string
	_ = filepath.WalkDir(h.state, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// cliEvent is one JSON progress line of the client.
type cliEvent struct {
	Event   string  `json:"event"`
	File    string  `json:"file"`
	URL     string  `json:"url"`
	Offset  int64   `json:"offset"`
	Size    *int64  `json:"size"`
	Rate    float64 `json:"rate"`
	Message string  `json:"message"`
	Error   string  `json:"error"`
	// Checksums (done): the object's, by algorithm.
	Checksums map[string]string `json:"checksums"`
}

// cliRun is one run of a client command (tusgate upload or login).
type cliRun struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	stdout bytes.Buffer
	lines  []string // standard error, line by line
	more   chan struct{}
	done   chan struct{}
	code   int
}

// startCLI runs the tusgate binary as a client with args.
func startCLI(t *testing.T, env []string, stdin io.Reader, args ...string) *cliRun {
	t.Helper()
	r := &cliRun{more: make(chan struct{}, 1), done: make(chan struct{})}
	r.cmd = exec.Command(testenv.Binary(t), args...)
	r.cmd.Env = append(os.Environ(), env...)
	r.cmd.Stdin = stdin
	r.cmd.Stdout = &lockedWriter{mu: &r.mu, w: &r.stdout}
	errPipe, err := r.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := r.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(errPipe)
		for sc.Scan() {
			r.mu.Lock()
			r.lines = append(r.lines, sc.Text())
			r.mu.Unlock()
			select {
			case r.more <- struct{}{}:
			default:
			}
		}
		err := r.cmd.Wait()
		r.code = 0
		if ee, ok := err.(*exec.ExitError); ok {
			r.code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				r.code = -int(ws.Signal())
			}
		}
		close(r.done)
	}()
	t.Cleanup(func() {
		_ = r.cmd.Process.Kill()
		<-r.done
	})
	return r
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

// wait waits for the run to end and returns its exit code.
func (r *cliRun) wait(t *testing.T, timeout time.Duration) int {
	t.Helper()
	select {
	case <-r.done:
		return r.code
	case <-time.After(timeout):
		t.Fatalf("the client did not finish within %v; its output:\n%s", timeout, r.output())
		return 0
	}
}

// kill ends the client with SIGKILL, as a crash or power loss would.
func (r *cliRun) kill() {
	_ = r.cmd.Process.Signal(syscall.SIGKILL)
	<-r.done
}

func (r *cliRun) output() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return "stdout:\n" + r.stdout.String() + "stderr:\n" + strings.Join(r.lines, "\n")
}

// urls are the URLs the client printed on standard output, a line each.
func (r *cliRun) urls() []string {
	var urls []string
	for _, l := range r.stdoutLines() {
		urls = append(urls, strings.Fields(l)[0])
	}
	return urls
}

// checksums are the object checksums printed after each URL
// ("crc32=<base64>"), by algorithm, a map per line.
func (r *cliRun) checksums() []map[string]string {
	var out []map[string]string
	for _, l := range r.stdoutLines() {
		sums := map[string]string{}
		for _, f := range strings.Fields(l)[1:] {
			alg, v, _ := strings.Cut(f, "=")
			sums[alg] = v
		}
		out = append(out, sums)
	}
	return out
}

func (r *cliRun) stdoutLines() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var lines []string
	for l := range strings.Lines(r.stdout.String()) {
		if l = strings.TrimSpace(l); l != "" {
			lines = append(lines, l)
		}
	}
	return lines
}

// events parses the JSON lines of standard error.
func (r *cliRun) events() []cliEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []cliEvent
	for _, l := range r.lines {
		var e cliEvent
		if json.Unmarshal([]byte(l), &e) == nil && e.Event != "" {
			out = append(out, e)
		}
	}
	return out
}

// waitFor waits until a line of standard error satisfies ok, and returns it.
func (r *cliRun) waitFor(t *testing.T, timeout time.Duration, what string, ok func(line string) bool) string {
	t.Helper()
	deadline := time.After(timeout)
	seen := 0
	for {
		r.mu.Lock()
		lines := r.lines[seen:]
		seen = len(r.lines)
		r.mu.Unlock()
		for _, l := range lines {
			if ok(l) {
				return l
			}
		}
		select {
		case <-r.more:
		case <-r.done:
			r.mu.Lock()
			left := len(r.lines) > seen
			r.mu.Unlock()
			if !left {
				t.Fatalf("the client ended (exit %d) before %s:\n%s", r.code, what, r.output())
			}
		case <-deadline:
			t.Fatalf("no %s within %v:\n%s", what, timeout, r.output())
		}
	}
}

// waitOffset waits until a progress event reports at least n bytes.
func (r *cliRun) waitOffset(t *testing.T, n int64, timeout time.Duration) {
	t.Helper()
	r.waitFor(t, timeout, fmt.Sprintf("progress past %d bytes", n), func(l string) bool {
		var e cliEvent
		return json.Unmarshal([]byte(l), &e) == nil && e.Event == "progress" && e.Offset >= n
	})
}

// writeData writes data to a new file and returns its path.
func writeData(t *testing.T, name string, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}
