package integration

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// The tus concatenation-unfinished extension: a final upload may name
// partial uploads that are still in progress, and is assembled when the
// last of them finishes.

func TestConformanceOptionsExtensions(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		r := do(t, "OPTIONS", c.g.URL+"/files/", nil, nil)
		got := strings.Split(r.Header.Get("Tus-Extension"), ",")
		slices.Sort(got)
		// Exactly what tusgate implements.
		want := []string{"checksum", "checksum-trailer", "concatenation", "concatenation-unfinished", "creation", "creation-defer-length", "creation-with-upload", "expiration", "termination"}
		if r.Status != http.StatusOK || !slices.Equal(got, want) {
			t.Fatalf("OPTIONS: %d, Tus-Extension %v; want %v", r.Status, got, want)
		}
		c0 := startConformance(t, b, "--upload-ttl", "0", "--data-dir", t.TempDir())
		r = do(t, "OPTIONS", c0.g.URL+"/files/", nil, nil)
		if ext := r.Header.Get("Tus-Extension"); strings.Contains(ext, "expiration") {
			t.Fatalf("OPTIONS with --upload-ttl 0 lists expiration: %q", ext)
		}
	})
}

// headFinal returns the answer to HEAD of a final upload.
func (c *confGate) headFinal(t *testing.T, url string) response {
	t.Helper()
	r := do(t, "HEAD", url, c.h, nil)
	if r.Status != http.StatusOK || !strings.HasPrefix(r.Header.Get("Upload-Concat"), "final;") {
		t.Fatalf("HEAD of the final upload: %d, Upload-Concat %q", r.Status, r.Header.Get("Upload-Concat"))
	}
	return r
}

// assertWaiting checks that the final upload at url is not assembled yet:
// no Upload-Offset, and its length is known.
func (c *confGate) assertWaiting(t *testing.T, url string, length int) {
	t.Helper()
	r := c.headFinal(t, url)
	if _, has := r.Header["Upload-Offset"]; has || r.Header.Get("Upload-Length") != strconv.Itoa(length) {
		t.Fatalf("HEAD of a final upload waiting for partial uploads: Upload-Offset %q, Upload-Length %q; want no offset, length %d",
			r.Header.Get("Upload-Offset"), r.Header.Get("Upload-Length"), length)
	}
}

func TestConformanceConcatenationUnfinished(t *testing.T) {
	for _, tc := range []struct {
		name string
		size int
	}{{"large-partials-server-side-copy", 6 * MiB}, {"small-partials", 1000}} {
		t.Run(tc.name, func(t *testing.T) {
			eachBackend(t, func(t *testing.T, b *backend) {
				c := startConformance(t, b)
				var all []byte
				var parts [][]byte
				var urls []string
				for i := range 3 {
					part, _ := payload(int64(tc.size+i), uint64(60+i))
					parts = append(parts, part)
					all = append(all, part...)
					urls = append(urls, c.create(t, int64(len(part)), "Upload-Concat", "partial"))
				}
				// The first partial upload is finished, the second half
				// done, the third not started.
				if r := c.patch(t, urls[0], 0, parts[0]); r.Status != http.StatusNoContent {
					t.Fatalf("partial 0: %d %s", r.Status, r.Body)
				}
				half := len(parts[1]) / 2
				if r := c.patch(t, urls[1], 0, parts[1][:half]); r.Status != http.StatusNoContent {
					t.Fatalf("partial 1: %d %s", r.Status, r.Body)
				}
				r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "final;"+strings.Join(urls, " "), "Upload-Metadata", "filename YWxsLmJpbg=="), nil)
				if r.Status != http.StatusCreated {
					t.Fatalf("final naming unfinished partial uploads: %d %s", r.Status, r.Body)
				}
				final := r.Header.Get("Location")
				c.assertWaiting(t, final, len(all))
				// Partial uploads answer with their offset as always.
				if off := c.offset(t, urls[1]); off != strconv.Itoa(half) {
					t.Fatalf("HEAD of a partial upload: offset %s, want %d", off, half)
				}
				if r := c.patch(t, final, 0, []byte("x")); r.Status != http.StatusForbidden {
					t.Fatalf("PATCH of the final upload: %d, want 403", r.Status)
				}

				if r := c.patch(t, urls[1], int64(half), parts[1][half:]); r.Status != http.StatusNoContent {
					t.Fatalf("partial 1, rest: %d %s", r.Status, r.Body)
				}
				c.assertWaiting(t, final, len(all))
				// The last partial upload to finish assembles the final one.
				if r := c.patch(t, urls[2], 0, parts[2]); r.Status != http.StatusNoContent {
					t.Fatalf("partial 2: %d %s", r.Status, r.Body)
				}
				h := c.headFinal(t, final)
				if h.Header.Get("Upload-Offset") != strconv.Itoa(len(all)) || h.Header.Get("Upload-Length") != strconv.Itoa(len(all)) {
					t.Fatalf("HEAD of the assembled final upload: offset %q, length %q; want both %d", h.Header.Get("Upload-Offset"), h.Header.Get("Upload-Length"), len(all))
				}
				b.assertStored(t, final, sha256Hex(all), int64(len(all)))
				if g := do(t, "GET", final, c.h, nil); g.Status != http.StatusOK || sha256Hex([]byte(g.Body)) != sha256Hex(all) {
					t.Fatalf("GET of the final upload: %d", g.Status)
				}
			})
		})
	}
}

func TestConformanceConcatenationUnfinishedRules(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		c := startConformance(t, b)
		// A partial upload whose length is deferred cannot be named before
		// it declares it: the final upload's length must be known.
		r := do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "partial", "Upload-Defer-Length", "1"), nil)
		deferred := r.Header.Get("Location")
		known := c.create(t, 3, "Upload-Concat", "partial")
		uploads := b.countUploads(t)
		r = do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "final;"+known+" "+deferred), nil)
		if r.Status != http.StatusBadRequest || r.Header.Get("Location") != "" {
			t.Fatalf("final naming a partial upload of deferred length: %d %s, want 400", r.Status, r.Body)
		}
		// Another user's unfinished partial upload does not exist for her.
		other := bearer(c.token(t, "rsa1", "auth0|mallory"))
		r = do(t, "POST", c.g.URL+"/files/", with(other, "Upload-Concat", "final;"+known), nil)
		if r.Status != http.StatusNotFound {
			t.Fatalf("final naming another user's partial upload: %d %s, want 404", r.Status, r.Body)
		}
		if n := b.countUploads(t); n != uploads {
			t.Fatalf("uploads after refused finals: %d, want %d", n, uploads)
		}

		// A final upload whose partial upload is deleted never assembles;
		// the other partial uploads finish as usual.
		second := c.create(t, 2, "Upload-Concat", "partial")
		r = do(t, "POST", c.g.URL+"/files/", with(c.h, "Upload-Concat", "final;"+known+" "+second), nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("final: %d %s", r.Status, r.Body)
		}
		final := r.Header.Get("Location")
		if d := do(t, "DELETE", second, c.h, nil); d.Status != http.StatusNoContent {
			t.Fatalf("DELETE of a partial upload: %d", d.Status)
		}
		if r := c.patch(t, known, 0, []byte("abc")); r.Status != http.StatusNoContent {
			t.Fatalf("partial: %d %s", r.Status, r.Body)
		}
		c.assertWaiting(t, final, 5)
	})
}

// The partial uploads finish on another instance than the one the final
// upload was created on; the records live in the bucket, the locks in
// Redis.
func TestConcatenationUnfinishedAcrossInstances(t *testing.T) {
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	cl := startCluster(t, 2, "--oidc-issuer", iss.URL, "--oidc-audience", audience)
	h := bearer(iss.Sign(t, "rsa1", iss.Claims("auth0|cluster", audience)))
	a, bGate := cl.gates[0], cl.gates[1]
	c := &confGate{authSetup: &authSetup{iss: iss, b: cl.b, g: a}, h: h}
	var all []byte
	var urls []string
	var parts [][]byte
	for i := range 2 {
		part, _ := payload(int64(6*MiB+i), uint64(70+i))
		parts, all = append(parts, part), append(all, part...)
		urls = append(urls, c.create(t, int64(len(part)), "Upload-Concat", "partial"))
	}
	r := do(t, "POST", a.URL+"/files/", with(h, "Upload-Concat", "final;"+strings.Join(urls, " ")), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("final: %d %s", r.Status, r.Body)
	}
	final := r.Header.Get("Location")
	for i, u := range urls {
		if r := c.patch(t, on(bGate, u), 0, parts[i]); r.Status != http.StatusNoContent {
			t.Fatalf("partial %d on the other instance: %d %s", i, r.Status, r.Body)
		}
	}
	hd := c.headFinal(t, on(a, final))
	if hd.Header.Get("Upload-Offset") != strconv.Itoa(len(all)) {
		t.Fatalf("HEAD of the final upload: offset %q, want %d", hd.Header.Get("Upload-Offset"), len(all))
	}
	cl.b.assertStored(t, final, sha256Hex(all), int64(len(all)))
}
