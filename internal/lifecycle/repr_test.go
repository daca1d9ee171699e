package lifecycle

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/clock"
	"github.com/tusgate/tusgate/internal/diskbackend"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/webhook"
)

// TestFinishedEventNeverAnnouncesReprMismatch: an upload whose
// creation stated a SHA-256 (Repr-Digest) and whose running state was lost
// (S3, a kill) is compared only once assembled: safestore.finish tells the
// Lifecycle (upload.finished is stored), assembles it, the store records
// the SHA-256 it read from the object, and only then is the upload deleted
// if that does not match. In between (and for good if the deletion fails,
// or if the process dies while it reads the object), the upload is
// assembled with a recorded SHA-256 other than the stated one, or none:
// upload.finished must not be delivered for it.
func TestFinishedEventNeverAnnouncesReprMismatch(t *testing.T) {
	ctx := context.Background()
	disk, err := diskbackend.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	c := handler.NewStoreComposer()
	disk.UseIn(c)
	stated := sha256.Sum256([]byte("xyz"))
	up, err := c.Core.NewUpload(ctx, handler.FileInfo{ID: "owner/0123abcd", Size: 3,
		MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(stated[:])}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	// Assembled before the comparison, as on S3 after a lost state.
	if err := up.FinishUpload(ctx); err != nil {
		t.Fatal(err)
	}
	info, _ := up.GetInfo(ctx)
	if err := disk.Assembly().(safestore.AssemblyRecorder).MarkAssembled(ctx, info); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	l := &Lifecycle{o: Options{Backend: disk, Store: c}, clock: clk, assembly: disk.Assembly()}
	prepare := func() webhook.Decision {
		ev := webhook.Event{Type: webhook.TypeFinished, Time: clk.Now(), Upload: webhook.Upload{ID: info.ID}}
		d, _, err := l.prepare(ctx, &ev)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	if d := prepare(); d == webhook.Deliver {
		t.Fatalf("upload.finished delivered for an upload whose SHA-256 (recorded) is not the one its Repr-Digest stated")
	}

	// The process died while it read the object: no SHA-256, pending.
	pending := objsha.WithPending(info, clk.Now())
	delete(pending.Storage, objsha.SumKey)
	raw, _ := json.Marshal(pending)
	if err := os.WriteFile(filepath.Join(disk.Dir(), info.ID+".info"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if d := prepare(); d != webhook.Retry {
		t.Fatalf("prepare while the SHA-256 is computed: %v", d)
	}
	clk.Advance(11 * time.Minute)
	if d := prepare(); d == webhook.Deliver {
		t.Fatalf("upload.finished delivered for an upload never compared with its Repr-Digest")
	}
}
