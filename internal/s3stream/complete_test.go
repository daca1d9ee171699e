package s3stream

import (
	"bytes"
	"context"
	"hash/crc32"
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"

	"github.com/tusgate/tusgate/internal/bodylen"
)

// An upload written by several store instances (another tusgate, or one
// restarted), in writes that leave tails, is completed by yet another one
// with the CRC32 of all its bytes: what the completion needs is in S3's
// listing. (checkObject checks the completion and the object's checksum.)
func TestFullObjectAcrossInstances(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		data := testData(333, 9)
		id := e.create(int64(len(data)), false)
		ctx := context.Background()
		for off, i := int64(0), 0; off < int64(len(data)); i++ {
			n := min(int64(20+i*37), int64(len(data))-off)
			// A fresh store each time: nothing is carried over in memory.
			up, err := e.fresh().GetUpload(ctx, id)
			if err != nil {
				t.Fatal(err)
			}
			got, err := up.WriteChunk(bodylen.With(ctx, n), off, reqBody(data[off:off+n]))
			if err != nil || got != n {
				t.Fatalf("WriteChunk at %d = %d, %v", off, got, err)
			}
			off += n
		}
		up, err := e.fresh().GetUpload(ctx, id)
		if err != nil {
			t.Fatal(err)
		}
		if err := up.FinishUpload(ctx); err != nil {
			t.Fatalf("FinishUpload: %v", err)
		}
		e.checkObject(id, data)
	})
}

// fresh is another store on the same S3, as another instance would have.
func (e *env) fresh() *Store {
	s := e.store
	return &Store{Inner: s.Inner, Objects: s.Objects, Parts: s.Parts, Stream: s.Stream, Parallel: s.Parallel, ObjectSHA256: s.ObjectSHA256, Buffers: s.Buffers, Log: s.Log}
}

// A CompleteMultipartUpload that failed is repeated later (safestore's
// repair, by any instance) with the same full-object checksum.
func TestFullObjectAfterFailedComplete(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream)
		data := testData(150, 10)
		id := e.create(int64(len(data)), false)
		fails := 1
		e.s3.configure(func(f *fakeS3) {
			f.failOp = func(op, key string) error {
				if op == "CompleteMultipartUpload" && fails > 0 {
					fails--
					return errS3
				}
				return nil
			}
		})
		if _, err := e.patch(id, 0, reqBody(data), int64(len(data))); err == nil {
			t.Fatal("the write whose completion failed succeeded")
		}
		e.checkOffset(id, int64(len(data)))
		up, err := e.store.GetUpload(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		if err := up.FinishUpload(context.Background()); err != nil {
			t.Fatalf("FinishUpload again: %v", err)
		}
		e.checkObject(id, data)
	})
}

// Uploads created without a checksum algorithm (before tusgate asked for
// one, on S3 servers without full-object checksums, with request checksums
// off) are completed as before: no checksums at all, which S3 requires of
// them. checkObject checks that.
func TestFullObjectNotAsked(t *testing.T) {
	forModes(t, func(t *testing.T, stream bool) {
		e := newEnv(t, stream, withoutChecksums)
		data := testData(150, 11)
		id := e.create(int64(len(data)), false)
		e.finish(id, data)
		if _, ok := e.s3.objectSum(e.key(id)); ok {
			t.Error("an object created without a checksum algorithm has a full-object checksum")
		}
		empty := e.create(0, false)
		up, err := e.store.GetUpload(context.Background(), empty)
		if err != nil {
			t.Fatal(err)
		}
		if err := up.FinishUpload(context.Background()); err != nil {
			t.Fatalf("FinishUpload of an empty upload: %v", err)
		}
		e.checkObject(empty, nil)
	})
}

// The empty upload's one empty part carries the CRC32 of nothing, and so
// does the object.
func TestFullObjectEmptyUpload(t *testing.T) {
	e := newEnv(t, true)
	id := e.create(0, false)
	up, err := e.store.GetUpload(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.FinishUpload(context.Background()); err != nil {
		t.Fatalf("FinishUpload: %v", err)
	}
	e.checkObject(id, nil)
	if c := e.s3.completion(e.key(id)); aws.ToString(c.ChecksumCRC32) != "AAAAAA==" {
		t.Errorf("empty object's CRC32 %q", aws.ToString(c.ChecksumCRC32))
	}
}

// MinIO refuses the CRC32 of nothing as an empty object's full-object
// checksum: the completion goes again without it, and the empty upload
// finishes.
func TestFullObjectEmptyUploadRefused(t *testing.T) {
	e := newEnv(t, true)
	e.s3.refuseEmptyCRC32 = true
	id := e.create(0, false)
	up, err := e.store.GetUpload(context.Background(), id)
	if err != nil {
		t.Fatal(err)
	}
	if err := up.FinishUpload(context.Background()); err != nil {
		t.Fatalf("FinishUpload: %v", err)
	}
	if got, ok := e.s3.object(e.key(id)); !ok || len(got) != 0 {
		t.Fatalf("object: %d bytes (exists: %v)", len(got), ok)
	}
	if c := e.s3.completion(e.key(id)); c.ChecksumCRC32 != nil || c.ChecksumType != types.ChecksumTypeFullObject {
		t.Errorf("the completion that went through: CRC32 %q type %q", aws.ToString(c.ChecksumCRC32), c.ChecksumType)
	}
}

// A part whose ETag in S3 is not the one the upload stored (another writer
// replaced it) stops the completion: the object would not be the bytes
// acknowledged.
func TestFullObjectPartReplaced(t *testing.T) {
	e := newEnv(t, true)
	data := testData(150, 12)
	id := e.create(int64(len(data)), false)
	ctx := context.Background()
	up, err := e.store.GetUpload(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := up.WriteChunk(bodylen.With(ctx, 100), 0, reqBody(data[:100])); err != nil || n != 100 {
		t.Fatalf("WriteChunk = %d, %v", n, err)
	}
	e.s3.configure(func(f *fakeS3) {
		f.upload(e.key(id)).parts[1] = bytes.Repeat([]byte("x"), int(testPartSize))
	})
	if n, err := up.WriteChunk(bodylen.With(ctx, 50), 100, reqBody(data[100:])); err != nil || n != 50 {
		t.Fatalf("WriteChunk = %d, %v", n, err)
	}
	if err := up.FinishUpload(ctx); err == nil {
		t.Fatal("the upload was completed with a replaced part")
	} else if !strings.Contains(err.Error(), "not in S3's listing") {
		t.Fatalf("FinishUpload: %v", err)
	}
	if e.s3.count("CompleteMultipartUpload") != 0 {
		t.Error("CompleteMultipartUpload was called")
	}
}

// Small partials are joined by s3store and stored with a PutObject (whose
// CRC32 s3backend's client asks the SDK for); partials of a part's minimum
// size or more become parts copied by S3 and a completion with the
// full-object CRC32 (TestConcatUploads).
func TestFullObjectSmallConcat(t *testing.T) {
	e := newEnv(t, true)
	ctx := context.Background()
	a, b := testData(10, 13), testData(5, 14)
	final, partials := finishedPartials(t, e, a, b)
	copies := e.s3.count("UploadPartCopy")
	if err := e.store.AsConcatableUpload(final).ConcatUploads(ctx, partials); err != nil {
		t.Fatalf("ConcatUploads: %v", err)
	}
	if e.s3.count("UploadPartCopy") != copies {
		t.Error("small partials were copied as parts")
	}
	info, _ := final.GetInfo(ctx)
	e.checkObject(info.ID, append(bytes.Clone(a), b...))
}

// withChecksums on listings as S3 servers give them.
func TestWithChecksums(t *testing.T) {
	crc := func(s string) *string { return aws.String(crc32Value(crc32.ChecksumIEEE([]byte(s)))) }
	parts := func() []types.CompletedPart {
		return []types.CompletedPart{{PartNumber: aws.Int32(1), ETag: aws.String(`"a"`)}, {PartNumber: aws.Int32(2), ETag: aws.String(`"b"`)}}
	}
	listed := []types.Part{
		{PartNumber: aws.Int32(1), ETag: aws.String(`"a"`), Size: aws.Int64(4), ChecksumCRC32: crc("tus-")},
		{PartNumber: aws.Int32(2), ETag: aws.String("b"), Size: aws.Int64(4), ChecksumCRC32: crc("gate")},
	}
	for _, c := range []struct {
		name       string
		algo       types.ChecksumAlgorithm
		ctype      types.ChecksumType
		partSums   bool
		whole      *string
		wholeError bool
	}{
		{name: "none", algo: ""},
		{name: "versitygw's none", algo: "null", ctype: "null"},
		{name: "composite", algo: types.ChecksumAlgorithmCrc32, ctype: types.ChecksumTypeComposite, partSums: true},
		{name: "algorithm without a type", algo: types.ChecksumAlgorithmCrc32, partSums: true},
		{name: "full object", algo: types.ChecksumAlgorithmCrc32, ctype: types.ChecksumTypeFullObject, partSums: true, whole: crc("tus-gate")},
		{name: "an algorithm tusgate never asks for", algo: types.ChecksumAlgorithmSha512, ctype: types.ChecksumTypeComposite},
	} {
		t.Run(c.name, func(t *testing.T) {
			in := &s3.CompleteMultipartUploadInput{MultipartUpload: &types.CompletedMultipartUpload{Parts: parts()}}
			if err := withChecksums(in, &s3.ListPartsOutput{ChecksumAlgorithm: c.algo, ChecksumType: c.ctype, Parts: listed}); err != nil {
				t.Fatal(err)
			}
			for i, p := range in.MultipartUpload.Parts {
				if (p.ChecksumCRC32 != nil) != c.partSums {
					t.Errorf("part %d: CRC32 %v", i+1, aws.ToString(p.ChecksumCRC32))
				}
			}
			if aws.ToString(in.ChecksumCRC32) != aws.ToString(c.whole) || (c.whole != nil) != (in.ChecksumType == types.ChecksumTypeFullObject) {
				t.Errorf("object: type %q CRC32 %q, want %q", in.ChecksumType, aws.ToString(in.ChecksumCRC32), aws.ToString(c.whole))
			}
		})
	}
	// A part missing from the listing, or with another ETag.
	in := &s3.CompleteMultipartUploadInput{MultipartUpload: &types.CompletedMultipartUpload{Parts: append(parts(), types.CompletedPart{PartNumber: aws.Int32(3), ETag: aws.String(`"c"`)})}}
	if err := withChecksums(in, &s3.ListPartsOutput{ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, Parts: listed}); err == nil {
		t.Error("a part S3 does not list was completed")
	}
	// A part listed without its checksum: no whole-object value.
	noSum := []types.Part{listed[0], {PartNumber: aws.Int32(2), ETag: aws.String(`"b"`), Size: aws.Int64(4)}}
	in = &s3.CompleteMultipartUploadInput{MultipartUpload: &types.CompletedMultipartUpload{Parts: parts()}}
	if err := withChecksums(in, &s3.ListPartsOutput{ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeFullObject, Parts: noSum}); err != nil {
		t.Fatal(err)
	}
	if in.ChecksumCRC32 != nil || in.ChecksumType != "" {
		t.Errorf("a whole-object checksum without every part's: %q %q", in.ChecksumType, aws.ToString(in.ChecksumCRC32))
	}
}
