package safestore

import (
	"context"
	"crypto/sha256"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/lockscope"
	"github.com/tusgate/tusgate/internal/objsha"
)

// stuckTerminater is digestStore whose deletions fail (S3 down for a
// moment) without deleting anything.
type stuckTerminater struct {
	digestStore
	fail bool
}

type stuckUpload struct {
	*fakeUpload
	t *stuckTerminater
}

func (s *stuckTerminater) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return stuckUpload{u.(digestUpload).fakeUpload, s}
}

func (u stuckUpload) Terminate(ctx context.Context) error {
	if u.t.fail {
		return errors.New("S3: 503 SlowDown")
	}
	return u.fakeUpload.Terminate(ctx)
}

// TestReprMismatchAssembledNotReportedFinished: an upload whose
// running SHA-256 was lost (S3, a kill) is compared with its Repr-Digest
// only once assembled, and deleted if it does not match. When that
// deletion fails, the completing request fails, but the upload was left
// assembled with a recorded SHA-256 other than the stated one, and every
// later request (a HEAD, holding the lock) reported it finished: the
// client took the upload for done, although its bytes are not the ones it
// stated. It must answer the mismatch (and try the deletion again).
func TestReprMismatchAssembledNotReportedFinished(t *testing.T) {
	f := &fakeStore{uploads: map[string]*fakeUpload{}}
	c := handler.NewStoreComposer()
	d := &stuckTerminater{digestStore: digestStore{f, true}, fail: true}
	c.UseCore(d)
	c.UseTerminater(d)
	a := assembly{}
	s := Wrap(c, Options{Assembly: a, Log: slog.New(slog.DiscardHandler)})
	ctx := context.Background()
	data := []byte("the bytes of the upload")
	stated := sha256.Sum256([]byte("other bytes"))
	if _, err := s.Core.NewUpload(ctx, handler.FileInfo{ID: "u", Size: int64(len(data)), MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(stated[:])}}); err != nil {
		t.Fatal(err)
	}
	up, _ := s.Core.GetUpload(ctx, "u")
	if _, err := up.WriteChunk(ctx, 0, strings.NewReader(string(data))); err != nil {
		t.Fatal(err)
	}
	if err := up.FinishUpload(ctx); err == nil {
		t.Fatal("FinishUpload of a mismatching upload whose deletion failed succeeded")
	}
	if _, ok := f.uploads["u"]; !ok {
		t.Fatal("the fake deleted the upload")
	}
	a["u"] = Assembled // its object exists

	// The next request, holding the lock (a HEAD).
	lctx := lockscope.New(context.Background())
	release := lockscope.Add(lctx, "u")
	defer release()
	up, _ = s.Core.GetUpload(lctx, "u")
	info, err := up.GetInfo(lctx)
	if err == nil {
		t.Fatalf("an assembled upload whose SHA-256 is not its Repr-Digest's is reported as it is (offset %d of %d): finished", info.Offset, info.Size)
	}
	// Once S3 answers again, the deletion goes through.
	d.fail = false
	up, _ = s.Core.GetUpload(lctx, "u")
	if _, err := up.GetInfo(lctx); !errors.Is(err, objsha.ErrReprMismatch) {
		t.Fatalf("GetInfo = %v, want %v", err, objsha.ErrReprMismatch)
	}
	if _, ok := f.uploads["u"]; ok {
		t.Fatal("the upload is not deleted once S3 answers again")
	}
}

// TestReprUnverifiedAssembledIsCheckedAgain: as above,
// but the process died while the store read the assembled object for its
// SHA-256 (S3: after a first kill lost the running state): the upload is
// assembled with no SHA-256, only the mark that it was being computed
// (objsha.PendingKey). It must not be reported finished before it was
// compared with its Repr-Digest (docs/integrity.md: "an object that does
// not have the stated SHA-256 is never left in the bucket").
//
// GetInfo, under the lock, asks the store to compute the SHA-256 again
// (objsha.Digester) and compares it; here the store cannot, so the upload
// is deleted as unverified rather than reported finished.
func TestReprUnverifiedAssembledIsCheckedAgain(t *testing.T) {
	f := &fakeStore{uploads: map[string]*fakeUpload{}}
	c := handler.NewStoreComposer()
	d := digestStore{f, true}
	c.UseCore(d)
	c.UseTerminater(d)
	a := assembly{"u": Assembled}
	s := Wrap(c, Options{Assembly: a, Log: slog.New(slog.DiscardHandler)})
	data := []byte("the bytes of the upload")
	stated := sha256.Sum256([]byte("other bytes"))
	info := handler.FileInfo{ID: "u", Size: int64(len(data)), Offset: int64(len(data)),
		MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(stated[:])}}
	info = objsha.WithPending(info, time.Now().Add(-24*time.Hour))
	f.uploads["u"] = &fakeUpload{s: f, info: info, data: data}

	lctx := lockscope.New(context.Background())
	release := lockscope.Add(lctx, "u")
	defer release()
	up, _ := s.Core.GetUpload(lctx, "u")
	got, err := up.GetInfo(lctx)
	if err == nil && got.Offset == got.Size {
		t.Fatalf("an assembled upload never compared with its Repr-Digest is reported finished")
	}
}
