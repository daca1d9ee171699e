package integration

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/tusgate/tusgate/test/draftclient"
)

// The IETF resumable-upload draft's interop versions 7 and 8, through
// tusgate with authentication on, on S3 and on disk, driven by a client
// written from the draft's text (test/draftclient).

const (
	problemMismatchingOffset  = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
	problemInconsistentLength = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
)

// cutReader yields data[:cut] and then fails, as a connection that drops
// mid-request: the client gives up on the request. If wait is set, it
// sends nothing before wait is closed.
type cutReader struct {
	data []byte
	cut  int
	wait <-chan struct{}
	off  int
}

var errCut = errors.New("connection cut")

func (r *cutReader) Read(p []byte) (int, error) {
	if r.wait != nil {
		<-r.wait
		r.wait = nil
	}
	if r.off >= r.cut {
		return 0, errCut
	}
	n := copy(p, r.data[r.off:r.cut])
	r.off += n
	return n, nil
}

// draftUser is the draft client of one user of a tusgate with
// authentication on.
func draftUser(c *confGate, version string) *draftclient.Client {
	return &draftclient.Client{Version: version, Header: http.Header{"Authorization": {c.h["Authorization"]}}}
}

func isTrue(b *bool) bool  { return b != nil && *b }
func isFalse(b *bool) bool { return b != nil && !*b }

func TestIETFDraftInterop(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b, "--max-size", "1GiB", "--upload-ttl", "2h")
		endpoint := c.g.URL + "/files/"
		for _, version := range []string{"7", "8"} {
			t.Run("v"+version, func(t *testing.T) {
				dc := draftUser(c, version)
				ctx := t.Context()

				// OPTIONS announces the limits.
				r, err := dc.Options(ctx, endpoint)
				if err != nil || r.Status/100 != 2 || r.Limits == nil || r.Limits.MinSize != 0 || r.Limits.MaxSize != 1<<30 || r.Limits.MaxAge != 7200 {
					t.Fatalf("OPTIONS: %v %+v, limits %+v", err, r, r.Limits)
				}

				t.Run("optimistic creation in one request", func(t *testing.T) {
					data, sum := payload(7*MiB+5, 80)
					r, err := dc.Create(ctx, endpoint, bytes.NewReader(data), int64(len(data)), true, -1,
						http.Header{"Content-Type": {"image/png"}, "Content-Disposition": {`inline; filename="a photo.png"`}})
					if err != nil || r.Status != http.StatusCreated || !isTrue(r.Complete) {
						t.Fatalf("POST: %v, %d %s, Upload-Complete %v", err, r.Status, r.Body, r.Complete)
					}
					if len(r.Interims) != 1 || r.Interims[0].Location != r.Location || r.Interims[0].Limits == nil || r.Interims[0].Limits.MaxSize != 1<<30 {
						t.Fatalf("104: %+v, want one with the Location %q and Upload-Limit", r.Interims, r.Location)
					}
					if r.Interims[0].Header.Get("Upload-Complete") != "" {
						t.Fatalf("the 104 carries Upload-Complete %q", r.Interims[0].Header.Get("Upload-Complete"))
					}
					b.assertStored(t, r.Location, sum, int64(len(data)))
					st, err := dc.Offset(ctx, r.Location)
					if err != nil || st.Offset != int64(len(data)) || !isTrue(st.Complete) || st.Length != int64(len(data)) {
						t.Fatalf("HEAD: %v %+v", err, st)
					}
					// The metadata came from Content-Type and Content-Disposition.
					if g := do(t, "GET", r.Location, c.h, nil); g.Header.Get("Content-Type") != "image/png" || !strings.Contains(g.Header.Get("Content-Disposition"), "a photo.png") {
						t.Fatalf("GET: Content-Type %q, Content-Disposition %q", g.Header.Get("Content-Type"), g.Header.Get("Content-Disposition"))
					}
				})

				t.Run("optimistic creation interrupted, then resumed", func(t *testing.T) {
					data, sum := payload(9*MiB+7, 81)
					got104 := make(chan struct{})
					var once bool
					dc := *dc
					dc.OnInterim = func(draftclient.Interim) {
						if !once {
							once = true
							close(got104)
						}
					}
					// The client waits for the 104 before it sends content
					// (the draft's "optimistic upload creation"), and the
					// connection drops after 6 MiB.
					r, err := dc.Create(ctx, endpoint, &cutReader{data: data, cut: 6 * MiB, wait: got104}, int64(len(data)), true, int64(len(data)), nil)
					if err == nil {
						t.Fatalf("the cut POST answered %d", r.Status)
					}
					if len(r.Interims) != 1 || r.Interims[0].Location == "" {
						t.Fatalf("no 104 with the upload's Location before the cut: %+v", r.Interims)
					}
					loc := r.Interims[0].Location
					if st, err := dc.Offset(ctx, loc); err == nil {
						t.Logf("offset after the cut at %d: %d", 6*MiB, st.Offset)
					}
					res, err := dc.Resume(ctx, loc, data)
					if err != nil || res.Status != http.StatusNoContent || !isTrue(res.Complete) || res.Offset != int64(len(data)) {
						t.Fatalf("resume: %v, %+v", err, res)
					}
					b.assertStored(t, loc, sum, int64(len(data)))
				})

				t.Run("careful creation, appends, an interrupted append", func(t *testing.T) {
					data, sum := payload(11*MiB+3, 82)
					r, err := dc.Create(ctx, endpoint, nil, 0, false, int64(len(data)), nil)
					if err != nil || r.Status != http.StatusCreated || !isFalse(r.Complete) || r.Location == "" || r.Limits == nil || r.Offset != 0 {
						t.Fatalf("POST: %v %+v", err, r)
					}
					loc := r.Location
					if len(r.Interims) != 1 || r.Interims[0].Location != loc {
						t.Fatalf("104: %+v, want one with Location %q", r.Interims, loc)
					}
					first := 3 * MiB
					a, err := dc.Append(ctx, loc, 0, bytes.NewReader(data[:first]), int64(first), false)
					if err != nil || a.Status != http.StatusNoContent || !isFalse(a.Complete) || a.Offset != int64(first) {
						t.Fatalf("append: %v %+v", err, a)
					}
					// The next append drops 6 MiB in.
					if _, err := dc.Append(ctx, loc, int64(first), &cutReader{data: data[first:], cut: 6 * MiB}, int64(len(data)-first), true); err == nil {
						t.Fatal("the cut append answered")
					}
					st, err := dc.Offset(ctx, loc)
					t.Logf("offset after the cut at %d: %d", first+6*MiB, st.Offset)
					if err != nil || st.Status != http.StatusNoContent || st.Offset < int64(first) || st.Offset > int64(first+6*MiB) ||
						!isFalse(st.Complete) || st.Length != int64(len(data)) || st.Header.Get("Cache-Control") != "no-store" ||
						st.Limits == nil || st.Limits.MaxAge <= 7000 || st.Limits.MaxAge > 7200 {
						t.Fatalf("HEAD after the cut: %v %+v limits %+v", err, st, st.Limits)
					}
					// An append at another offset is refused with the
					// server's offset.
					m, err := dc.Append(ctx, loc, st.Offset+1, strings.NewReader("x"), 1, false)
					if err != nil || m.Status != http.StatusConflict || m.Offset != st.Offset || !isFalse(m.Complete) ||
						m.ProblemType() != problemMismatchingOffset || m.Problem["expected-offset"] != float64(st.Offset) || m.Problem["provided-offset"] != float64(st.Offset+1) {
						t.Fatalf("append at a wrong offset: %v %+v", err, m)
					}
					// Completing with content that does not reach the length
					// is inconsistent.
					bad, err := dc.Append(ctx, loc, st.Offset, strings.NewReader("x"), 1, true)
					if err != nil || bad.Status != http.StatusBadRequest || bad.ProblemType() != problemInconsistentLength {
						t.Fatalf("append completing short of the length: %v %+v", err, bad)
					}
					res, err := dc.Resume(ctx, loc, data)
					if err != nil || res.Status != http.StatusNoContent || !isTrue(res.Complete) {
						t.Fatalf("resume: %v %+v", err, res)
					}
					b.assertStored(t, loc, sum, int64(len(data)))
					// The answer was lost: completing again is answered again
					// (version 7 refuses any append to a complete upload).
					again, err := dc.Append(ctx, loc, int64(len(data)), nil, 0, true)
					if version == "7" && (err != nil || again.Status != http.StatusBadRequest || !isFalse(again.Complete)) {
						t.Fatalf("repeated completion (v7): %v %+v", err, again)
					}
					if version == "8" && (err != nil || again.Status != http.StatusNoContent || !isTrue(again.Complete)) {
						t.Fatalf("repeated completion: %v %+v", err, again)
					}
					more, err := dc.Append(ctx, loc, int64(len(data)), strings.NewReader("x"), 1, false)
					if err != nil || more.Status != http.StatusBadRequest {
						t.Fatalf("append to a complete upload: %v %+v", err, more)
					}
				})

				t.Run("length unknown until the last append", func(t *testing.T) {
					data, sum := payload(5*MiB+11, 83)
					r, err := dc.Create(ctx, endpoint, bytes.NewReader(data[:1000]), 1000, false, -1, nil)
					if err != nil || r.Status != http.StatusCreated || r.Offset != 1000 || !isFalse(r.Complete) {
						t.Fatalf("POST: %v %+v", err, r)
					}
					if st, _ := dc.Offset(ctx, r.Location); st.Length != -1 || st.Offset != 1000 {
						t.Fatalf("HEAD of an upload of unknown length: %+v", st)
					}
					// Content of unknown length (chunked) completes it.
					a, err := dc.Append(ctx, r.Location, 1000, io.MultiReader(bytes.NewReader(data[1000:])), -1, true)
					if err != nil || a.Status != http.StatusNoContent || !isTrue(a.Complete) || a.Offset != int64(len(data)) {
						t.Fatalf("completing append: %v %+v", err, a)
					}
					b.assertStored(t, r.Location, sum, int64(len(data)))
				})

				t.Run("inconsistent lengths", func(t *testing.T) {
					r, err := dc.Create(ctx, endpoint, strings.NewReader("hello"), 5, true, 6, nil)
					if err != nil || r.Status != http.StatusBadRequest || r.ProblemType() != problemInconsistentLength || len(r.Interims) != 0 {
						t.Fatalf("POST whose Upload-Length is not its content's: %v %+v", err, r)
					}
					r, _ = dc.Create(ctx, endpoint, strings.NewReader("hel"), 3, false, 5, nil)
					a, err := dc.Append(ctx, r.Location, 3, strings.NewReader("lo!"), 3, true)
					if err != nil || a.Status != http.StatusBadRequest || a.ProblemType() != problemInconsistentLength {
						t.Fatalf("append completing past the length: %v %+v", err, a)
					}
					if st, _ := dc.Offset(ctx, r.Location); st.Offset != 3 {
						t.Fatalf("offset after the refused append: %d", st.Offset)
					}
				})

				t.Run("limits", func(t *testing.T) {
					r, err := dc.Create(ctx, endpoint, nil, 0, false, 1<<30+1, nil)
					if err != nil || r.Status != http.StatusRequestEntityTooLarge || r.Limits == nil || r.Limits.MaxSize != 1<<30 || len(r.Interims) != 0 {
						t.Fatalf("POST past max-size: %v %+v", err, r)
					}
					r, _ = dc.Create(ctx, endpoint, nil, 0, false, 3, nil)
					a, err := dc.Append(ctx, r.Location, 0, strings.NewReader("abcd"), 4, false)
					if err != nil || a.Status != http.StatusRequestEntityTooLarge || a.Limits == nil || !isFalse(a.Complete) {
						t.Fatalf("append past the length: %v %+v", err, a)
					}
				})

				t.Run("cancellation and ownership", func(t *testing.T) {
					r, _ := dc.Create(ctx, endpoint, strings.NewReader("abc"), 3, false, 10, nil)
					other := &draftclient.Client{Version: version, Header: http.Header{"Authorization": {"Bearer " + c.token(t, "rsa1", "auth0|eve")}}}
					for _, f := range []func() (*draftclient.Response, error){
						func() (*draftclient.Response, error) { return other.Offset(ctx, r.Location) },
						func() (*draftclient.Response, error) {
							return other.Append(ctx, r.Location, 3, strings.NewReader("d"), 1, false)
						},
						func() (*draftclient.Response, error) { return other.Cancel(ctx, r.Location) },
					} {
						if res, err := f(); err != nil || res.Status != http.StatusNotFound {
							t.Fatalf("another user's request: %v %+v, want 404", err, res)
						}
					}
					if res, err := dc.Cancel(ctx, r.Location); err != nil || res.Status != http.StatusNoContent {
						t.Fatalf("DELETE: %v %+v", err, res)
					}
					b.assertGone(t, r.Location)
					if st, _ := dc.Offset(ctx, r.Location); st.Status != http.StatusNotFound {
						t.Fatalf("HEAD after DELETE: %d", st.Status)
					}
				})

				t.Run("malformed requests", func(t *testing.T) {
					for _, v := range []string{"", "?2", "true", "?1, ?0"} {
						h := http.Header{"Upload-Draft-Interop-Version": {version}, "Authorization": {c.h["Authorization"]}}
						if v != "" {
							h.Set("Upload-Complete", v)
						}
						hm := map[string]string{}
						for k := range h {
							hm[k] = h.Get(k)
						}
						if r := do(t, "POST", endpoint, hm, strings.NewReader("x")); r.Status != http.StatusBadRequest {
							t.Errorf("POST with Upload-Complete %q: %d %s", v, r.Status, r.Body)
						}
					}
					r, _ := dc.Create(ctx, endpoint, nil, 0, false, 10, nil)
					hm := map[string]string{"Upload-Draft-Interop-Version": version, "Authorization": c.h["Authorization"], "Upload-Offset": "0", "Upload-Complete": "?0"}
					for _, ct := range []string{"", "application/offset+octet-stream"} {
						hm["Content-Type"] = ct
						if res := do(t, "PATCH", r.Location, hm, strings.NewReader("x")); res.Status != http.StatusUnsupportedMediaType {
							t.Errorf("PATCH with Content-Type %q: %d", ct, res.Status)
						}
					}
				})
			})
		}

		// A 104 goes only to clients that sent a version served here.
		dc := draftUser(c, "9")
		r, err := dc.Create(t.Context(), endpoint, strings.NewReader("x"), 1, true, -1, nil)
		if err != nil || len(r.Interims) != 0 || r.Ignored != 0 || r.Status != http.StatusPreconditionFailed {
			t.Fatalf("POST with interop version 9: %v, %d, 104s %d+%d; want 412 (a tus request without Tus-Resumable) and no 104", err, r.Status, len(r.Interims), r.Ignored)
		}
		// tusd still serves version 6, with its own 104.
		dc = draftUser(c, "6")
		r, err = dc.Create(t.Context(), endpoint, strings.NewReader("abc"), 3, true, -1, nil)
		if err != nil || r.Status != http.StatusCreated || len(r.Interims) != 1 {
			t.Fatalf("POST with interop version 6: %v %+v", err, r)
		}
	})
}

// An append in flight is ended, and what it received saved, by a HEAD (the
// draft's recommended handling of concurrent requests) and by a shutdown.
func TestIETFDraftAppendInterruptedSaves(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		// 6 s: a third of it is the reserve for saving the stalled append's
		// bytes, 2 s for a PutObject of up to 5 MiB on a loaded machine.
		c := startConformance(t, b, "--shutdown-timeout", "6s")
		dc := draftUser(c, "8")
		ctx := t.Context()
		data, sum := payload(24*MiB, 84)
		r, err := dc.Create(ctx, c.g.URL+"/files/", nil, 0, false, int64(len(data)), nil)
		if err != nil || r.Status != http.StatusCreated {
			t.Fatalf("POST: %v %+v", err, r)
		}
		loc := r.Location
		// stall sends n bytes from offset and then stalls, holding the
		// request open; it returns the append's answer.
		stall := func(offset, n int64) (*countingReader, chan *draftclient.Response) {
			body := newCountingReader(bytes.NewReader(data[offset:]), n, true)
			answer := make(chan *draftclient.Response, 1)
			go func() {
				res, _ := dc.Append(ctx, loc, offset, body, int64(len(data))-offset, true)
				answer <- res
			}()
			<-body.reached
			return body, answer
		}

		body, answer := stall(0, 7*MiB)
		st, err := dc.Offset(ctx, loc) // takes the lock: the append ends
		close(body.release)
		if err != nil || st.Offset <= 0 || st.Offset > 7*MiB || !isFalse(st.Complete) {
			t.Fatalf("HEAD during a stalled append: %v %+v; want what it received saved", err, st)
		}
		// The client sees an error answer, or none (its body failed).
		if res := <-answer; res != nil && res.Status != 0 && res.Status < 400 {
			t.Fatalf("the interrupted append answered %d", res.Status)
		}

		body, _ = stall(st.Offset, 5*MiB)
		c.g.Terminate(10 * time.Second)
		close(body.release)
		c.g.Start()
		st2, err := dc.Offset(ctx, loc)
		if err != nil || st2.Offset <= st.Offset || st2.Offset > st.Offset+5*MiB {
			t.Fatalf("offset after a shutdown during an append from %d: %v %+v; want what it received saved", st.Offset, err, st2)
		}
		if res, err := dc.Resume(ctx, loc, data); err != nil || !isTrue(res.Complete) {
			t.Fatalf("resume: %v %+v", err, res)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}
