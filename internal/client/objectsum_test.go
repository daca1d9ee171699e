package client

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"maps"
	"net/http"
	"strings"
	"testing"
)

// A finished upload's HEAD names the object's checksums (tusgate's
// Upload-Object-Checksum and Upload-Object-SHA256): the result carries
// them. Malformed values are left out, never passed on.
func TestObjectChecksumsReported(t *testing.T) {
	data := randomBytes(2*MiB+3, 9)
	sum := sha256.Sum256(data)
	sha := base64.StdEncoding.EncodeToString(sum[:])
	for _, tc := range []struct {
		name    string
		headers map[string]string
		want    map[string]string
	}{
		{"both", map[string]string{"Upload-Object-Checksum": "crc32 q83vEg==", "Upload-Object-SHA256": sha}, map[string]string{"crc32": "q83vEg==", "sha256": sha}},
		{"none", nil, nil},
		{"malformed", map[string]string{"Upload-Object-Checksum": "crc32 not base64!", "Upload-Object-SHA256": "AAAA"}, nil},
		{"odd algorithm", map[string]string{"Upload-Object-Checksum": "CRC 32 q83vEg=="}, nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := newFakeTus(t)
			f.finished = tc.headers
			c, _ := newTestClient(t, f, nil)
			res := uploadOne(t, c, writeTemp(t, "c.bin", data), nil)
			if res.Err != nil {
				t.Fatal(res.Err)
			}
			if !maps.Equal(res.Checksums, tc.want) {
				t.Fatalf("checksums %v, want %v", res.Checksums, tc.want)
			}
		})
	}
}

// A server that refuses OPTIONS gets plain tus 1.0 uploads, and the user
// is told what that turns off.
func TestRefusedOptionsIsANotice(t *testing.T) {
	f := newFakeTus(t)
	f.extensions, f.algorithms = "creation,checksum,concatenation", "sha256"
	f.fail = func(w http.ResponseWriter, r *http.Request, _ int) bool {
		if r.Method == http.MethodOptions {
			w.WriteHeader(http.StatusMethodNotAllowed)
			return true
		}
		return false
	}
	c, sink := newTestClient(t, f, nil)
	data := randomBytes(MiB+1, 10)
	res := uploadOne(t, c, writeTemp(t, "d.bin", data), nil)
	if res.Err != nil || !bytes.Equal(f.upload(res.URL).data, data) {
		t.Fatalf("upload: %v", res.Err)
	}
	if len(f.upload(res.URL).checksum) != 0 {
		t.Fatal("Upload-Checksum sent though OPTIONS named no checksum extension")
	}
	if n := strings.Join(sink.notices, "\n"); !strings.Contains(n, "OPTIONS") || !strings.Contains(n, "405") {
		t.Fatalf("notices %q; want one about the refused OPTIONS", n)
	}
}
