package quota

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

type fixed struct {
	u   Usage
	err error
}

func (f fixed) Usage(context.Context, string) (Usage, error) { return f.u, f.err }

func TestCheck(t *testing.T) {
	ctx := context.Background()
	status := func(err error) int {
		var e handler.Error
		if errors.As(err, &e) {
			return e.HTTPResponse.StatusCode
		}
		return 0
	}
	if err := Check(ctx, fixed{err: errors.New("down")}, Limits{}, "o", 1); err != nil {
		t.Fatalf("no limits must not read usage: %v", err)
	}
	if err := Check(ctx, fixed{u: Usage{Uploads: 1, Bytes: 10}}, Limits{Uploads: 2, Bytes: 20}, "o", 10); err != nil {
		t.Fatalf("within limits: %v", err)
	}
	if s := status(Check(ctx, fixed{u: Usage{Uploads: 2}}, Limits{Uploads: 2}, "o", 0)); s != 403 {
		t.Fatalf("uploads over: %d", s)
	}
	if s := status(Check(ctx, fixed{u: Usage{Bytes: 15}}, Limits{Bytes: 20}, "o", 6)); s != 413 {
		t.Fatalf("bytes over: %d", s)
	}
	if err := Check(ctx, fixed{err: errors.New("s3 down")}, Limits{Uploads: 1}, "o", 0); err == nil || status(err) != 0 {
		t.Fatalf("usage error must pass through unmapped: %v", err)
	}
}

func TestDiskUsage(t *testing.T) {
	dir := t.TempDir()
	put := func(name, content string) {
		if err := os.MkdirAll(filepath.Join(dir, "owner"), 0o750); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "owner", name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	put("a.info", `{"ID":"owner/a","Size":10}`)
	put("a", "abc")
	put("done.info", `{"ID":"owner/done","Size":3}`)
	put("done", "abc")
	put("deferred.info", `{"ID":"owner/deferred","SizeIsDeferred":true}`)
	put("deferred", "abcdef")
	// A final upload waiting for partial uploads holds no bytes of its own.
	put("final.info", `{"ID":"owner/final","Size":20,"IsFinal":true,"PartialUploads":["owner/a","owner/b"]}`)
	put("final", "")
	u, err := Disk{Dir: dir}.Usage(t.Context(), "owner")
	if err != nil || u.Uploads != 3 || u.Bytes != 10 {
		t.Fatalf("Usage = %+v, %v; want 3 uploads, 10 bytes", u, err)
	}
	if u, err := (Disk{Dir: dir}).Usage(t.Context(), "nobody"); err != nil || u != (Usage{}) {
		t.Fatalf("Usage of an owner without uploads = %+v, %v", u, err)
	}
}
