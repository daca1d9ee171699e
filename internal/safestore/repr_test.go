package safestore

import (
	"context"
	"crypto/sha256"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/objsha"
)

// digestStore is fakeStore whose uploads keep their SHA-256 (objsha.Digester).
// lost uploads know it only once finished, as an S3 upload whose running
// state was lost.
type digestStore struct {
	*fakeStore
	lost bool
}

type digestUpload struct {
	*fakeUpload
	lost bool
}

func (d digestStore) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := d.fakeStore.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return digestUpload{up.(*fakeUpload), d.lost}, nil
}

func (d digestStore) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := d.fakeStore.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return digestUpload{up.(*fakeUpload), d.lost}, nil
}

func (d digestStore) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return u.(digestUpload).fakeUpload
}

func (u digestUpload) SHA256(context.Context) ([]byte, bool, error) {
	if sum, ok := objsha.Sum(u.info); ok {
		return sum, true, nil
	}
	if u.lost {
		return nil, false, nil
	}
	sum := sha256.Sum256(u.data)
	return sum[:], true, nil
}

func (u digestUpload) FinishUpload(ctx context.Context) error {
	sum := sha256.Sum256(u.data)
	u.info = objsha.WithSum(u.info, sum[:])
	return u.fakeUpload.FinishUpload(ctx)
}

// finishings counts the Lifecycle's Finishing calls.
type finishings struct{ n int }

func (f *finishings) Created(context.Context, handler.FileInfo) error { return nil }
func (f *finishings) Finishing(context.Context, handler.FileInfo) error {
	f.n++
	return nil
}
func (f *finishings) Terminating(context.Context, handler.FileInfo) error { return nil }

// An upload whose creation stated a SHA-256 (Repr-Digest) is finished only
// if its bytes have it: a mismatch answers 400 without assembling it or
// telling the application, and the upload can be deleted; an upload whose
// SHA-256 is known only once assembled is deleted if it does not match.
func TestReprDigest(t *testing.T) {
	for _, lost := range []bool{false, true} {
		for _, match := range []bool{true, false} {
			f := &fakeStore{uploads: map[string]*fakeUpload{}}
			c := handler.NewStoreComposer()
			d := digestStore{f, lost}
			c.UseCore(d)
			c.UseTerminater(d)
			lc := &finishings{}
			s := Wrap(c, Options{Lifecycle: lc, Log: slog.New(slog.NewTextHandler(io.Discard, nil))})
			ctx := context.Background()
			data := []byte("the bytes of the upload")
			stated := sha256.Sum256(data)
			if !match {
				stated = sha256.Sum256([]byte("other bytes"))
			}
			if _, err := s.Core.NewUpload(ctx, handler.FileInfo{ID: "u", Size: int64(len(data)), MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(stated[:])}}); err != nil {
				t.Fatal(err)
			}
			up, _ := s.Core.GetUpload(ctx, "u")
			if _, err := up.WriteChunk(ctx, 0, strings.NewReader(string(data))); err != nil {
				t.Fatal(err)
			}
			err := up.FinishUpload(ctx)
			switch {
			case match && err != nil:
				t.Fatalf("lost=%v: a matching upload: %v", lost, err)
			case match:
				if len(f.finished) != 1 || lc.n != 1 {
					t.Fatalf("lost=%v: finished %v, Finishing %d times", lost, f.finished, lc.n)
				}
			case !errors.Is(err, objsha.ErrReprMismatch):
				t.Fatalf("lost=%v: a mismatching upload: %v, want %v", lost, err, objsha.ErrReprMismatch)
			case !lost:
				if len(f.finished) != 0 || lc.n != 0 {
					t.Fatalf("a mismatching upload was finished (%v) or reported (%d)", f.finished, lc.n)
				}
				if err := s.Terminater.AsTerminatableUpload(up).Terminate(ctx); err != nil {
					t.Fatalf("deleting it: %v", err)
				}
				if _, ok := f.uploads["u"]; ok {
					t.Fatal("not deleted")
				}
			default:
				if _, ok := f.uploads["u"]; ok {
					t.Fatal("an upload assembled with another SHA-256 than stated is kept")
				}
			}
		}
	}
}
