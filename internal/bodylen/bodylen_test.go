package bodylen

import (
	"context"
	"testing"
)

func TestWithFrom(t *testing.T) {
	ctx := context.Background()
	if _, ok := From(ctx); ok {
		t.Fatal("length reported without With")
	}
	if _, ok := From(With(ctx, -1)); ok {
		t.Fatal("unknown length reported as known")
	}
	if n, ok := From(With(ctx, 0)); !ok || n != 0 {
		t.Fatalf("empty body: %d %v", n, ok)
	}
	if n, ok := From(With(ctx, 3<<20)); !ok || n != 3<<20 {
		t.Fatalf("got %d %v", n, ok)
	}
}
