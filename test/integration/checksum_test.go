package integration

import (
	"bytes"
	"context"
	"crypto/md5"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"hash"
	"hash/crc32"
	"hash/crc64"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// checksumOf is "<alg> <base64 digest>" of b, as tus's Upload-Checksum.
func checksumOf(alg string, b []byte) string {
	var h hash.Hash
	switch alg {
	case "sha1":
		h = sha1.New()
	case "md5":
		h = md5.New()
	case "crc32":
		h = crc32.NewIEEE()
	case "crc32c":
		h = crc32.New(crc32.MakeTable(crc32.Castagnoli))
	case "crc64nvme":
		h = crc64.New(crc64.MakeTable(0x9a6c9329ac4bc9b5))
	default:
		h = sha256.New()
	}
	h.Write(b)
	return alg + " " + base64.StdEncoding.EncodeToString(h.Sum(nil))
}

// checkedPatch sends data at offset with Upload-Checksum sum.
func checkedPatch(t *testing.T, loc string, offset int64, data []byte, sum string) response {
	t.Helper()
	return do(t, "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10), "Upload-Checksum", sum), bytes.NewReader(data))
}

// trailerPatch sends data at offset as a chunked body whose trailer states
// sum (tus's checksum-trailer).
func trailerPatch(t *testing.T, loc string, offset int64, data []byte, sum string) response {
	t.Helper()
	body := &trailerBody{r: bytes.NewReader(data)}
	req, err := http.NewRequestWithContext(t.Context(), "PATCH", loc, body)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.FormatInt(offset, 10)) {
		req.Header.Set(k, v)
	}
	req.ContentLength = -1
	req.Trailer = http.Header{"Upload-Checksum": nil}
	body.done = func() { req.Trailer.Set("Upload-Checksum", sum) }
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("chunked PATCH: %v", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return response{Status: resp.StatusCode, Header: resp.Header, Body: string(b)}
}

// trailerBody sets the trailer once the body is read, as a client that
// computes the digest while it sends does.
type trailerBody struct {
	r    io.Reader
	done func()
}

func (b *trailerBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if err == io.EOF && b.done != nil {
		b.done()
		b.done = nil
	}
	return n, err
}

func TestChecksumExtension(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		r := do(t, "OPTIONS", g.URL+"/files/", nil, nil)
		if !strings.Contains(r.Header.Get("Tus-Extension"), "checksum,checksum-trailer") ||
			r.Header.Get("Tus-Checksum-Algorithm") != "sha1,md5,crc32,sha256,crc32c,crc64nvme" {
			t.Fatalf("OPTIONS: Tus-Extension %q, Tus-Checksum-Algorithm %q", r.Header.Get("Tus-Extension"), r.Header.Get("Tus-Checksum-Algorithm"))
		}

		// 3 MiB in the tail, then 20 MiB (four parts of 5 MiB on S3, the
		// first with the tail's bytes) whose checksum is wrong: 460, and
		// the offset stays at 3 MiB; the same bytes with the right one go.
		data, sum := payload(30*MiB, 61)
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data[:3*MiB]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		body := data[3*MiB : 23*MiB]
		r = checkedPatch(t, loc, 3*MiB, body, checksumOf("sha256", append([]byte{1}, body...)))
		if r.Status != 460 || !strings.HasPrefix(r.Body, "ERR_CHECKSUM_MISMATCH") {
			t.Fatalf("PATCH with a wrong checksum: %d %s", r.Status, r.Body)
		}
		if off := headOffset(t, loc); off != 3*MiB {
			t.Fatalf("offset %d after a 460; want the %d bytes before it", off, 3*MiB)
		}
		if r := checkedPatch(t, loc, 3*MiB, body, checksumOf("sha256", body)); r.Status != http.StatusNoContent || r.Header.Get("Upload-Offset") != strconv.Itoa(23*MiB) {
			t.Fatalf("PATCH with the right checksum: %d offset %q %s", r.Status, r.Header.Get("Upload-Offset"), r.Body)
		}
		// The trailer form: wrong, then right.
		last := data[23*MiB:]
		if r := trailerPatch(t, loc, 23*MiB, last, checksumOf("crc32", append([]byte{1}, last...))); r.Status != 460 {
			t.Fatalf("chunked PATCH with a wrong trailer: %d %s", r.Status, r.Body)
		}
		if off := headOffset(t, loc); off != 23*MiB {
			t.Fatalf("offset %d after a 460 by trailer", off)
		}
		if r := trailerPatch(t, loc, 23*MiB, last, checksumOf("crc32", last)); r.Status != http.StatusNoContent {
			t.Fatalf("chunked PATCH with the right trailer: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))

		// Every algorithm, on creation-with-upload and PATCH.
		for _, alg := range []string{"sha1", "md5", "crc32", "sha256", "crc32c", "crc64nvme"} {
			small := []byte("tus checksum " + alg)
			c := do(t, "POST", g.URL+"/files/", with(tusHeaders, "Upload-Length", strconv.Itoa(2*len(small)), "Content-Type", "application/offset+octet-stream", "Upload-Checksum", checksumOf(alg, small)), bytes.NewReader(small))
			if c.Status != http.StatusCreated || c.Header.Get("Upload-Offset") != strconv.Itoa(len(small)) {
				t.Fatalf("%s creation-with-upload: %d offset %q %s", alg, c.Status, c.Header.Get("Upload-Offset"), c.Body)
			}
			if r := checkedPatch(t, c.Header.Get("Location"), int64(len(small)), small, checksumOf(alg, small)); r.Status != http.StatusNoContent {
				t.Fatalf("%s PATCH: %d %s", alg, r.Status, r.Body)
			}
			b.assertStored(t, c.Header.Get("Location"), sha256Hex(append(bytes.Clone(small), small...)), int64(2*len(small)))
		}

		// Statements tusgate cannot check are refused before any byte.
		loc2 := create(t, g, 10)
		for _, bad := range []string{"sha512 " + base64.StdEncoding.EncodeToString(make([]byte, 64)), "sha256", "sha256 not*base64", "sha256 " + base64.StdEncoding.EncodeToString([]byte("short"))} {
			if r := checkedPatch(t, loc2, 0, []byte("0123456789"), bad); r.Status != http.StatusBadRequest {
				t.Errorf("Upload-Checksum %q: %d %s", bad, r.Status, r.Body)
			}
		}
		if off := headOffset(t, loc2); off != 0 {
			t.Fatalf("offset %d after refused PATCHes", off)
		}
	})
}

// A checked PATCH killed after some of its parts reached S3 (or its bytes
// the data file) and before its digest was known: after the restart none
// of them count.
func TestChecksumKilledBeforeVerdict(t *testing.T) {
	eachBackend(t, func(t *testing.T, b *backend) {
		g := b.start(t)
		data, sum := payload(24*MiB, 62)
		loc := create(t, g, int64(len(data)))
		if r := patch(t, loc, 0, data[:2*MiB]); r.Status != http.StatusNoContent {
			t.Fatalf("PATCH: %d %s", r.Status, r.Body)
		}
		rest := data[2*MiB:]
		reader := newCountingReader(bytes.NewReader(rest), 18*MiB, true)
		errc := make(chan error, 1)
		go func() {
			_, err := tryDo(context.Background(), "PATCH", loc, with(tusHeaders, "Content-Type", "application/offset+octet-stream", "Upload-Offset", strconv.Itoa(2*MiB), "Upload-Checksum", checksumOf("sha256", rest)), reader, int64(len(rest)))
			errc <- err
		}()
		<-reader.reached // 18 MiB sent: three parts of 5 MiB are in S3
		g.Kill()
		close(reader.release)
		<-errc
		g.Restart()
		if off := headOffset(t, loc); off != 2*MiB {
			t.Fatalf("offset %d after a kill before the checksum was known; want %d", off, 2*MiB)
		}
		if r := checkedPatch(t, loc, 2*MiB, rest, checksumOf("sha256", rest)); r.Status != http.StatusNoContent {
			t.Fatalf("resent PATCH: %d %s", r.Status, r.Body)
		}
		b.assertStored(t, loc, sum, int64(len(data)))
	})
}
