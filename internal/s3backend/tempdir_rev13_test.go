package s3backend

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// The MinIO concatenation (s3stream joinInTempDir) stages the whole joined
// upload as "tusgate-concat-*" in the temp dir; a crash mid-join leaves it
// behind, and OpenTempDir must remove it like s3store's own leftovers.
func TestOpenTempDirRemovesConcatLeftovers(t *testing.T) {
	dir := t.TempDir()
	left := filepath.Join(dir, "tusgate-concat-123456")
	if err := os.WriteFile(left, []byte("joined partials"), 0o600); err != nil {
		t.Fatal(err)
	}
	td, err := OpenTempDir(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	defer td.Close()
	if _, err := os.Stat(left); !os.IsNotExist(err) {
		t.Fatalf("leftover %s of a crashed MinIO concatenation kept at start (err %v)", filepath.Base(left), err)
	}
}
