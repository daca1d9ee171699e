package integration

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/testenv"
)

// cluster is n tusgate instances sharing one bucket and one Redis.
type cluster struct {
	b     *backend
	redis *testenv.Redis
	gates []*gate
}

func startCluster(t *testing.T, n int, extra ...string) *cluster {
	t.Helper()
	b := s3Backend(t)
	r := testenv.StartRedis(t)
	c := &cluster{b: b, redis: r}
	for range n {
		// Each instance has its own data and temp dir, as on its own host.
		args := append([]string{"--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", t.TempDir(), "--redis-url", r.URL()}, extra...)
		c.gates = append(c.gates, startGate(t, b.env, args...))
	}
	return c
}

// on rewrites an upload URL to reach instance g.
func on(g *gate, url string) string {
	_, rest, _ := strings.Cut(url, "/files/")
	return g.URL + "/files/" + rest
}

// shortLease makes a killed holder's lock expire soon; a short lease needs
// a short --shutdown-timeout, whose third is the save reserve it must cover.
var shortLease = []string{"--redis-lock-lease", "5s", "--shutdown-timeout", "3s"}

func TestClusterEveryRequestOnAnotherInstance(t *testing.T) {
	c := startCluster(t, 3, shortLease...)
	data, sum := payload(512*MiB, 50)
	loc := create(t, c.gates[0], int64(len(data)))
	alive := []*gate{c.gates[0], c.gates[1], c.gates[2]}
	offset, killed := int64(0), false
	for i := 0; offset < int64(len(data)); i++ {
		headOn, patchOn := alive[i%len(alive)], alive[(i+1)%len(alive)]
		if off := headOffset(t, on(headOn, loc)); !killed && off != offset {
			t.Fatalf("HEAD on another instance: offset %d, want %d", off, offset)
		} else {
			offset = off
		}
		end := min(offset+64*MiB, int64(len(data)))
		if i == 3 && !killed {
			// SIGKILL the instance serving this PATCH half-way through it.
			body := newCountingReader(bytes.NewReader(data[offset:end]), 30*MiB, false)
			errc := make(chan error, 1)
			go func() {
				_, err := tryDo(t.Context(), "PATCH", on(patchOn, loc), with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)), body, end-offset)
				errc <- err
			}()
			<-body.reached
			patchOn.Kill()
			<-errc
			killed = true
			var rest []*gate
			for _, g := range alive {
				if g != patchOn {
					rest = append(rest, g)
				}
			}
			alive = rest
			continue // the next HEAD, on a survivor, waits out the dead holder's lease
		}
		if r := patch(t, on(patchOn, loc), offset, data[offset:end]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		offset = end
	}
	if !killed {
		t.Fatal("no instance was killed; the test proves less than it claims")
	}
	c.b.assertStored(t, loc, sum, int64(len(data)))
}

// A PATCH stalled on one instance (a dropped client) is released when the
// client resumes through another instance.
func TestClusterStalePatchReleasedByResumeElsewhere(t *testing.T) {
	c := startCluster(t, 2)
	data, sum := payload(24*MiB, 51)
	loc := create(t, c.gates[0], int64(len(data)))
	body := newCountingReader(bytes.NewReader(data), 12*MiB, true)
	defer close(body.release)
	go func() {
		_, _ = tryDo(t.Context(), "PATCH", on(c.gates[0], loc), with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
	}()
	<-body.reached
	start := time.Now()
	off := headOffset(t, on(c.gates[1], loc)) // waits for the release
	if took := time.Since(start); took > 10*time.Second {
		t.Fatalf("resume HEAD on the other instance took %v", took)
	}
	// How much of the 12 MiB sent the released PATCH had read depends on
	// the socket buffers (4.8 MiB once, under load): whatever it was, it
	// was saved, and no more than was sent.
	if off <= 0 || off > 12*MiB {
		t.Fatalf("offset after release %d, want the saved bytes (more than 0, at most 12 MiB)", off)
	}
	if r := patch(t, on(c.gates[1], loc), off, data[off:]); r.Status != http.StatusNoContent {
		t.Fatalf("resume: %d %s", r.Status, r.Body)
	}
	c.b.assertStored(t, loc, sum, int64(len(data)))
}

// An instance SIGKILLed mid-PATCH: its lock lease expires and the client
// resumes through another instance.
func TestClusterInstanceKilledMidPatch(t *testing.T) {
	c := startCluster(t, 2, shortLease...)
	data, sum := payload(48*MiB, 52)
	loc := create(t, c.gates[0], int64(len(data)))
	body := newCountingReader(bytes.NewReader(data), 20*MiB, false)
	errc := make(chan error, 1)
	go func() {
		_, err := tryDo(t.Context(), "PATCH", on(c.gates[0], loc), with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
		errc <- err
	}()
	<-body.reached
	c.gates[0].Kill()
	<-errc
	attempts := uploadResumably(t, on(c.gates[1], loc), data, int64(len(data)), 50)
	t.Logf("resumed on the other instance after %d requests", attempts)
	c.b.assertStored(t, loc, sum, int64(len(data)))
}

// Two clients racing PATCHes through different instances never corrupt the
// upload; the loser gets a retryable answer.
func TestClusterRacingPatches(t *testing.T) {
	c := startCluster(t, 2)
	data, sum := payload(32*MiB, 53)
	loc := create(t, c.gates[0], int64(len(data)))
	statuses := make(chan int, 2)
	for i := range 2 {
		go func() {
			r, err := tryDo(t.Context(), "PATCH", on(c.gates[i], loc), with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data), int64(len(data)))
			if err != nil {
				statuses <- -1
				return
			}
			statuses <- r.Status
		}()
	}
	for range 2 {
		switch s := <-statuses; s {
		case http.StatusNoContent, http.StatusConflict, http.StatusServiceUnavailable, http.StatusLocked, -1:
		default:
			t.Fatalf("racing PATCH answered %d: not a success nor retryable", s)
		}
	}
	// Whatever happened, a resuming client finishes with the right bytes.
	uploadResumably(t, on(c.gates[1], loc), data, int64(len(data)), 50)
	c.b.assertStored(t, loc, sum, int64(len(data)))
}

func TestClusterRedisOutage(t *testing.T) {
	c := startCluster(t, 2)
	data, sum := payload(12*MiB, 54)
	loc := create(t, c.gates[0], int64(len(data)))
	if r := patch(t, on(c.gates[1], loc), 0, data[:6*MiB]); r.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d", r.Status)
	}
	c.redis.Stop()
	h := do(t, "HEAD", on(c.gates[0], loc), tusHeaders, nil)
	if h.Status != http.StatusLocked || h.Header.Get("Retry-After") == "" {
		t.Fatalf("HEAD with Redis down: %d Retry-After %q; want 423 (never 5xx on HEAD)", h.Status, h.Header.Get("Retry-After"))
	}
	p := patch(t, on(c.gates[1], loc), 6*MiB, data[6*MiB:])
	if p.Status != http.StatusServiceUnavailable || p.Header.Get("Retry-After") == "" {
		t.Fatalf("PATCH with Redis down: %d %q", p.Status, p.Body)
	}
	cr := do(t, "POST", c.gates[0].URL+"/files/", with(tusHeaders, "Upload-Length", "5", "Content-Type", "application/offset+octet-stream"), strings.NewReader("hello"))
	if cr.Status != http.StatusServiceUnavailable || cr.Header.Get("Retry-After") == "" {
		t.Fatalf("POST with data with Redis down: %d", cr.Status)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r := do(t, "GET", c.gates[0].URL+"/readyz", nil, nil)
		if r.Status == http.StatusServiceUnavailable && r.Body == "redis: unavailable\n" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("readyz with Redis down: %d %q", r.Status, r.Body)
		}
		time.Sleep(100 * time.Millisecond) // polling a condition with a deadline
	}
	c.redis.Start()
	uploadResumably(t, on(c.gates[0], loc), data, int64(len(data)), 100)
	c.b.assertStored(t, loc, sum, int64(len(data)))
	if off := headOffset(t, on(c.gates[1], loc)); off != int64(len(data)) {
		t.Fatalf("offset after recovery: %d", off)
	}
}

// A lock lease too short for the locker's safety rule is a start-up error
// (exit 2) that says what to set, before Redis is even asked.
func TestRedisLockLeaseCheckedAtStart(t *testing.T) {
	code, out := runGate(t, nil, "--insecure-no-auth", "--listen", "127.0.0.1:0", "--data-dir", t.TempDir(),
		"--redis-url", "redis://127.0.0.1:1/0", "--redis-lock-lease", "3s")
	if code != 2 || !strings.Contains(out, "--redis-lock-lease 3s is too short") || !strings.Contains(out, "set --redis-lock-lease to at least 14s") {
		t.Fatalf("exit %d\n%s", code, out)
	}
}
