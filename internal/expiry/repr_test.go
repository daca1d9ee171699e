package expiry_test

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/diskbackend"
	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/safestore"
)

// TestDiskReprMismatchExpires: an upload whose bytes do not have the
// SHA-256 its creation stated (Repr-Digest) is complete but never finished;
// docs/integrity.md: it answers 400 "until the client deletes it or it
// expires". On S3 its multipart upload stays open and the janitor expires
// it. On disk the janitor took every upload whose data file has its length
// for finished: such an upload never expired (and with --finished-info-ttl
// its .info was removed, leaving its data file for good).
func TestDiskReprMismatchExpires(t *testing.T) {
	ctx := context.Background()
	b, err := diskbackend.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inner := handler.NewStoreComposer()
	b.UseIn(inner)
	c := safestore.Wrap(inner, safestore.Options{Assembly: b.Assembly(), Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
	stated := sha256.Sum256([]byte("other bytes"))
	up, err := c.Core.NewUpload(ctx, handler.FileInfo{ID: "owner/0123456789abcdef0123456789abcdef", Size: 3,
		MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(stated[:])}})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := up.GetInfo(ctx)
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if err := up.FinishUpload(ctx); !errors.Is(err, objsha.ErrReprMismatch) {
		t.Fatalf("FinishUpload = %v, want %v", err, objsha.ErrReprMismatch)
	}
	inv := &expiry.Disk{Dir: b.Dir()}
	if _, ok, err := inv.Lookup(ctx, info.ID); err != nil || !ok {
		t.Fatalf("the janitor does not take the upload refused for its Repr-Digest for unfinished (ok=%v, %v): it never expires", ok, err)
	}
	finished := 0
	if err := inv.FinishedInfos(ctx, time.Now().Add(time.Hour), func(string) error { finished++; return nil }); err != nil {
		t.Fatal(err)
	}
	if finished != 0 {
		t.Fatalf("the janitor takes the upload refused for its Repr-Digest for finished")
	}
}
