package client

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fakeTus is a small in-memory tus 1.0 server: creation, defer-length,
// concatenation, termination, and checksum when asked to.
type fakeTus struct {
	t   *testing.T
	srv *httptest.Server

	extensions string // Tus-Extension
	algorithms string // Tus-Checksum-Algorithm ("" for none)
	token      string // required bearer token ("" for none)
	// finished are headers of HEAD answers for finished uploads (the
	// object's checksums, as tusgate reports them).
	finished map[string]string

	mu       sync.Mutex
	uploads  map[string]*fakeUpload
	next     int
	created  int
	received int64    // PATCH body bytes read
	requests []string // "METHOD path"
	// fail, if set, may answer a request itself (returning true).
	fail func(w http.ResponseWriter, r *http.Request, n int) bool
	nreq int
}

type fakeUpload struct {
	data     []byte
	length   int64 // -1: deferred
	partial  bool
	final    bool
	metadata string
	checksum []string // Upload-Checksum headers seen
}

func newFakeTus(t *testing.T) *fakeTus {
	f := &fakeTus{t: t, uploads: map[string]*fakeUpload{},
		extensions: "creation,creation-defer-length,termination,concatenation"}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeTus) endpoint() string { return f.srv.URL + "/files/" }

func (f *fakeTus) upload(url string) *fakeUpload {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.uploads[strings.TrimPrefix(url, f.srv.URL+"/files/")]
}

func (f *fakeTus) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	f.nreq++
	n := f.nreq
	f.requests = append(f.requests, r.Method+" "+r.URL.Path)
	fail := f.fail
	f.mu.Unlock()
	if fail != nil && fail(w, r, n) {
		return
	}
	if r.Method != http.MethodOptions && f.token != "" && r.Header.Get("Authorization") != "Bearer "+f.token {
		http.Error(w, "bad token", http.StatusUnauthorized)
		return
	}
	w.Header().Set("Tus-Resumable", "1.0.0")
	id := strings.TrimPrefix(r.URL.Path, "/files/")
	switch r.Method {
	case http.MethodOptions:
		w.Header().Set("Tus-Extension", f.extensions)
		if f.algorithms != "" {
			w.Header().Set("Tus-Checksum-Algorithm", f.algorithms)
		}
		w.WriteHeader(http.StatusNoContent)
	case http.MethodPost:
		f.create(w, r)
	case http.MethodHead:
		f.mu.Lock()
		u := f.uploads[id]
		var offset int
		var length int64
		if u != nil {
			offset, length = len(u.data), u.length // a PATCH may be writing them
		}
		f.mu.Unlock()
		if u == nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Upload-Offset", strconv.Itoa(offset))
		if int64(offset) == length {
			for k, v := range f.finished {
				w.Header().Set(k, v)
			}
		}
		if length >= 0 {
			w.Header().Set("Upload-Length", strconv.FormatInt(length, 10))
		} else {
			w.Header().Set("Upload-Defer-Length", "1")
		}
		w.WriteHeader(http.StatusOK)
	case http.MethodPatch:
		f.patch(w, r, id)
	case http.MethodDelete:
		f.mu.Lock()
		delete(f.uploads, id)
		f.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}
}

func (f *fakeTus) create(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	u := &fakeUpload{length: -1, metadata: r.Header.Get("Upload-Metadata")}
	concat := r.Header.Get("Upload-Concat")
	switch {
	case strings.HasPrefix(concat, "final;"):
		u.final = true
		for _, p := range strings.Fields(strings.TrimPrefix(concat, "final;")) {
			pu := f.uploads[p[strings.LastIndex(p, "/")+1:]]
			if pu == nil || int64(len(pu.data)) != pu.length {
				http.Error(w, "partial not finished", http.StatusBadRequest)
				return
			}
			u.data = append(u.data, pu.data...)
		}
		u.length = int64(len(u.data))
	case r.Header.Get("Upload-Defer-Length") == "1":
	default:
		l, err := strconv.ParseInt(r.Header.Get("Upload-Length"), 10, 64)
		if err != nil {
			http.Error(w, "bad length", http.StatusBadRequest)
			return
		}
		u.length = l
		u.partial = concat == "partial"
	}
	f.next++
	f.created++
	id := strconv.Itoa(f.next)
	f.uploads[id] = u
	w.Header().Set("Location", "/files/"+id) // relative, as some servers answer
	w.WriteHeader(http.StatusCreated)
}

func (f *fakeTus) patch(w http.ResponseWriter, r *http.Request, id string) {
	body, err := io.ReadAll(r.Body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.received += int64(len(body))
	u := f.uploads[id]
	if u == nil {
		http.NotFound(w, r)
		return
	}
	off, _ := strconv.ParseInt(r.Header.Get("Upload-Offset"), 10, 64)
	if off != int64(len(u.data)) {
		http.Error(w, "offset mismatch", http.StatusConflict)
		return
	}
	if err != nil { // cut off: keep what arrived, as tusd does without checksums
		u.data = append(u.data, body...)
		return
	}
	if cs := r.Header.Get("Upload-Checksum"); cs != "" {
		u.checksum = append(u.checksum, cs)
		sum := sha256.Sum256(body)
		if cs != "sha256 "+base64.StdEncoding.EncodeToString(sum[:]) {
			w.WriteHeader(460)
			return
		}
	}
	if l := r.Header.Get("Upload-Length"); l != "" {
		if u.length >= 0 {
			http.Error(w, "length already known", http.StatusBadRequest)
			return
		}
		u.length, _ = strconv.ParseInt(l, 10, 64)
	}
	if u.length >= 0 && int64(len(u.data)+len(body)) > u.length {
		http.Error(w, "too long", http.StatusRequestEntityTooLarge)
		return
	}
	u.data = append(u.data, body...)
	w.Header().Set("Upload-Offset", strconv.Itoa(len(u.data)))
	w.WriteHeader(http.StatusNoContent)
}

// counts returns uploads created and PATCH bytes received.
func (f *fakeTus) counts() (int, int64) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.created, f.received
}

func (f *fakeTus) requestLog() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return strings.Join(f.requests, "\n")
}

func (u *fakeUpload) String() string {
	return fmt.Sprintf("upload of %d/%d bytes", len(u.data), u.length)
}
