package s3stream

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"testing/iotest"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"github.com/tus/tusd/v2/pkg/s3store"
)

// fakeS3 is an in-memory S3 with one bucket. It behaves like an HTTP client
// talking to S3 would: a request body that is shorter or longer than its
// ContentLength, or whose Read fails, fails the request, and the request
// then has no effect. Bodies are never rewound.
type fakeS3 struct {
	bucket string
	// minPart is the minimum size of every part but the last at
	// CompleteMultipartUpload (S3: 5 MiB).
	minPart int64
	// pageSize is the most parts one ListParts returns.
	pageSize int32

	// failUploadPart, if set, is consulted on each UploadPart whose body was
	// read completely (attempt counts the calls for that part number,
	// from 1). An error fails the call, like S3 answering 500 after the
	// body: nothing is stored.
	failUploadPart func(partNumber int32, attempt int) error
	// abortUploadPart, if set, is consulted on each UploadPart before its
	// body is read. A non-nil error fails the call after read bytes of the
	// body, like S3 or the network failing mid-request.
	abortUploadPart func(partNumber int32, attempt int) (read int64, err error)
	// beginUploadPart, if set, is called when an UploadPart call arrives,
	// before its body is read.
	beginUploadPart func(partNumber int32)
	// afterUploadPart, if set, is called with each UploadPart call once
	// it is recorded (and its part stored if it succeeded).
	afterUploadPart func(partCall)
	// refuseCopies refuses every UploadPartCopy as MinIO does into a
	// multipart upload with a checksum algorithm.
	refuseCopies bool
	// maxCopy is the most bytes one UploadPartCopy copies (S3: 5 GiB);
	// 0: no limit.
	maxCopy int64
	// refuseEmptyCRC32 answers a completion that gives an empty object a
	// full-object CRC32 with XAmzContentChecksumMismatch, as MinIO does
	// (it keeps no checksum for an empty object).
	refuseEmptyCRC32 bool
	// failOp, if set, is consulted by the other operations with their name
	// and key; an error fails the operation before it has any effect.
	failOp func(op, key string) error

	// opsLeft, when not negative, is how many more operations the fake
	// serves before it acts as if the process using it died: every later
	// operation fails without effect, and an UploadPart whose body was
	// still being read when that happened stores nothing (see killAfter).
	opsLeft int

	mu        sync.Mutex
	objects   map[string][]byte
	meta      map[string]map[string]string // user metadata of objects
	tags      map[string]map[string]string // tags of objects
	gets      map[string]int               // GetObject calls by key
	uploads   map[string]*fakeMultipart
	completed map[string][]int64 // key: sizes of the parts it was completed from
	nextID    int
	ops       map[string]int
	attempts  map[string]int
	partCalls []partCall
	sums      fakeSums
}

type fakeMultipart struct {
	key   string
	parts map[int32][]byte
	// what CreateMultipartUpload asked for (see fake_sums_test.go)
	algo  types.ChecksumAlgorithm
	ctype types.ChecksumType
}

// partCall records one UploadPart call.
type partCall struct {
	key           string
	uploadID      string
	part          int32
	attempt       int
	seeker        bool  // the body implemented io.Seeker
	contentLength int64 // -1: not set
	retries       int   // s3.Options.RetryMaxAttempts after the call's options
	err           error
}

var (
	_ s3store.S3API = (*fakeS3)(nil)
	_ API           = (*fakeS3)(nil)
	_ PartUploader  = (*fakeS3)(nil)
)

func newFakeS3(bucket string) *fakeS3 {
	return &fakeS3{
		bucket:    bucket,
		minPart:   5 << 20,
		pageSize:  1000,
		opsLeft:   -1,
		objects:   map[string][]byte{},
		meta:      map[string]map[string]string{},
		tags:      map[string]map[string]string{},
		gets:      map[string]int{},
		uploads:   map[string]*fakeMultipart{},
		completed: map[string][]int64{},
		ops:       map[string]int{},
		attempts:  map[string]int{},
	}
}

func apiError(code, format string, args ...any) error {
	return &smithy.GenericAPIError{Code: code, Message: fmt.Sprintf(format, args...)}
}

func etagOf(b []byte) string {
	sum := md5.Sum(b)
	return `"` + hex.EncodeToString(sum[:]) + `"`
}

// begin counts an operation and checks the bucket and the failOp hook. It
// must be called with f.mu held.
func (f *fakeS3) begin(op string, bucket *string, key string) error {
	f.ops[op]++
	if err := f.spend(); err != nil {
		return err
	}
	if aws.ToString(bucket) != f.bucket {
		return &types.NoSuchBucket{Message: aws.String(aws.ToString(bucket))}
	}
	if f.failOp != nil {
		if err := f.failOp(op, key); err != nil {
			return err
		}
	}
	return nil
}

var errDied = errors.New("fake s3: the process died")

// spend counts one operation against opsLeft. It must be called with f.mu
// held.
func (f *fakeS3) spend() error {
	switch {
	case f.opsLeft == 0:
		return errDied
	case f.opsLeft > 0:
		f.opsLeft--
	}
	return nil
}

// killAfter lets n more operations through, then fails every operation
// as if the process died (n < 0: never).
func (f *fakeS3) killAfter(n int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.opsLeft = n
}

// readBody reads a request body as net/http sends it: exactly length bytes
// when length is set, failing if the body is shorter, longer or fails.
func readBody(body io.Reader, length *int64) ([]byte, error) {
	if body == nil {
		body = bytes.NewReader(nil)
	}
	if length == nil {
		if _, ok := body.(io.Seeker); !ok {
			return nil, errors.New("fake s3: an unseekable body needs a ContentLength")
		}
		return io.ReadAll(body)
	}
	n := *length
	buf := make([]byte, n)
	k, err := io.ReadFull(body, buf)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			return nil, fmt.Errorf("http: ContentLength=%d with Body length %d", n, k)
		}
		return nil, fmt.Errorf("fake s3: reading the request body after %d bytes: %w", k, err)
	}
	extra, err := io.Copy(io.Discard, body)
	if err != nil {
		return nil, fmt.Errorf("fake s3: reading the request body: %w", err)
	}
	if extra > 0 {
		return nil, fmt.Errorf("http: ContentLength=%d with Body length %d", n, n+extra)
	}
	return buf, nil
}

func (f *fakeS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	var o s3.Options
	for _, opt := range opts {
		opt(&o)
	}
	key, id, num := aws.ToString(in.Key), aws.ToString(in.UploadId), aws.ToInt32(in.PartNumber)
	call := partCall{key: key, uploadID: id, part: num, contentLength: -1, retries: o.RetryMaxAttempts}
	if in.ContentLength != nil {
		call.contentLength = *in.ContentLength
	}
	_, call.seeker = in.Body.(io.Seeker)

	f.mu.Lock()
	f.ops["UploadPart"]++
	f.attempts[id+"/"+strconv.Itoa(int(num))]++
	call.attempt = f.attempts[id+"/"+strconv.Itoa(int(num))]
	mp := f.uploads[id]
	abort, fail, begin := f.abortUploadPart, f.failUploadPart, f.beginUploadPart
	err := f.spend()
	switch {
	case err != nil:
	case aws.ToString(in.Bucket) != f.bucket:
		err = &types.NoSuchBucket{}
	case mp == nil || mp.key != key:
		err = &types.NoSuchUpload{Message: aws.String(id)}
	case num < 1 || num > 10000:
		err = apiError("InvalidArgument", "part number %d", num)
	}
	f.mu.Unlock()
	if begin != nil {
		begin(num)
	}

	var data []byte
	if err == nil && abort != nil {
		var read int64
		if read, err = abort(num, call.attempt); err != nil && in.Body != nil {
			_, _ = io.CopyN(io.Discard, in.Body, read)
		}
	}
	if err == nil {
		data, err = readBody(in.Body, in.ContentLength)
	}
	if err == nil && fail != nil {
		err = fail(num, call.attempt)
	}

	f.mu.Lock()
	if err == nil && f.uploads[id] != mp {
		err = &types.NoSuchUpload{Message: aws.String(id)}
	}
	if err == nil && f.opsLeft == 0 {
		err = errDied // killed while the body was on its way
	}
	call.err = err
	f.partCalls = append(f.partCalls, call)
	if err == nil {
		mp.parts[num] = data
	}
	after := f.afterUploadPart
	f.mu.Unlock()
	if after != nil {
		after(call)
	}
	if err != nil {
		return nil, err
	}
	return &s3.UploadPartOutput{ETag: aws.String(etagOf(data))}, nil
}

func (f *fakeS3) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, id := aws.ToString(in.Key), aws.ToString(in.UploadId)
	if err := f.begin("ListParts", in.Bucket, key); err != nil {
		return nil, err
	}
	mp := f.uploads[id]
	if mp == nil || mp.key != key {
		return nil, &types.NoSuchUpload{Message: aws.String(id)}
	}
	page := f.pageSize
	if in.MaxParts != nil && *in.MaxParts < page {
		page = max(*in.MaxParts, 0)
	}
	marker := 0
	if m := aws.ToString(in.PartNumberMarker); m != "" {
		var err error
		if marker, err = strconv.Atoi(m); err != nil {
			return nil, apiError("InvalidArgument", "part-number-marker %q", m)
		}
	}
	var nums []int32
	for n := range mp.parts {
		if int(n) > marker {
			nums = append(nums, n)
		}
	}
	slices.Sort(nums)
	out := &s3.ListPartsOutput{Bucket: in.Bucket, Key: in.Key, UploadId: in.UploadId, MaxParts: aws.Int32(page)}
	out.ChecksumAlgorithm, out.ChecksumType = mp.algo, mp.ctype
	for _, n := range nums[:min(len(nums), int(page))] {
		out.Parts = append(out.Parts, mp.listed(n))
	}
	if len(out.Parts) > 0 {
		out.NextPartNumberMarker = aws.String(strconv.Itoa(int(*out.Parts[len(out.Parts)-1].PartNumber)))
	}
	out.IsTruncated = aws.Bool(page > 0 && len(nums) > len(out.Parts))
	return out, nil
}

func (f *fakeS3) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	key := aws.ToString(in.Key)
	f.mu.Lock()
	err := f.begin("PutObject", in.Bucket, key)
	f.mu.Unlock()
	if err != nil {
		return nil, err
	}
	data, err := readBody(in.Body, in.ContentLength)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.opsLeft == 0 {
		return nil, errDied // killed while the body was on its way
	}
	f.objects[key] = data
	f.meta[key] = maps.Clone(in.Metadata)
	return &s3.PutObjectOutput{ETag: aws.String(etagOf(data))}, nil
}

func (f *fakeS3) GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	if err := f.begin("GetObject", in.Bucket, key); err != nil {
		return nil, err
	}
	f.gets[key]++
	data, ok := f.objects[key]
	if !ok {
		return nil, &types.NoSuchKey{Message: aws.String(key)}
	}
	data = bytes.Clone(data)
	return &s3.GetObjectOutput{
		Body:          io.NopCloser(bytes.NewReader(data)),
		ContentLength: aws.Int64(int64(len(data))),
		ETag:          aws.String(etagOf(data)),
		Metadata:      maps.Clone(f.meta[key]),
	}, nil
}

func (f *fakeS3) HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	if err := f.begin("HeadObject", in.Bucket, key); err != nil {
		return nil, err
	}
	data, ok := f.objects[key]
	if !ok {
		return nil, &types.NotFound{Message: aws.String(key)}
	}
	return &s3.HeadObjectOutput{ContentLength: aws.Int64(int64(len(data))), ETag: aws.String(etagOf(data)), Metadata: maps.Clone(f.meta[key])}, nil
}

func (f *fakeS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	if err := f.begin("DeleteObject", in.Bucket, key); err != nil {
		return nil, err
	}
	delete(f.objects, key)
	delete(f.meta, key)
	return &s3.DeleteObjectOutput{}, nil
}

func (f *fakeS3) DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, opts ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if err := f.begin("DeleteObjects", in.Bucket, ""); err != nil {
		return nil, err
	}
	out := &s3.DeleteObjectsOutput{}
	for _, o := range in.Delete.Objects {
		delete(f.objects, aws.ToString(o.Key))
		delete(f.meta, aws.ToString(o.Key))
		out.Deleted = append(out.Deleted, types.DeletedObject{Key: o.Key})
	}
	return out, nil
}

func (f *fakeS3) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	if err := f.begin("CreateMultipartUpload", in.Bucket, key); err != nil {
		return nil, err
	}
	mp := &fakeMultipart{key: key, parts: map[int32][]byte{}}
	if err := mp.ask(in); err != nil {
		return nil, err
	}
	f.nextID++
	id := fmt.Sprintf("mpu%d", f.nextID)
	f.uploads[id] = mp
	return &s3.CreateMultipartUploadOutput{Bucket: in.Bucket, Key: in.Key, UploadId: aws.String(id), ChecksumAlgorithm: mp.algo, ChecksumType: mp.ctype}, nil
}

func (f *fakeS3) AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, id := aws.ToString(in.Key), aws.ToString(in.UploadId)
	if err := f.begin("AbortMultipartUpload", in.Bucket, key); err != nil {
		return nil, err
	}
	if mp := f.uploads[id]; mp == nil || mp.key != key {
		return nil, &types.NoSuchUpload{Message: aws.String(id)}
	}
	delete(f.uploads, id)
	return &s3.AbortMultipartUploadOutput{}, nil
}

func (f *fakeS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, id := aws.ToString(in.Key), aws.ToString(in.UploadId)
	if err := f.begin("CompleteMultipartUpload", in.Bucket, key); err != nil {
		return nil, err
	}
	mp := f.uploads[id]
	if mp == nil || mp.key != key {
		return nil, &types.NoSuchUpload{Message: aws.String(id)}
	}
	if in.MultipartUpload == nil || len(in.MultipartUpload.Parts) == 0 {
		return nil, apiError("MalformedXML", "no parts")
	}
	parts := in.MultipartUpload.Parts
	var obj []byte
	var sizes []int64
	prev := int32(0)
	for i, p := range parts {
		num := aws.ToInt32(p.PartNumber)
		if num <= prev {
			return nil, apiError("InvalidPartOrder", "part %d follows part %d", num, prev)
		}
		prev = num
		data, ok := mp.parts[num]
		if !ok || aws.ToString(p.ETag) != etagOf(data) {
			return nil, apiError("InvalidPart", "part %d with ETag %s", num, aws.ToString(p.ETag))
		}
		if i < len(parts)-1 && int64(len(data)) < f.minPart {
			return nil, apiError("EntityTooSmall", "part %d has %d bytes", num, len(data))
		}
		obj = append(obj, data...)
		sizes = append(sizes, int64(len(data)))
	}
	if f.refuseEmptyCRC32 && len(obj) == 0 && in.ChecksumCRC32 != nil {
		return nil, apiError("XAmzContentChecksumMismatch", "The provided 'x-amz-checksum' header does not match what was computed.")
	}
	if err := f.sums.complete(mp, in, obj); err != nil {
		return nil, err
	}
	f.objects[key] = obj
	f.meta[key] = nil
	f.completed[key] = sizes
	delete(f.uploads, id)
	return &s3.CompleteMultipartUploadOutput{Bucket: in.Bucket, Key: in.Key, ETag: aws.String(etagOf(obj))}, nil
}

func (f *fakeS3) UploadPartCopy(ctx context.Context, in *s3.UploadPartCopyInput, opts ...func(*s3.Options)) (*s3.UploadPartCopyOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key, id := aws.ToString(in.Key), aws.ToString(in.UploadId)
	if err := f.begin("UploadPartCopy", in.Bucket, key); err != nil {
		return nil, err
	}
	mp := f.uploads[id]
	if mp == nil || mp.key != key {
		return nil, &types.NoSuchUpload{Message: aws.String(id)}
	}
	src, ok := strings.CutPrefix(aws.ToString(in.CopySource), f.bucket+"/")
	if !ok {
		return nil, &types.NoSuchBucket{}
	}
	data, ok := f.objects[src]
	if !ok {
		return nil, &types.NoSuchKey{Message: aws.String(src)}
	}
	if f.refuseCopies {
		return nil, apiError("InvalidArgument", "Invalid arguments provided for %s: (checksum missing, want \"CRC32\", got \"\")", key)
	}
	if r := aws.ToString(in.CopySourceRange); r != "" {
		var first, last int
		if _, err := fmt.Sscanf(r, "bytes=%d-%d", &first, &last); err != nil || first > last || last >= len(data) {
			return nil, apiError("InvalidArgument", "CopySourceRange %q of %d bytes", r, len(data))
		}
		data = data[first : last+1]
	}
	if f.maxCopy > 0 && int64(len(data)) > f.maxCopy {
		return nil, apiError("InvalidRequest", "The specified copy source is larger than the maximum allowable size for a copy source: %d", f.maxCopy)
	}
	mp.parts[aws.ToInt32(in.PartNumber)] = bytes.Clone(data)
	return &s3.UploadPartCopyOutput{CopyPartResult: &types.CopyPartResult{ETag: aws.String(etagOf(data))}}, nil
}

// configure changes the fake's settings and hooks under its lock.
func (f *fakeS3) configure(fn func(f *fakeS3)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// Inspection for tests.

func (f *fakeS3) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.ops[op]
}

func (f *fakeS3) object(key string) ([]byte, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	data, ok := f.objects[key]
	return bytes.Clone(data), ok
}

func (f *fakeS3) upload(key string) *fakeMultipart {
	for _, mp := range f.uploads {
		if mp.key == key {
			return mp
		}
	}
	return nil
}

// partSizes returns the sizes of the parts of key's multipart upload in
// progress, by part number.
func (f *fakeS3) partSizes(key string) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	mp := f.upload(key)
	if mp == nil {
		return nil
	}
	nums := slices.Sorted(maps.Keys(mp.parts))
	sizes := make([]int64, len(nums))
	for i, n := range nums {
		sizes[i] = int64(len(mp.parts[n]))
	}
	return sizes
}

// partNumbers returns the numbers of the parts of key's multipart upload
// in progress, in order.
func (f *fakeS3) partNumbers(key string) []int32 {
	f.mu.Lock()
	defer f.mu.Unlock()
	mp := f.upload(key)
	if mp == nil {
		return nil
	}
	return slices.Sorted(maps.Keys(mp.parts))
}

// completedParts returns the sizes of the parts key was completed from.
func (f *fakeS3) completedParts(key string) []int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.completed[key])
}

// held is how many bytes of the upload at key S3 holds: its parts and its
// .part tail if that starts where they end, or the completed object.
func (f *fakeS3) held(key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mp := f.upload(key); mp != nil {
		n := int64(0)
		for _, p := range mp.parts {
			n += int64(len(p))
		}
		if tail, ok := f.objects[key+".part"]; ok {
			start, known, _ := tailStart(f.meta[key+".part"])
			if !known || start == n {
				n += int64(len(tail))
			}
		}
		return n
	}
	return int64(len(f.objects[key]))
}

// callsFor returns the UploadPart calls for key.
func (f *fakeS3) callsFor(key string) []partCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	var calls []partCall
	for _, c := range f.partCalls {
		if c.key == key {
			calls = append(calls, c)
		}
	}
	return calls
}

// TestFakeS3 checks the fake's S3 behaviour the store tests rely on.
func TestFakeS3(t *testing.T) {
	ctx := context.Background()
	f := newFakeS3("b")
	f.minPart, f.pageSize = 4, 3
	b := aws.String("b")
	mpu, err := f.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{Bucket: b, Key: aws.String("k")})
	if err != nil {
		t.Fatal(err)
	}
	up := func(n int32, body io.Reader, length *int64) error {
		_, err := f.UploadPart(ctx, &s3.UploadPartInput{Bucket: b, Key: aws.String("k"), UploadId: mpu.UploadId, PartNumber: aws.Int32(n), Body: body, ContentLength: length})
		return err
	}
	unseekable := func(s string) io.Reader { return struct{ io.Reader }{strings.NewReader(s)} }
	if err := up(1, unseekable("abc"), aws.Int64(4)); err == nil {
		t.Error("a body shorter than ContentLength was accepted")
	}
	if err := up(1, unseekable("abcde"), aws.Int64(4)); err == nil {
		t.Error("a body longer than ContentLength was accepted")
	}
	if err := up(1, io.MultiReader(strings.NewReader("ab"), iotest.ErrReader(errors.New("boom"))), aws.Int64(4)); err == nil {
		t.Error("a body whose Read failed was accepted")
	}
	if err := up(1, unseekable("abcd"), nil); err == nil {
		t.Error("an unseekable body without ContentLength was accepted")
	}
	if got := f.partSizes("k"); len(got) != 0 {
		t.Fatalf("failed UploadParts stored parts %v", got)
	}
	for n := int32(1); n <= 7; n++ {
		if err := up(n, unseekable(strings.Repeat(string(rune('a'+n)), int(n)+3)), aws.Int64(int64(n)+3)); err != nil {
			t.Fatalf("UploadPart %d: %v", n, err)
		}
	}
	var listed []int32
	var marker *string
	for pages := 1; ; pages++ {
		out, err := f.ListParts(ctx, &s3.ListPartsInput{Bucket: b, Key: aws.String("k"), UploadId: mpu.UploadId, PartNumberMarker: marker})
		if err != nil {
			t.Fatal(err)
		}
		if len(out.Parts) > 3 {
			t.Fatalf("a page of %d parts", len(out.Parts))
		}
		for _, p := range out.Parts {
			listed = append(listed, *p.PartNumber)
		}
		if !aws.ToBool(out.IsTruncated) {
			if pages != 3 {
				t.Errorf("%d pages, want 3", pages)
			}
			break
		}
		marker = out.NextPartNumberMarker
	}
	if !slices.Equal(listed, []int32{1, 2, 3, 4, 5, 6, 7}) {
		t.Errorf("listed parts %v", listed)
	}
	if _, err := f.ListParts(ctx, &s3.ListPartsInput{Bucket: b, Key: aws.String("k"), UploadId: aws.String("nope")}); !isNoSuchUpload(err) {
		t.Errorf("ListParts of an unknown upload: %v", err)
	}
	part := func(n int32, content string) types.CompletedPart {
		return types.CompletedPart{PartNumber: aws.Int32(n), ETag: aws.String(etagOf([]byte(content)))}
	}
	complete := func(parts ...types.CompletedPart) error {
		_, err := f.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{Bucket: b, Key: aws.String("k"), UploadId: mpu.UploadId, MultipartUpload: &types.CompletedMultipartUpload{Parts: parts}})
		return err
	}
	for _, c := range []struct {
		code  string
		parts []types.CompletedPart
	}{
		{"InvalidPartOrder", []types.CompletedPart{part(2, "ccccc"), part(1, "bbbb")}},
		{"InvalidPart", []types.CompletedPart{part(1, "xxxx")}},
		{"InvalidPart", []types.CompletedPart{part(8, "")}},
		{"EntityTooSmall", []types.CompletedPart{part(1, "bbbb"), part(2, "ccccc")}},
	} {
		f.minPart = 5
		var apiErr smithy.APIError
		if err := complete(c.parts...); !errors.As(err, &apiErr) || apiErr.ErrorCode() != c.code {
			t.Errorf("CompleteMultipartUpload: %v, want %s", err, c.code)
		}
	}
	f.minPart = 4
	if err := complete(part(1, "bbbb"), part(3, "dddddd")); err != nil {
		t.Fatalf("CompleteMultipartUpload: %v", err)
	}
	if obj, _ := f.object("k"); string(obj) != "bbbbdddddd" {
		t.Errorf("object %q", obj)
	}
	if err := up(4, unseekable("eeeeeee"), aws.Int64(7)); !isNoSuchUpload(err) {
		t.Errorf("UploadPart after completion: %v", err)
	}
	var noKey *types.NoSuchKey
	if _, err := f.GetObject(ctx, &s3.GetObjectInput{Bucket: b, Key: aws.String("missing")}); !errors.As(err, &noKey) {
		t.Errorf("GetObject of a missing key: %v", err)
	}
	var notFound *types.NotFound
	if _, err := f.HeadObject(ctx, &s3.HeadObjectInput{Bucket: b, Key: aws.String("missing")}); !errors.As(err, &notFound) {
		t.Errorf("HeadObject of a missing key: %v", err)
	}
}
