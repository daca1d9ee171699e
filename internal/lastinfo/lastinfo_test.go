package lastinfo

import (
	"context"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

func TestRecordGet(t *testing.T) {
	Record(context.Background(), handler.FileInfo{ID: "a"}) // no record: must not panic
	if _, ok := Get(context.Background(), "a"); ok {
		t.Fatal("read without a record")
	}
	ctx := New(context.Background())
	if _, ok := Get(ctx, "a"); ok {
		t.Fatal("an empty record knows a")
	}
	Record(ctx, handler.FileInfo{ID: "a", Offset: 3})
	Record(ctx, handler.FileInfo{ID: "a", Offset: 5})
	Record(ctx, handler.FileInfo{ID: "b", Offset: 7})
	if info, ok := Get(ctx, "a"); !ok || info.Offset != 5 {
		t.Fatalf("a: %+v %v, want the last read (offset 5)", info, ok)
	}
	if info, ok := Get(ctx, "b"); !ok || info.Offset != 7 {
		t.Fatalf("b: %+v %v", info, ok)
	}
	if _, ok := Get(New(context.Background()), "a"); ok {
		t.Fatal("another request's record knows a")
	}
}
