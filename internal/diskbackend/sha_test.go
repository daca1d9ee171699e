package diskbackend

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/objsha"
)

func testData(n int, seed uint64) []byte {
	b := make([]byte, n)
	r := rand.New(rand.NewPCG(seed, 3))
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

// diskEnv is the disk store with --object-sha256.
type diskEnv struct {
	t *testing.T
	b *Backend
	c *handler.StoreComposer
}

func newDiskEnv(t *testing.T, objectSHA256 bool) *diskEnv {
	b, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	b.ObjectSHA256 = objectSHA256
	c := handler.NewStoreComposer()
	b.UseIn(c)
	return &diskEnv{t: t, b: b, c: c}
}

func (e *diskEnv) create(info handler.FileInfo) string {
	e.t.Helper()
	up, err := e.c.Core.NewUpload(context.Background(), info)
	if err != nil {
		e.t.Fatal(err)
	}
	got, _ := up.GetInfo(context.Background())
	return got.ID
}

// write is one request writing data at offset (ctx may state a checksum);
// it finishes the upload when it is complete, as tusd does.
func (e *diskEnv) write(ctx context.Context, id string, offset int64, data []byte) error {
	e.t.Helper()
	up, err := e.c.Core.GetUpload(ctx, id)
	if err != nil {
		e.t.Fatal(err)
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	if info.Offset != offset {
		e.t.Fatalf("the upload is at %d, the write at %d", info.Offset, offset)
	}
	n, err := up.WriteChunk(ctx, offset, bytes.NewReader(data))
	if err != nil {
		return err
	}
	if !info.SizeIsDeferred && offset+n == info.Size {
		return up.FinishUpload(ctx)
	}
	return nil
}

// recorded is the SHA-256 recorded in the upload's .info on disk.
func (e *diskEnv) recorded(id string) ([]byte, bool) {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.b.Dir(), id+".info"))
	if err != nil {
		e.t.Fatal(err)
	}
	var info handler.FileInfo
	if err := json.Unmarshal(b, &info); err != nil {
		e.t.Fatal(err)
	}
	return objsha.Sum(info)
}

func (e *diskEnv) checkSHA(id string, data []byte) {
	e.t.Helper()
	want := sha256.Sum256(data)
	if got, ok := e.recorded(id); !ok || !objsha.Equal(got, want[:]) {
		e.t.Fatalf("recorded SHA-256 %x (%v), want %x", got, ok, want)
	}
}

// A SHA-256 over several writes, one with a checksum that does not match
// (its bytes are cut off again and leave nothing in the hash), a length
// declared late, and a state left behind by a write whose .info was never
// written (a kill): the bytes after it are read from the file.
func TestDiskSHA(t *testing.T) {
	e := newDiskEnv(t, true)
	data := testData(1000, 1)
	id := e.create(handler.FileInfo{SizeIsDeferred: true})
	ctx := context.Background()
	if err := e.write(ctx, id, 0, data[:100]); err != nil {
		t.Fatal(err)
	}
	// Other bytes than those the checksum states: 460, cut off.
	wrong := bytes.Clone(data[100:400])
	wrong[5] ^= 1
	if err := e.write(checkedCtx(t, data[100:400]), id, 100, wrong); !errors.Is(err, checksum.ErrMismatch) {
		t.Fatalf("checked write of other bytes: %v", err)
	}
	if err := e.write(checkedCtx(t, data[100:400]), id, 100, data[100:400]); err != nil {
		t.Fatal(err)
	}
	// A kill after the append, before the .info: the state stays at 400.
	infoPath := filepath.Join(e.b.Dir(), id+".info")
	before, _ := os.ReadFile(infoPath)
	if err := e.write(ctx, id, 400, data[400:700]); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(infoPath, before, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := e.write(ctx, id, 700, data[700:]); err != nil {
		t.Fatal(err)
	}
	up, _ := e.c.Core.GetUpload(ctx, id)
	if err := e.c.LengthDeferrer.AsLengthDeclarableUpload(up).DeclareLength(ctx, 1000); err != nil {
		t.Fatal(err)
	}
	if _, ok := e.recorded(id); ok {
		t.Fatal("a SHA-256 recorded before the upload was finished")
	}
	up, _ = e.c.Core.GetUpload(ctx, id)
	sum, ok, err := up.(objsha.Digester).SHA256(ctx)
	if want := sha256.Sum256(data); err != nil || !ok || !objsha.Equal(sum, want[:]) {
		t.Fatalf("SHA256 before finishing: %x %v %v", sum, ok, err)
	}
	if err := up.FinishUpload(ctx); err != nil {
		t.Fatal(err)
	}
	e.checkSHA(id, data)
}

// checkedCtx states the SHA-256 of want for a request body.
func checkedCtx(t *testing.T, want []byte) context.Context {
	t.Helper()
	sum := sha256.Sum256(want)
	r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
	r.Header.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	ex, err := checksum.FromRequest(r)
	if err != nil {
		t.Fatal(err)
	}
	return bodylen.With(checksum.With(context.Background(), ex), int64(len(want)))
}

// Without --object-sha256 only uploads that stated a SHA-256 keep one;
// concatenated uploads get theirs from their file.
func TestDiskSHAStatedAndConcatenated(t *testing.T) {
	for _, all := range []bool{false, true} {
		e := newDiskEnv(t, all)
		data := testData(300, 2)
		sum := sha256.Sum256(data)
		stated := e.create(handler.FileInfo{Size: 300, MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(sum[:])}})
		plain := e.create(handler.FileInfo{Size: 300})
		for _, id := range []string{stated, plain} {
			for off := 0; off < 300; off += 100 {
				if err := e.write(context.Background(), id, int64(off), data[off:off+100]); err != nil {
					t.Fatal(err)
				}
			}
		}
		e.checkSHA(stated, data)
		if _, ok := e.recorded(plain); ok != all {
			t.Fatalf("--object-sha256=%v: an upload that stated nothing has a SHA-256: %v", all, ok)
		}

		p1 := e.create(handler.FileInfo{Size: 100, IsPartial: true})
		p2 := e.create(handler.FileInfo{Size: 200, IsPartial: true})
		e.write(context.Background(), p1, 0, data[:100])
		e.write(context.Background(), p2, 0, data[100:])
		final := e.create(handler.FileInfo{Size: 300, IsFinal: true, PartialUploads: []string{p1, p2}})
		var partials []handler.Upload
		for _, id := range []string{p1, p2} {
			up, _ := e.c.Core.GetUpload(context.Background(), id)
			partials = append(partials, up)
		}
		up, _ := e.c.Core.GetUpload(context.Background(), final)
		if err := e.c.Concater.AsConcatableUpload(up).ConcatUploads(context.Background(), partials); err != nil {
			t.Fatal(err)
		}
		if all {
			e.checkSHA(final, data)
		}
	}
}
