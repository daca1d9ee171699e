package s3stream

import (
	"context"
	"errors"
	"hash/crc32"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// The fake's checksums, as AWS S3 (and versitygw) handle them for the
// CRC32 uploads tusgate creates:
//
//   - CreateMultipartUpload records ChecksumAlgorithm and ChecksumType
//     (COMPOSITE when only the algorithm is given); ListParts reports both
//     and each part's CRC32, of the bytes the fake holds;
//   - CompleteMultipartUpload of an upload created with an algorithm
//     requires every part's checksum, equal to the part's; of one created
//     without, refuses part checksums; refuses a ChecksumType other than
//     the creation's; and with FULL_OBJECT checks a whole-object CRC32
//     against the bytes (BadDigest);
//   - the completed object keeps its checksum (see fakeSums.object).

// fakeSums records the fake's completions. Its methods run under the
// fake's lock.
type fakeSums struct {
	completions []*s3.CompleteMultipartUploadInput
	objects     map[string]objectSum // by key
}

// objectSum is the checksum S3 keeps with a completed object.
type objectSum struct {
	algo  types.ChecksumAlgorithm
	ctype types.ChecksumType
	value string
}

// ask records what a CreateMultipartUpload asks for.
func (mp *fakeMultipart) ask(in *s3.CreateMultipartUploadInput) error {
	switch {
	case in.ChecksumAlgorithm == "" && in.ChecksumType != "":
		return apiError("InvalidRequest", "x-amz-checksum-type needs x-amz-checksum-algorithm")
	case in.ChecksumAlgorithm != "" && in.ChecksumAlgorithm != types.ChecksumAlgorithmCrc32:
		return apiError("NotImplemented", "the fake knows CRC32 only")
	}
	mp.algo, mp.ctype = in.ChecksumAlgorithm, in.ChecksumType
	if mp.algo != "" && mp.ctype == "" {
		mp.ctype = types.ChecksumTypeComposite
	}
	return nil
}

// listed is part n as ListParts reports it.
func (mp *fakeMultipart) listed(n int32) types.Part {
	data := mp.parts[n]
	p := types.Part{PartNumber: aws.Int32(n), Size: aws.Int64(int64(len(data))), ETag: aws.String(etagOf(data))}
	if mp.algo == types.ChecksumAlgorithmCrc32 {
		p.ChecksumCRC32 = aws.String(crc32Value(crc32.ChecksumIEEE(data)))
	}
	return p
}

// complete checks a CompleteMultipartUpload's checksums against the
// upload's parts and its object obj, and records the object's checksum.
func (s *fakeSums) complete(mp *fakeMultipart, in *s3.CompleteMultipartUploadInput, obj []byte) error {
	if in.ChecksumType != "" && in.ChecksumType != mp.ctype {
		return apiError("InvalidRequest", "the upload was created with checksum type %q, not %q", mp.ctype, in.ChecksumType)
	}
	if in.ChecksumCRC32 != nil && mp.algo != types.ChecksumAlgorithmCrc32 {
		return apiError("InvalidRequest", "a CRC32 for an upload created with algorithm %q", mp.algo)
	}
	for _, p := range in.MultipartUpload.Parts {
		n := aws.ToInt32(p.PartNumber)
		switch {
		case mp.algo == "" && p.ChecksumCRC32 != nil:
			return apiError("InvalidPart", "part %d has a checksum; the upload was created without", n)
		case mp.algo != "" && p.ChecksumCRC32 == nil:
			return apiError("InvalidRequest", "the upload was created with a checksum; part %d has none", n)
		case p.ChecksumCRC32 != nil && *p.ChecksumCRC32 != crc32Value(crc32.ChecksumIEEE(mp.parts[n])):
			return apiError("InvalidPart", "part %d: wrong CRC32 %s", n, *p.ChecksumCRC32)
		}
	}
	whole := crc32Value(crc32.ChecksumIEEE(obj))
	if mp.ctype == types.ChecksumTypeFullObject && in.ChecksumCRC32 != nil && *in.ChecksumCRC32 != whole {
		return apiError("BadDigest", "the object's CRC32 is %s, not %s", whole, *in.ChecksumCRC32)
	}
	copied := *in
	copied.MultipartUpload = &types.CompletedMultipartUpload{Parts: append([]types.CompletedPart(nil), in.MultipartUpload.Parts...)}
	s.completions = append(s.completions, &copied)
	if s.objects == nil {
		s.objects = map[string]objectSum{}
	}
	switch mp.ctype {
	case types.ChecksumTypeFullObject:
		s.objects[mp.key] = objectSum{mp.algo, mp.ctype, whole}
	case "":
		delete(s.objects, mp.key)
	default: // COMPOSITE: not needed by the tests
		s.objects[mp.key] = objectSum{mp.algo, mp.ctype, ""}
	}
	return nil
}

// completion returns the last CompleteMultipartUpload that completed key.
func (f *fakeS3) completion(key string) *s3.CompleteMultipartUploadInput {
	f.mu.Lock()
	defer f.mu.Unlock()
	for i := len(f.sums.completions) - 1; i >= 0; i-- {
		if c := f.sums.completions[i]; aws.ToString(c.Key) == key {
			return c
		}
	}
	return nil
}

// objectSum returns the checksum the completed object key carries.
func (f *fakeS3) objectSum(key string) (objectSum, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.sums.objects[key]
	return s, ok
}

// fullObjectAsker is s3store's S3 client in the store tests: like
// s3backend's GuardedClient, it asks for a FULL_OBJECT CRC32 at every
// CreateMultipartUpload.
type fullObjectAsker struct{ s3store.S3API }

func (a fullObjectAsker) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	in.ChecksumAlgorithm, in.ChecksumType = types.ChecksumAlgorithmCrc32, types.ChecksumTypeFullObject
	return a.S3API.CreateMultipartUpload(ctx, in, opts...)
}

// withoutChecksums is a newEnv option: uploads are created without a
// checksum algorithm, as before tusgate asked for one, on an S3 without
// full-object checksums, or with request checksums off.
func withoutChecksums(s *s3store.S3Store) {
	if a, ok := s.Service.(fullObjectAsker); ok {
		s.Service = a.S3API
	}
}

// checkFullObject checks, for an upload created with a FULL_OBJECT CRC32,
// that its completion carried the CRC32 of want with that type and every
// part's CRC32, and that the object keeps it; for one created without, that
// the completion carried no checksum.
func (e *env) checkFullObject(id string, want []byte) {
	e.t.Helper()
	key := e.key(id)
	c := e.s3.completion(key)
	if c == nil {
		return // stored with PutObject (a small concatenation)
	}
	_, asked := e.store.Inner.Service.(fullObjectAsker)
	if !asked {
		if c.ChecksumType != "" || c.ChecksumCRC32 != nil {
			e.t.Errorf("completion of an upload created without checksums: type %q CRC32 %v", c.ChecksumType, aws.ToString(c.ChecksumCRC32))
		}
		return
	}
	wantSum := crc32Value(crc32.ChecksumIEEE(want))
	if c.ChecksumType != types.ChecksumTypeFullObject || aws.ToString(c.ChecksumCRC32) != wantSum {
		e.t.Errorf("completion of %s: checksum type %q CRC32 %q, want FULL_OBJECT %s", key, c.ChecksumType, aws.ToString(c.ChecksumCRC32), wantSum)
	}
	for _, p := range c.MultipartUpload.Parts {
		if p.ChecksumCRC32 == nil {
			e.t.Errorf("completion of %s: part %d without its CRC32", key, aws.ToInt32(p.PartNumber))
		}
	}
	if sum, ok := e.s3.objectSum(key); !ok || sum.value != wantSum || sum.ctype != types.ChecksumTypeFullObject {
		e.t.Errorf("object %s keeps checksum %+v, want FULL_OBJECT CRC32 %s", key, sum, wantSum)
	}
}

// The fake refuses what S3 refuses, so that the store tests' completions
// prove something.
func TestFakeS3Checksums(t *testing.T) {
	ctx := context.Background()
	b := aws.String("b")
	for _, c := range []struct {
		name   string
		create s3.CreateMultipartUploadInput
		parts  func(p []types.CompletedPart) // changes the completed parts
		in     func(in *s3.CompleteMultipartUploadInput)
		code   string
	}{
		{name: "part checksums without an algorithm", parts: func(p []types.CompletedPart) { p[0].ChecksumCRC32 = aws.String("AAAAAA==") }, code: "InvalidPart"},
		{name: "full-object type without an algorithm", in: func(in *s3.CompleteMultipartUploadInput) { in.ChecksumType = types.ChecksumTypeFullObject }, code: "InvalidRequest"},
		{name: "no part checksums", create: fullObjectCRC32(), parts: func(p []types.CompletedPart) { p[1].ChecksumCRC32 = nil }, code: "InvalidRequest"},
		{name: "a wrong part checksum", create: fullObjectCRC32(), parts: func(p []types.CompletedPart) { p[1].ChecksumCRC32 = p[0].ChecksumCRC32 }, code: "InvalidPart"},
		{name: "a wrong object checksum", create: fullObjectCRC32(), in: func(in *s3.CompleteMultipartUploadInput) {
			in.ChecksumType, in.ChecksumCRC32 = types.ChecksumTypeFullObject, aws.String("AAAAAA==")
		}, code: "BadDigest"},
		{name: "composite asked as full object", create: s3.CreateMultipartUploadInput{ChecksumAlgorithm: types.ChecksumAlgorithmCrc32}, in: func(in *s3.CompleteMultipartUploadInput) {
			in.ChecksumType = types.ChecksumTypeFullObject
		}, code: "InvalidRequest"},
	} {
		t.Run(c.name, func(t *testing.T) {
			f := newFakeS3("b")
			f.minPart = 4
			create := c.create
			create.Bucket, create.Key = b, aws.String("k")
			mpu, err := f.CreateMultipartUpload(ctx, &create)
			if err != nil {
				t.Fatal(err)
			}
			var parts []types.CompletedPart
			for n, content := range []string{"abcd", "ef"} {
				out, err := f.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("k"), UploadId: mpu.UploadId, PartNumber: aws.Int32(int32(n + 1)), Body: bytesReaderOf([]byte(content)), ContentLength: aws.Int64(int64(len(content)))})
				if err != nil {
					t.Fatal(err)
				}
				cp := types.CompletedPart{PartNumber: aws.Int32(int32(n + 1)), ETag: out.ETag}
				if create.ChecksumAlgorithm != "" {
					cp.ChecksumCRC32 = aws.String(crc32Value(crc32.ChecksumIEEE([]byte(content))))
				}
				parts = append(parts, cp)
			}
			if c.parts != nil {
				c.parts(parts)
			}
			in := &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("k"), UploadId: mpu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}}
			if c.in != nil {
				c.in(in)
			}
			_, err = f.CompleteMultipartUpload(ctx, in)
			var apiErr smithy.APIError
			if !errors.As(err, &apiErr) || apiErr.ErrorCode() != c.code {
				t.Fatalf("CompleteMultipartUpload: %v, want %s", err, c.code)
			}
		})
	}
}

// fullObjectCRC32 is what s3backend asks for at CreateMultipartUpload.
func fullObjectCRC32() s3.CreateMultipartUploadInput {
	return s3.CreateMultipartUploadInput{ChecksumAlgorithm: types.ChecksumAlgorithmCrc32, ChecksumType: types.ChecksumTypeFullObject}
}
