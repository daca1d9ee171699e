package safestore

import (
	"bytes"
	"context"
	"testing"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

func TestDiskAssemblyInitMarksOnlyFinishedUploadsOnce(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	fs := filestore.New(dir)
	mk := func(id string, size int64, data string) handler.FileInfo {
		up, err := fs.NewUpload(ctx, handler.FileInfo{ID: id, Size: size})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(ctx, 0, bytes.NewReader([]byte(data))); err != nil {
			t.Fatal(err)
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return info
	}
	done := mk("owner/done", 3, "abc")
	open := mk("owner/open", 10, "abc")

	d := DiskAssembly{Dir: dir}
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		info handler.FileInfo
		want Assembly
	}{{done, Assembled}, {open, NotAssembled}} {
		if got, err := d.Assembly(ctx, c.info); err != nil || got != c.want {
			t.Fatalf("%s: Assembly = %v, %v; want %v", c.info.ID, got, err, c.want)
		}
	}
	// Later starts do not mark anything: a complete upload without a
	// marker is one whose finishing (approval) has not succeeded yet.
	late := mk("owner/late", 1, "x")
	if err := d.Init(); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Assembly(ctx, late); got != NotAssembled {
		t.Fatalf("upload completed after the first start: %v, want NotAssembled", got)
	}
	if err := d.Forget(ctx, done); err != nil {
		t.Fatal(err)
	}
	if got, _ := d.Assembly(ctx, done); got != NotAssembled {
		t.Fatalf("after Forget: %v", got)
	}
}
