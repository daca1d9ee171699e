package integration

import (
	"bytes"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

// Per-user quotas hold across instances: they are read from S3, not kept
// in memory.
func TestQuotasAcrossInstances(t *testing.T) {
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	c := startCluster(t, 2, "--oidc-issuer", iss.URL, "--oidc-audience", audience, "--quota-uploads", "2", "--quota-bytes", "20MiB")
	alice := bearer(iss.Sign(t, "rsa1", iss.Claims("alice", audience)))
	bob := bearer(iss.Sign(t, "rsa1", iss.Claims("bob", audience)))
	post := func(g *gate, h map[string]string, size int) response {
		return do(t, "POST", g.URL+"/files/", with(h, "Upload-Length", strconv.Itoa(size)), nil)
	}

	first := post(c.gates[0], alice, 6*MiB)
	second := post(c.gates[1], alice, 6*MiB)
	if first.Status != http.StatusCreated || second.Status != http.StatusCreated {
		t.Fatalf("first two uploads: %d %d", first.Status, second.Status)
	}
	third := post(c.gates[0], alice, 1)
	if third.Status != http.StatusForbidden || !strings.HasPrefix(third.Body, "ERR_QUOTA_UPLOADS") {
		t.Fatalf("third concurrent upload: %d %q, want 403 ERR_QUOTA_UPLOADS", third.Status, third.Body)
	}
	// Another user is not affected.
	if r := post(c.gates[1], bob, 1); r.Status != http.StatusCreated {
		t.Fatalf("bob's upload: %d %s", r.Status, r.Body)
	}
	// Finishing one (through the other instance) frees a slot.
	data, _ := payload(6*MiB, 70)
	loc := on(c.gates[1], first.Header.Get("Location"))
	if r := do(t, "PATCH", loc, with(alice, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), bytes.NewReader(data)); r.Status != http.StatusNoContent {
		t.Fatalf("finishing PATCH: %d %s", r.Status, r.Body)
	}
	// Bytes: 6 MiB in flight; 15 MiB more would exceed 20 MiB.
	if r := post(c.gates[0], alice, 15*MiB); r.Status != http.StatusRequestEntityTooLarge || !strings.HasPrefix(r.Body, "ERR_QUOTA_BYTES") {
		t.Fatalf("upload over the byte quota: %d %q, want 413 ERR_QUOTA_BYTES", r.Status, r.Body)
	}
	if r := post(c.gates[0], alice, 14*MiB); r.Status != http.StatusCreated {
		t.Fatalf("upload within quota after one finished: %d %s", r.Status, r.Body)
	}
	// Cancelling frees a slot too.
	if r := post(c.gates[1], alice, 1); r.Status != http.StatusForbidden {
		t.Fatalf("third upload again: %d", r.Status)
	}
	if r := do(t, "DELETE", on(c.gates[0], second.Header.Get("Location")), alice, nil); r.Status != http.StatusNoContent {
		t.Fatalf("DELETE: %d", r.Status)
	}
	if r := post(c.gates[1], alice, 1); r.Status != http.StatusCreated {
		t.Fatalf("upload after a cancel: %d %s", r.Status, r.Body)
	}
}

func TestQuotaOnDisk(t *testing.T) {
	b := diskBackend(t)
	a := startAuth(t, b, "--quota-uploads", "1")
	tok := bearer(a.token(t, "rsa1", "carol"))
	r := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Length", "3"), nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("first: %d", r.Status)
	}
	if r2 := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Length", "3"), nil); r2.Status != http.StatusForbidden {
		t.Fatalf("second: %d", r2.Status)
	}
	if p := do(t, "PATCH", r.Header.Get("Location"), with(tok, "Content-Type", "application/offset+octet-stream", "Upload-Offset", "0"), strings.NewReader("abc")); p.Status != http.StatusNoContent {
		t.Fatalf("PATCH: %d", p.Status)
	}
	if r3 := do(t, "POST", a.g.URL+"/files/", with(tok, "Upload-Length", "3"), nil); r3.Status != http.StatusCreated {
		t.Fatalf("after finishing: %d %s", r3.Status, r3.Body)
	}
}

// Creations racing each other hold the quota: many at once, through two
// instances, by tus and by direct-to-S3 alike, and exactly as many succeed
// as the quota allows. (The check used to be read-then-create: every one of
// a burst read the same usage, and all of them were created.)
func TestQuotaHoldsForConcurrentCreations(t *testing.T) {
	iss := testenv.StartIssuer(t)
	iss.AddRSAKey(t, "rsa1", true)
	c := startCluster(t, 2, "--oidc-issuer", iss.URL, "--oidc-audience", audience, "--direct-uploads", "--quota-uploads", "3")
	alice := bearer(iss.Sign(t, "rsa1", iss.Claims("alice", audience)))
	const burst = 16
	statuses := make(chan int, burst)
	var wg sync.WaitGroup
	for i := range burst {
		g := c.gates[i%2]
		wg.Go(func() {
			// A creation that waited too long for the others is asked to
			// retry (503 ERR_QUOTA_BUSY); it does, as clients do.
			for {
				var r response
				var err error
				if i%4 < 2 {
					r, err = tryDo(t.Context(), "POST", g.URL+"/files/", with(alice, "Upload-Length", "1000"), nil, -1)
				} else {
					r, err = tryDo(t.Context(), "POST", g.URL+"/s3/multipart", with(alice, "Content-Type", "application/json"), strings.NewReader(`{"filename":"f","size":1000}`), -1)
				}
				if err != nil {
					t.Error(err)
					return
				}
				if r.Status == http.StatusServiceUnavailable && strings.Contains(r.Body, "ERR_QUOTA_BUSY") {
					continue
				}
				statuses <- r.Status
				return
			}
		})
	}
	wg.Wait()
	close(statuses)
	counts := map[int]int{}
	for s := range statuses {
		counts[s]++
	}
	if counts[http.StatusCreated]+counts[http.StatusOK] != 3 || counts[http.StatusForbidden] != burst-3 {
		t.Fatalf("%d creations at once under --quota-uploads 3 answered %v; want 3 created (201 or 200) and %d refused (403)", burst, counts, burst-3)
	}
}
