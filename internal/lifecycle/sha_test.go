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

// upload.finished carries the upload's SHA-256 (storage.sha256), and waits
// for it while it is being computed from the object, for a while.
func TestFinishedEventCarriesSHA256(t *testing.T) {
	ctx := context.Background()
	disk, err := diskbackend.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	disk.ObjectSHA256 = true
	c := handler.NewStoreComposer()
	disk.UseIn(c)
	up, err := c.Core.NewUpload(ctx, handler.FileInfo{ID: "owner/0123abcd", Size: 3})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader("abc")); err != nil {
		t.Fatal(err)
	}
	if err := up.FinishUpload(ctx); err != nil {
		t.Fatal(err)
	}
	info, _ := up.GetInfo(ctx)
	if err := disk.Assembly().(safestore.AssemblyRecorder).MarkAssembled(ctx, info); err != nil {
		t.Fatal(err)
	}
	clk := clock.NewFake(time.Now())
	l := &Lifecycle{o: Options{Backend: disk, Store: c}, clock: clk, assembly: disk.Assembly()}
	sum := sha256.Sum256([]byte("abc"))
	prepare := func() (webhook.Decision, webhook.Event) {
		ev := webhook.Event{Type: webhook.TypeFinished, Time: clk.Now(), Upload: webhook.Upload{ID: info.ID}}
		d, _, err := l.prepare(ctx, &ev)
		if err != nil {
			t.Fatal(err)
		}
		return d, ev
	}
	if d, ev := prepare(); d != webhook.Deliver || ev.Upload.Storage.SHA256 != objsha.Encode(sum[:]) {
		t.Fatalf("prepare: %v, storage %+v", d, ev.Upload.Storage)
	}
	b, _ := json.Marshal(webhook.Storage{SHA256: objsha.Encode(sum[:])})
	if !strings.Contains(string(b), `"sha256":"`+objsha.Encode(sum[:])+`"`) {
		t.Fatalf("JSON: %s", b)
	}

	// Being computed (as S3 does when the running state was lost).
	pending := objsha.WithPending(info, clk.Now())
	delete(pending.Storage, objsha.SumKey)
	raw, _ := json.Marshal(pending)
	if err := os.WriteFile(filepath.Join(disk.Dir(), info.ID+".info"), raw, 0o644); err != nil {
		t.Fatal(err)
	}
	if d, _ := prepare(); d != webhook.Retry {
		t.Fatalf("prepare while the SHA-256 is computed: %v", d)
	}
	clk.Advance(11 * time.Minute)
	if d, ev := prepare(); d != webhook.Deliver || ev.Upload.Storage.SHA256 != "" {
		t.Fatalf("prepare after the wait: %v, storage %+v", d, ev.Upload.Storage)
	}
}
