package integration

import (
	"bytes"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"
)

const MiB = 1 << 20

func TestSinglePatch256MiB(t *testing.T) {
	data, sum := payload(256*MiB, 1)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, int64(len(data)), "Upload-Metadata", "filename YmlnLmJpbg==,filetype YXBwbGljYXRpb24vb2N0ZXQtc3RyZWFt")
		r := patch(t, loc, 0, data)
		if r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
			t.Fatalf("PATCH: %d offset %q body %q", r.Status, r.Header.Get("Upload-Offset"), r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
		if off := headOffset(t, loc); off != int64(len(data)) {
			t.Fatalf("HEAD after finish: offset %d", off)
		}
	})
}

func TestOddChunks(t *testing.T) {
	data, sum := payload(256*MiB, 2)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, int64(len(data)))
		offset := 0
		for _, n := range []int{1, 5*MiB - 1, 7 * MiB, len(data) - 1 - (5*MiB - 1) - 7*MiB} {
			r := patch(t, loc, int64(offset), data[offset:offset+n])
			offset += n
			if r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(offset) {
				t.Fatalf("PATCH of %d bytes: %d offset %q body %q", n, r.Status, r.Header.Get("Upload-Offset"), r.Body)
			}
			if off := headOffset(t, loc); off != int64(offset) {
				t.Fatalf("HEAD after %d bytes: offset %d", offset, off)
			}
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

// rawPatch sends a PATCH declaring the whole rest of the upload but only
// `send` bytes of it, then closes the connection mid-body.
func rawPatch(t *testing.T, loc string, offset int64, rest []byte, send int) {
	t.Helper()
	u, err := url.Parse(loc)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(conn, "PATCH %s HTTP/1.1\r\nHost: %s\r\nTus-Resumable: 1.0.0\r\nContent-Type: application/offset+octet-stream\r\nUpload-Offset: %d\r\nContent-Length: %d\r\n\r\n",
		u.Path, u.Host, offset, len(rest))
	if _, err := conn.Write(rest[:send]); err != nil {
		t.Fatal(err)
	}
	conn.Close()
}

func TestPatchCutMidBodyThenResume(t *testing.T) {
	data, sum := payload(24*MiB+123, 3)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, int64(len(data)))
		// 7 MiB + 5 bytes: one full 5 MiB part and an incomplete rest.
		sent := 7*MiB + 5
		rawPatch(t, loc, 0, data, sent)
		// The HEAD interrupts the cut PATCH, which saves what it read by then;
		// the offset is whatever was saved, and stays put.
		off := headOffset(t, loc)
		if off < 0 || off > int64(sent) {
			t.Fatalf("offset after cut PATCH = %d, sent %d", off, sent)
		}
		if again := headOffset(t, loc); again != off {
			t.Fatalf("offset moved from %d to %d", off, again)
		}
		r := patch(t, loc, off, data[off:])
		if r.Status != http.StatusNoContent {
			t.Fatalf("resume PATCH: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

func TestKilledMidUploadThenResume(t *testing.T) {
	data, sum := payload(96*MiB, 4)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, int64(len(data)))
		// Stream the body; once 40 MiB went out, SIGKILL the server.
		body := newCountingReader(bytes.NewReader(data), 40*MiB, false)
		errc := make(chan error, 1)
		go func() {
			_, err := tryDo(t.Context(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
			errc <- err
		}()
		<-body.reached
		g.Kill()
		<-errc
		g.Restart()

		off := headOffset(t, loc)
		if off < 0 || off > int64(len(data)) {
			t.Fatalf("offset after crash = %d", off)
		}
		// The offset must be consistent: a second HEAD agrees.
		if again := headOffset(t, loc); again != off {
			t.Fatalf("offset changed between HEADs: %d then %d", off, again)
		}
		if r := patch(t, loc, off, data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("resume PATCH from %d: %d %s", off, r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

// tusgate is killed at random points (seeded, so a failure can be
// replayed) of uploads on each of the three write paths, in one PATCH or in
// chunks that leave .part tails, up to three times per upload; each time it
// restarts, the client resumes from HEAD's offset, and the stored object
// must be the bytes sent. (Before S3 connections ended with a reset, a
// part cut off by the kill could be stored zero-filled by versitygw: this
// test failed on the tempfile path in three runs out of three.)
func TestKilledAnywhereThenResume(t *testing.T) {
	const seed = 1
	eachWritePath(t, func(t *testing.T, k int, _ string, b *backend) {
		g := b.start(t)
		rng := rand.New(rand.NewPCG(seed, uint64(k)))
		for i := range 9 {
			data, sum := payload(int64(30*MiB+rng.IntN(8*MiB)), uint64(100+i))
			size := int64(len(data))
			chunk := size
			if i%3 == 2 {
				chunk = 3*MiB + 17
			}
			loc := create(t, g, size)
			var kills []string
			for off := int64(0); off < size; {
				end := min(off+chunk, size)
				if len(kills) == 3 || rng.IntN(4) == 0 {
					if r := patch(t, loc, off, data[off:end]); r.Status != http.StatusNoContent {
						t.Fatalf("upload %d, PATCH at %d: %d %s", i, off, r.Status, r.Body)
					}
					off = end
					continue
				}
				at := off + rng.Int64N(end-off)
				kills = append(kills, strconv.FormatInt(at, 10))
				body := newCountingReader(bytes.NewReader(data[off:end]), at-off, false)
				errc := make(chan error, 1)
				go func() {
					_, err := tryDo(t.Context(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(off, 10)), body, end-off)
					errc <- err
				}()
				<-body.reached
				g.Kill()
				// The reader does not stop at the kill point, so the client
				// may have sent more than at by the time the process died;
				// the server cannot have received more than was handed out.
				sent := off + body.Sent()
				<-errc
				g.Restart()
				if off = headOffset(t, loc); off < 0 || off > sent {
					t.Fatalf("upload %d: offset %d after a kill at %s with %d bytes sent", i, off, kills[len(kills)-1], sent)
				}
			}
			t.Logf("upload %d: %d bytes in PATCHes of %d, killed with %v bytes sent", i, size, chunk, kills)
			b.assertStored(t, loc, sum, size)
		}
	})
}

func TestTerminate(t *testing.T) {
	data, _ := payload(13*MiB, 5)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, 20*MiB)
		// Two full parts and an incomplete one (.part object in S3).
		if r := patch(t, loc, 0, data); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		r := do(t, "DELETE", loc, tusHeaders, nil)
		if r.Status != http.StatusNoContent {
			t.Fatalf("DELETE: %d %s", r.Status, r.Body)
		}
		b.assertGone(t, loc)
		if r := do(t, "HEAD", loc, tusHeaders, nil); r.Status != http.StatusNotFound {
			t.Fatalf("HEAD after DELETE: %d", r.Status)
		}
		if r := patch(t, loc, 13*MiB, []byte("x")); r.Status != http.StatusNotFound {
			t.Fatalf("PATCH after DELETE: %d", r.Status)
		}

		// A finished upload can be terminated too.
		loc2 := create(t, g, 3)
		patch(t, loc2, 0, []byte("abc"))
		if r := do(t, "DELETE", loc2, tusHeaders, nil); r.Status != http.StatusNoContent {
			t.Fatalf("DELETE finished: %d %s", r.Status, r.Body)
		}
		b.assertGone(t, loc2)
	})
}

func TestConcatenation(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"large-partials-server-side-copy", 6 * MiB}, {"small-partials", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *backend) {
				g := b.start(t)
				var all []byte
				var urls []string
				for i := range 3 {
					part, _ := payload(int64(tc.size+i), uint64(10+i))
					all = append(all, part...)
					loc := create(t, g, int64(len(part)), "Upload-Concat", "partial")
					if r := patch(t, loc, 0, part); r.Status != http.StatusNoContent {
						t.Fatalf("partial %d: %d %s", i, r.Status, r.Body)
					}
					// Partials are named by path and by full URL, as clients do.
					if i == 0 {
						loc = strings.TrimPrefix(loc, g.URL)
					}
					urls = append(urls, loc)
				}
				r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Concat", "final;"+strings.Join(urls, " ")), nil)
				if r.Status != http.StatusCreated {
					t.Fatalf("final: %d %s", r.Status, r.Body)
				}
				final := r.Header.Get("Location")
				b.assertStored(t, final, sha256Hex(all), int64(len(all)))
				h := do(t, "HEAD", final, tusHeaders, nil)
				if h.Header.Get("Upload-Offset") != strconv.Itoa(len(all)) || !strings.HasPrefix(h.Header.Get("Upload-Concat"), "final;") {
					t.Fatalf("HEAD final: offset %q concat %q", h.Header.Get("Upload-Offset"), h.Header.Get("Upload-Concat"))
				}
			})
		})
	}
}

func TestDeferLength(t *testing.T) {
	data, sum := payload(11*MiB+7, 6)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Defer-Length", "1"), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("create: %d %s", r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		h := do(t, "HEAD", loc, tusHeaders, nil)
		if h.Header.Get("Upload-Defer-Length") != "1" {
			t.Fatalf("HEAD: Upload-Defer-Length %q", h.Header.Get("Upload-Defer-Length"))
		}
		first := 6 * MiB
		if r := patch(t, loc, 0, data[:first]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH 1: %d %s", r.Status, r.Body)
		}
		r = do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream",
			"Upload-Offset", strconv.Itoa(first), "Upload-Length", strconv.Itoa(len(data))), bytes.NewReader(data[first:]))
		if r.Status != http.StatusNoContent {
			t.Fatalf("PATCH 2: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}

func TestEmptyUpload(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		loc := create(t, g, 0)
		b.assertStored(t, loc, sha256Hex(nil), 0)
		if off := headOffset(t, loc); off != 0 {
			t.Fatalf("HEAD: offset %d", off)
		}
	})
}

func TestCreationWithUploadAndDownload(t *testing.T) {
	data, sum := payload(3*MiB, 7)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		r := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", strconv.Itoa(len(data)),
			"Content-Type", "application/offset+octet-stream", "Upload-Metadata", "filename cGhvdG8ucG5n,filetype aW1hZ2UvcG5n"), bytes.NewReader(data))
		if r.Status != http.StatusCreated || r.Header.Get("Upload-Offset") != strconv.Itoa(len(data)) {
			t.Fatalf("POST with body: %d offset %q %s", r.Status, r.Header.Get("Upload-Offset"), r.Body)
		}
		loc := r.Header.Get("Location")
		b.assertStored(t, loc, sum, int64(len(data)))
		get := do(t, "GET", loc, nil, nil)
		if get.Status != http.StatusOK || sha256Hex([]byte(get.Body)) != sum {
			t.Fatalf("GET: %d, sha mismatch", get.Status)
		}
		if ct := get.Header.Get("Content-Type"); ct != "image/png" {
			t.Fatalf("GET Content-Type %q", ct)
		}
	})
}

func TestIETFDraftUpload(t *testing.T) {
	data, sum := payload(6*MiB+1, 8)
	b := s3Backend(t)
	g := b.start(t)
	req, _ := http.NewRequest("POST", g.URL+"/files/", bytes.NewReader(data))
	req.Header.Set("Upload-Draft-Interop-Version", "6")
	req.Header.Set("Upload-Complete", "?1")
	req.Header.Set("Content-Type", "text/plain")
	req.Header.Set("Content-Disposition", `attachment; filename="../../notes.txt"`)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("IETF draft POST: %d", resp.StatusCode)
	}
	loc := resp.Header.Get("Location")
	b.assertStored(t, loc, sum, int64(len(data)))
	h := do(t, "HEAD", loc, tusHeaders, nil)
	if md := h.Header.Get("Upload-Metadata"); !strings.Contains(md, "filename bm90ZXMudHh0") {
		t.Fatalf("filename not sanitised to notes.txt: Upload-Metadata %q", md)
	}
	// The draft can be switched off.
	g2 := startGate(t, b.env, append(b.args, "--ietf-draft=false", "--s3-temp-dir", t.TempDir())...)
	req, _ = http.NewRequest("POST", g2.URL+"/files/", strings.NewReader("x"))
	req.Header.Set("Upload-Draft-Interop-Version", "6")
	req.Header.Set("Upload-Complete", "?1")
	resp, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusPreconditionFailed {
		t.Fatalf("IETF draft POST with --ietf-draft=false: %d, want 412", resp.StatusCode)
	}
}

func TestSIGTERMDuringPatchSavesAndResumes(t *testing.T) {
	data, sum := payload(64*MiB, 9)
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t, "--shutdown-timeout", "3s")
		loc := create(t, g, int64(len(data)))
		// Send 23 MiB, then stall without closing: the PATCH is in flight
		// when SIGTERM arrives and outlives the grace period.
		body := newCountingReader(bytes.NewReader(data), 23*MiB, true)
		defer close(body.release)
		errc := make(chan error, 1)
		go func() {
			_, err := tryDo(t.Context(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), body, int64(len(data)))
			errc <- err
		}()
		<-body.reached
		start := time.Now()
		g.Terminate(10 * time.Second)
		// 3 s and what exiting takes on a loaded machine; without the
		// bound, the stalled PATCH would hold the process until the 10 s
		// Terminate gives up.
		if took := time.Since(start); took > 6*time.Second {
			t.Fatalf("shutdown took %v with --shutdown-timeout 3s", took)
		}
		if !strings.Contains(g.Log(), "interrupting uploads still in flight") {
			t.Fatalf("the PATCH was not interrupted by the shutdown:\n%s", tail(g.LogPath, 20))
		}
		g.Start()
		off := headOffset(t, loc)
		if off <= 0 {
			t.Fatalf("offset after SIGTERM = %d, want > 0 (received bytes are saved)", off)
		}
		if off > 23*MiB {
			t.Fatalf("offset %d exceeds bytes sent", off)
		}
		if r := patch(t, loc, off, data[off:]); r.Status != http.StatusNoContent {
			t.Fatalf("resume: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}
