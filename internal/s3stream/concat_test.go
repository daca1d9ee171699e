package s3stream

import (
	"bytes"
	"context"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// TestConcatUploads concatenates partial uploads written by the store.
func TestConcatUploads(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		ctx := context.Background()
		a, b := testData(100, 1), testData(40, 2)
		final, partials := finishedPartials(t, e, a, b)
		if err := e.store.AsConcatableUpload(final).ConcatUploads(ctx, partials); err != nil {
			t.Fatalf("ConcatUploads: %v", err)
		}
		info, _ := final.GetInfo(ctx)
		e.checkObject(info.ID, append(bytes.Clone(a), b...))

		first, _ := partials[0].GetInfo(ctx)
		other, err := e.store.Inner.GetUpload(ctx, first.ID)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.store.AsConcatableUpload(final).ConcatUploads(ctx, []handler.Upload{other}); err == nil {
			t.Error("ConcatUploads accepted an upload of another store")
		}
	})
}

// A partial larger than one copy may be (UploadPartCopy: 5 GiB on S3, the
// store's MaxPartSize) is copied in ranges, a part each.
func TestConcatLargePartialsInRanges(t *testing.T) {
	e := newEnv(t, true, func(s *s3store.S3Store) { s.MaxPartSize = 3 * testMinPart })
	e.s3.configure(func(f *fakeS3) { f.maxCopy = 3 * testMinPart })
	concatTwo(t, e)
	if n := e.s3.count("UploadPartCopy"); n != 3+1 {
		t.Errorf("%d UploadPartCopy calls; want 3 ranges of the first partial and 1 copy of the second", n)
	}
}

// MinIO copies no part into a multipart upload created with a checksum
// algorithm: the partials are joined in the temp dir instead.
func TestConcatWhenCopiesRefused(t *testing.T) {
	e := newEnv(t, true)
	e.s3.configure(func(f *fakeS3) { f.refuseCopies = true })
	concatTwo(t, e)
}

// concatTwo concatenates two partial uploads of several parts' minimum
// size and checks the final object.
func concatTwo(t *testing.T, e *env) {
	t.Helper()
	a, b := testData(int(7*testMinPart+3), 11), testData(int(2*testMinPart), 12)
	final, partials := finishedPartials(t, e, a, b)
	if err := e.store.AsConcatableUpload(final).ConcatUploads(context.Background(), partials); err != nil {
		t.Fatalf("ConcatUploads: %v", err)
	}
	info, _ := final.GetInfo(context.Background())
	e.checkObject(info.ID, append(bytes.Clone(a), b...))
}

// finishedPartials stores each of datas as a finished partial upload and
// creates the final upload that names them.
func finishedPartials(t *testing.T, e *env, datas ...[]byte) (final handler.Upload, partials []handler.Upload) {
	t.Helper()
	ctx := context.Background()
	var ids []string
	var size int64
	for _, data := range datas {
		up, err := e.store.NewUpload(ctx, handler.FileInfo{Size: int64(len(data)), IsPartial: true})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := up.GetInfo(ctx)
		if n, err := up.WriteChunk(ctx, 0, reqBody(data)); err != nil || n != int64(len(data)) {
			t.Fatalf("WriteChunk = %d, %v", n, err)
		}
		if err := up.FinishUpload(ctx); err != nil {
			t.Fatal(err)
		}
		partials = append(partials, up)
		ids = append(ids, info.ID)
		size += int64(len(data))
	}
	final, err := e.store.NewUpload(ctx, handler.FileInfo{Size: size, IsFinal: true, PartialUploads: ids})
	if err != nil {
		t.Fatal(err)
	}
	return final, partials
}
