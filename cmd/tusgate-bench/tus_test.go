package main

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeTus is a minimal in-memory tus server for the client's tests.
type fakeTus struct {
	t        *testing.T
	mu       sync.Mutex
	uploads  map[string]*fakeUpload
	next     int
	token    string // required bearer token; "" for none
	failPOST int    // answer 500 to POSTs with this 1-based number
	posts    int
	requests map[string]int
}

type fakeUpload struct {
	length int64
	data   bytes.Buffer
	name   string
}

func newFakeTus(t *testing.T) (*fakeTus, *httptest.Server) {
	f := &fakeTus{t: t, uploads: map[string]*fakeUpload{}, requests: map[string]int{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	return f, srv
}

func (f *fakeTus) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r.URL.Path == "/token" {
		if err := r.ParseForm(); err != nil || r.PostForm.Get("username") == "" {
			http.Error(w, "no username", http.StatusBadRequest)
			return
		}
		fmt.Fprintf(w, `{"access_token":"tok-%s","token_type":"Bearer"}`, r.PostForm.Get("username"))
		return
	}
	f.requests[r.Method]++
	if r.Header.Get("Tus-Resumable") != "1.0.0" {
		http.Error(w, "no Tus-Resumable", http.StatusPreconditionFailed)
		return
	}
	if f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "unauthorized", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Tus-Resumable", "1.0.0")
	if r.Method == http.MethodPost && r.URL.Path == "/files/" {
		f.posts++
		if f.posts == f.failPOST {
			http.Error(w, "injected failure", http.StatusInternalServerError)
			return
		}
		n, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
		if err != nil {
			http.Error(w, "bad Upload-Length", http.StatusBadRequest)
			return
		}
		f.next++
		id := fmt.Sprintf("u%d", f.next)
		u := &fakeUpload{length: n, name: r.Header.Get("Upload-Metadata")}
		f.uploads[id] = u
		if r.ContentLength > 0 {
			if r.Header.Get("Content-Type") != "application/offset+octet-stream" {
				http.Error(w, "bad Content-Type", http.StatusBadRequest)
				return
			}
			io.Copy(&u.data, r.Body)
			w.Header().Set("Upload-Offset", strconv.Itoa(u.data.Len()))
		}
		w.Header().Set("Location", "owner/"+id) // relative, as a proxy might send
		w.WriteHeader(http.StatusCreated)
		return
	}
	id, ok := strings.CutPrefix(r.URL.Path, "/files/owner/")
	u := f.uploads[id]
	if !ok || u == nil {
		http.NotFound(w, r)
		return
	}
	switch r.Method {
	case http.MethodHead:
		w.Header().Set("Upload-Offset", strconv.Itoa(u.data.Len()))
		w.Header().Set("Upload-Length", strconv.FormatInt(u.length, 10))
	case http.MethodPatch:
		if r.Header.Get("Upload-Offset") != strconv.Itoa(u.data.Len()) {
			http.Error(w, "offset mismatch", http.StatusConflict)
			return
		}
		io.Copy(&u.data, r.Body)
		if int64(u.data.Len()) > u.length {
			http.Error(w, "too long", http.StatusRequestEntityTooLarge)
			return
		}
		w.Header().Set("Upload-Offset", strconv.Itoa(u.data.Len()))
		w.WriteHeader(http.StatusNoContent)
	case http.MethodDelete:
		delete(f.uploads, id)
		w.WriteHeader(http.StatusNoContent)
	default:
		http.Error(w, "method", http.StatusMethodNotAllowed)
	}
}

// runJSON runs the command and decodes its --json result.
func runJSON(t *testing.T, args ...string) (int, Result, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(append(args, "--json"), &out, &errb)
	var res Result
	if code <= 1 {
		if err := json.Unmarshal(out.Bytes(), &res); err != nil {
			t.Fatalf("exit %d, output %q: %v (stderr: %s)", code, out.String(), err, errb.String())
		}
	}
	return code, res, errb.String()
}

func TestUploadsAreTheGeneratedStream(t *testing.T) {
	for _, c := range []struct {
		name string
		args []string
		// requests expected per upload
		posts, patches int
	}{
		{"one PATCH", []string{"--chunk", "0"}, 1, 1},
		{"chunked", []string{"--chunk", "100KiB"}, 1, 3},
		{"creation-with-upload, all in the POST", []string{"--creation-with-upload"}, 1, 0},
		{"creation-with-upload, chunked", []string{"--creation-with-upload", "--chunk", "100KiB"}, 1, 2},
	} {
		t.Run(c.name, func(t *testing.T) {
			f, srv := newFakeTus(t)
			args := append([]string{"--endpoint", srv.URL + "/files/", "--uploads", "5", "--size", "250KiB",
				"--concurrency", "3", "--keep", "--seed", "9", "--label", "fake"}, c.args...)
			code, res, stderr := runJSON(t, args...)
			if code != 0 || res.Errors != 0 {
				t.Fatalf("exit %d, %d errors: %s", code, res.Errors, stderr)
			}
			if res.Bytes != 5*250<<10 || res.Uploads != 5 || res.Label != "fake" || res.MBPerS <= 0 {
				t.Errorf("result %+v", res)
			}
			if f.requests["POST"] != 5*c.posts || f.requests["PATCH"] != 5*c.patches {
				t.Errorf("requests %v, want %d POST and %d PATCH", f.requests, 5*c.posts, 5*c.patches)
			}
			gen := NewGenerator(9)
			seen := map[string]bool{}
			for id, u := range f.uploads {
				if u.data.Len() != 250<<10 {
					t.Fatalf("upload %s has %d bytes", id, u.data.Len())
				}
				// The name says which upload it was: bench-00000I.bin.
				var i int64
				for j := range int64(5) {
					if strings.Contains(u.name, base64.StdEncoding.EncodeToString([]byte(fmt.Sprintf("bench-%06d.bin", j)))) {
						i = j
					}
				}
				want := make([]byte, 250<<10)
				gen.ReadAt(want, i*250<<10)
				if !bytes.Equal(u.data.Bytes(), want) {
					t.Errorf("upload %s (%d) is not the generated stream", id, i)
				}
				seen[u.data.String()[:64]] = true
			}
			if len(seen) != 5 {
				t.Errorf("%d distinct uploads, want 5", len(seen))
			}
		})
	}
}

func TestTokenCleanupAndFailures(t *testing.T) {
	f, srv := newFakeTus(t)
	f.token = "tok-bench"
	f.failPOST = 2
	code, res, stderr := runJSON(t, "--endpoint", srv.URL+"/files/", "--token-url", srv.URL+"/token",
		"--uploads", "4", "--size", "10KiB", "--concurrency", "1")
	if code != 1 || res.Errors != 1 || res.Bytes != 3*10<<10 {
		t.Fatalf("exit %d, result %+v; want exit 1 with 1 failed upload (stderr: %s)", code, res, stderr)
	}
	if !strings.Contains(res.FirstError, "injected failure") || !strings.Contains(stderr, "injected failure") {
		t.Errorf("first error %q, stderr %q: want the server's message", res.FirstError, stderr)
	}
	if len(f.uploads) != 0 {
		t.Errorf("%d uploads left after the run, want all deleted", len(f.uploads))
	}
	if f.requests["DELETE"] != 3 {
		t.Errorf("%d DELETEs, want 3", f.requests["DELETE"])
	}

	// Without the token every upload fails.
	code, res, _ = runJSON(t, "--endpoint", srv.URL+"/files/", "--uploads", "2", "--size", "1KiB")
	if code != 1 || res.Errors != 2 || !strings.Contains(res.FirstError, "401") {
		t.Errorf("without a token: exit %d, result %+v", code, res)
	}
}

func TestHeadMode(t *testing.T) {
	f, srv := newFakeTus(t)
	code, res, stderr := runJSON(t, "--endpoint", srv.URL+"/files/", "--head-parts", "4", "--head-part-size", "16KiB",
		"--heads", "50", "--concurrency", "2", "--pid", strconv.Itoa(os.Getpid()))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, stderr)
	}
	if res.Mode != "head" || res.Heads != 50 || res.HeadPartCount != 4 || res.Bytes != 64<<10 || res.Errors != 0 {
		t.Errorf("result %+v", res)
	}
	if f.requests["HEAD"] != 50 || f.requests["PATCH"] != 1 {
		t.Errorf("requests %v, want 50 HEAD and 1 PATCH", f.requests)
	}
	if res.ServerCPU == nil || res.PeakRSSMiB == nil || res.CPUPerGiB != nil {
		t.Errorf("server usage: cpu %v rss %v cpu/GiB %v; want cpu and rss only", res.ServerCPU, res.PeakRSSMiB, res.CPUPerGiB)
	}
	if len(f.uploads) != 0 {
		t.Error("the HEAD upload was not deleted")
	}
	if !strings.Contains(stderr, "50 HEADs on an upload of 4 parts") {
		t.Errorf("summary line missing: %s", stderr)
	}
}

func TestFlagErrors(t *testing.T) {
	for _, args := range [][]string{
		{},
		{"--s3-direct"},
		{"--endpoint", "ftp://x/files/"},
		{"--endpoint", "http://x/files/", "--size", "lots"},
		{"--endpoint", "http://x/files/", "--uploads", "0"},
		{"--endpoint", "http://x/files/", "--pid", "1", "--metrics", "http://x/metrics"},
		{"--endpoint", "http://x/files/", "stray"},
	} {
		var out, errb bytes.Buffer
		if code := run(args, &out, &errb); code != 2 {
			t.Errorf("run(%q) = %d, want 2", args, code)
		}
	}
	o, err := parseFlags([]string{"--endpoint", "http://127.0.0.1:9/files/", "--uploads", "8", "--size", "128MiB", "--concurrency", "8", "--chunk", "16MiB"}, io.Discard)
	if err != nil {
		t.Fatal(err)
	}
	if o.size != 128<<20 || o.chunk != 16<<20 || o.label != "127.0.0.1:9" || o.scenario != "8x128MiB c8 chunk 16MiB" {
		t.Errorf("options %+v", o)
	}
}
