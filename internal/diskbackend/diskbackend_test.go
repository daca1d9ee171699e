package diskbackend

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

// A concatenation tried again after one that failed half-way stores the
// partial uploads once.
func TestConcatenationStartsFromAnEmptyFile(t *testing.T) {
	ctx := context.Background()
	b, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := handler.NewStoreComposer()
	b.UseIn(c)
	var partials []handler.Upload
	for i, data := range []string{"abc", "de"} {
		up, err := c.Core.NewUpload(ctx, handler.FileInfo{ID: "o/p" + string(rune('1'+i)), Size: int64(len(data)), IsPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(ctx, 0, strings.NewReader(data)); err != nil {
			t.Fatal(err)
		}
		partials = append(partials, up)
	}
	final, err := c.Core.NewUpload(ctx, handler.FileInfo{ID: "o/f", Size: 5, IsFinal: true, PartialUploads: []string{"o/p1", "o/p2"}})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(b.Dir(), "o", "f")
	if err := os.WriteFile(path, []byte("ab"), 0o640); err != nil { // a first attempt's leftovers
		t.Fatal(err)
	}
	if err := c.Concater.AsConcatableUpload(final).ConcatUploads(ctx, partials); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "abcde" {
		t.Fatalf("final upload holds %q, want abcde", got)
	}
	if err := c.Concater.AsConcatableUpload(final).ConcatUploads(ctx, partials); err != nil {
		t.Fatal(err)
	}
	if got, _ := os.ReadFile(path); string(got) != "abcde" {
		t.Fatalf("after a second concatenation the final upload holds %q, want abcde", got)
	}
}
