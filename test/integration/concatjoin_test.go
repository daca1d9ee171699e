package integration

import (
	"bytes"
	"net/http"
	"strconv"
	"testing"
)

// Concatenating a partial of at least 5 MiB with one below it: the
// partials are joined in the temp dir and stored with one PutObject. Over
// HTTPS the SDK would send the joined file as one aws-chunked chunk with a
// CRC32 trailer, which MinIO refuses above 16 MiB ("chunk too big"): the
// CRC32 must go as a header.
func TestConcatJoinedOver16MiB(t *testing.T) {
	b := s3Backend(t)
	g := b.start(t)
	sizes := []int{20 << 20, 1 << 20}
	var all []byte
	final := "final;"
	for i, n := range sizes {
		data, _ := payload(int64(n), uint64(i+1))
		all = append(all, data...)
		r := do(t, "POST", g.URL+"/files/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Length": strconv.Itoa(n), "Upload-Concat": "partial"}, nil)
		if r.Status != http.StatusCreated {
			t.Fatalf("partial %d: %d %s", i, r.Status, r.Body)
		}
		loc := r.Header.Get("Location")
		p := do(t, "PATCH", loc, map[string]string{"Tus-Resumable": "1.0.0", "Upload-Offset": "0", "Content-Type": "application/offset+octet-stream"}, bytes.NewReader(data))
		if p.Status != http.StatusNoContent {
			t.Fatalf("partial %d PATCH: %d %s", i, p.Status, p.Body)
		}
		if i > 0 {
			final += " "
		}
		final += loc
	}
	r := do(t, "POST", g.URL+"/files/", map[string]string{"Tus-Resumable": "1.0.0", "Upload-Concat": final}, nil)
	if r.Status != http.StatusCreated {
		t.Fatalf("final upload on %s over HTTPS: %d %s\n%s", b.s3.Name, r.Status, r.Body, g.Log())
	}
	if sum, size := b.stored(t, r.Header.Get("Location")); size != int64(len(all)) || sum != sha256Hex(all) {
		t.Fatalf("stored %d bytes, want %d", size, len(all))
	}
}
