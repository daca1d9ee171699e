package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/objsha"
)

// PutObjectTagging sets an object's tags (shaTag).
func (f *fakeS3) PutObjectTagging(ctx context.Context, in *s3.PutObjectTaggingInput, opts ...func(*s3.Options)) (*s3.PutObjectTaggingOutput, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	key := aws.ToString(in.Key)
	if err := f.begin("PutObjectTagging", in.Bucket, key); err != nil {
		return nil, err
	}
	if _, ok := f.objects[key]; !ok {
		return nil, &types.NoSuchKey{Message: aws.String(key)}
	}
	tags := map[string]string{}
	for _, t := range in.Tagging.TagSet {
		tags[aws.ToString(t.Key)] = aws.ToString(t.Value)
	}
	f.tags[key] = tags
	return &s3.PutObjectTaggingOutput{}, nil
}

// rawInfo is the upload's .info as stored in the fake S3.
func (e *env) rawInfo(id string) handler.FileInfo {
	e.t.Helper()
	b, ok := e.s3.object(e.key(id) + ".info")
	if !ok {
		e.t.Fatalf("no .info for %s", id)
	}
	var info handler.FileInfo
	if err := json.Unmarshal(b, &info); err != nil {
		e.t.Fatal(err)
	}
	return info
}

// checkSHA checks, with ObjectSHA256, that the finished upload's .info,
// its GetInfo and the object's tag carry the SHA-256 of want, and nothing
// of a running state is left.
func (e *env) checkSHA(id string, want []byte) {
	e.t.Helper()
	if !e.store.ObjectSHA256 || e.core != core(e.store) {
		return
	}
	sum := sha256.Sum256(want)
	info := e.rawInfo(id)
	got, ok := objsha.Sum(info)
	if !ok || !objsha.Equal(got, sum[:]) {
		e.t.Fatalf("the .info of %s records SHA-256 %x (%v), want %x", id, got, ok, sum)
	}
	if _, ok := info.Storage[objsha.StateKey]; ok {
		e.t.Errorf("a running state is left in the .info: %v", info.Storage)
	}
	if _, ok := info.Storage[objsha.PendingKey]; ok {
		e.t.Errorf("the .info still says the SHA-256 is being computed: %v", info.Storage)
	}
	up, err := e.store.GetUpload(context.Background(), id)
	if err != nil {
		e.t.Fatal(err)
	}
	fi, err := up.GetInfo(context.Background())
	if err != nil {
		e.t.Fatal(err)
	}
	if got, ok := objsha.Sum(fi); !ok || !objsha.Equal(got, sum[:]) {
		e.t.Fatalf("GetInfo of %s reports SHA-256 %x (%v)", id, got, ok)
	}
	e.s3.mu.Lock()
	tag := e.s3.tags[e.key(id)][shaTag]
	e.s3.mu.Unlock()
	if tag != objsha.Encode(sum[:]) {
		e.t.Errorf("the object is tagged %s=%q, want %q", shaTag, tag, objsha.Encode(sum[:]))
	}
}

// logs captures a store's log lines.
type logs struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logs) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logs) count(s string) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Count(l.buf.String(), s)
}

func (e *env) captureLogs() *logs {
	l := &logs{}
	e.store.Log = slog.New(slog.NewTextHandler(l, nil))
	return l
}

const recomputing = "computing the SHA-256 of a finished upload from its object"

// The SHA-256 of uploads written in many requests (each read anew from S3,
// as on another instance: tails, parts holding a tail's bytes, a length
// declared at the end) is carried by the running state in the .info: the
// object is never read back.
func TestSHAKeptAcrossWrites(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		l := e.captureLogs()
		for _, deferred := range []bool{false, true} {
			data := testData(333, 5)
			size := int64(len(data))
			id := e.create(size, false)
			if deferred {
				id = e.create(0, true)
			}
			for off, i := int64(0), 0; off < size; i++ {
				n := min(int64(20+i*37), size-off)
				r := req{bodyLen: n, uploadLength: -1}
				if deferred && off+n == size {
					r.uploadLength = size
				}
				got, err := e.request(id, off, reqBody(data[off:off+n]), r)
				if err != nil || got != n {
					t.Fatalf("deferred=%v: write at %d = %d, %v", deferred, off, got, err)
				}
				off += n
			}
			e.checkObject(id, data)
			if n := e.s3.gets[e.key(id)]; n != 0 {
				t.Fatalf("deferred=%v: the object was read %d times: the running state was lost", deferred, n)
			}
		}
		if n := l.count(recomputing); n != 0 {
			t.Fatalf("logged %d recomputations", n)
		}
	})
}

// A state in the .info that does not fit the parts (here: computed over
// other bytes, with another last part) is never used: the SHA-256 is read
// from the finished object, once, and logged once.
func TestSHAStaleStateNotUsed(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		l := e.captureLogs()
		data := testData(300, 6)
		id := e.create(300, false)
		// Two parts of 64 bytes and a tail of 12.
		if n, err := e.patch(id, 0, reqBody(data[:140]), 140); err != nil || n != 140 {
			t.Fatalf("first write: %d, %v", n, err)
		}
		info := e.rawInfo(id)
		snap, ok, err := objsha.State(info)
		if !ok || err != nil || snap.Offset != 128 || snap.Parts != 2 {
			t.Fatalf("the state after two parts: %+v %v %v", snap, ok, err)
		}
		// The state of 128 other bytes, and the ETag of other parts.
		h, _ := objsha.Resume(objsha.Fresh())
		h.Write(testData(128, 99))
		stale, _ := h.At(128)
		stale.Parts, stale.ETag = 2, "0123456789abcdef0123456789abcdef"
		e.putInfo(objsha.WithState(info, &stale))
		if n, err := e.patch(id, 140, reqBody(data[140:]), 160); err != nil || n != 160 {
			t.Fatalf("second write: %d, %v", n, err)
		}
		e.checkObject(id, data)
		if n := e.s3.gets[e.key(id)]; n != 1 {
			t.Fatalf("the object was read %d times, want once", n)
		}
		if n := l.count(recomputing); n != 1 {
			t.Fatalf("logged %d recomputations, want 1", n)
		}
	})
}

// putInfo stores info as the upload's .info.
func (e *env) putInfo(info handler.FileInfo) {
	e.t.Helper()
	if err := e.store.writeInfo(context.Background(), info); err != nil {
		e.t.Fatal(err)
	}
}

// The process dies at every S3 operation of a write in turn (so also
// between storing parts and storing the state at their end); the upload is
// then resumed and finished: its SHA-256 is right, from the running state
// where it survived, from the object where it did not.
func TestSHAKilledAnywhere(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		l := e.captureLogs()
		lost := 0
		for k := range 10 {
			data := testData(300, uint64(40+k))
			id := e.create(300, false)
			if n, err := e.patch(id, 0, reqBody(data[:30]), 30); err != nil || n != 30 {
				t.Fatalf("first write: %d, %v", n, err)
			}
			e.s3.killAfter(k)
			e.tryRequest(id, 30, reqBody(data[30:250]), req{bodyLen: 220, uploadLength: -1})
			e.s3.killAfter(-1)
			e.finish(id, data)
			lost += e.s3.gets[e.key(id)]
		}
		if lost == 0 || l.count(recomputing) != lost {
			t.Fatalf("%d uploads read back, %d recomputations logged: the test does not reach a lost state", lost, l.count(recomputing))
		}
	})
}

// A checked write whose body does not match its Upload-Checksum (460) is
// rolled back with its running state: the bytes it hashed (here: other
// bytes than the ones sent again) leave no trace in the SHA-256, and the
// state before it, in the .info, carries on without reading the object.
func TestSHAChecksumRollback(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		data := testData(300, 8)
		id := e.create(300, false)
		if n, err := e.patch(id, 0, reqBody(data[:10]), 10); err != nil || n != 10 {
			t.Fatalf("first write: %d, %v", n, err)
		}
		body := data[10:250]
		wrong := bytes.Clone(body)
		wrong[200] ^= 1
		n, err := e.write(checked(t, body, int64(len(body))), id, 10, wrong)
		if !errors.Is(err, checksum.ErrMismatch) || n != 0 {
			t.Fatalf("write of other bytes = %d, %v; want 0, 460", n, err)
		}
		e.checkOffset(id, 10)
		if n, err := e.write(checked(t, body, int64(len(body))), id, 10, body); err != nil || n != int64(len(body)) {
			t.Fatalf("the right bytes: %d, %v", n, err)
		}
		e.finish(id, data)
		if n := e.s3.gets[e.key(id)]; n != 0 {
			t.Fatalf("the object was read %d times", n)
		}
	})
}

// Without ObjectSHA256, an upload keeps a running SHA-256 only if it
// stated one (Repr-Digest): SHA256 knows it once all bytes are stored,
// reading the tail where the last bytes wait; other uploads pay nothing.
func TestSHAOnlyWhereStated(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		e.store.ObjectSHA256 = false
		data := testData(150, 9)
		sum := sha256.Sum256(data)
		ctx := context.Background()
		up, err := e.store.NewUpload(ctx, handler.FileInfo{SizeIsDeferred: true, MetaData: handler.MetaData{objsha.ReprKey: objsha.Encode(sum[:])}})
		if err != nil {
			t.Fatal(err)
		}
		info, _ := up.GetInfo(ctx)
		stated := info.ID
		plain := e.create(150, false)
		for _, id := range []string{stated, plain} {
			for off := int64(0); off < 150; off += 50 {
				if n, err := e.patch(id, off, reqBody(data[off:off+50]), 50); err != nil || n != 50 {
					t.Fatalf("write at %d: %d, %v", off, n, err)
				}
			}
		}
		// 150 bytes: two parts and a tail of 22.
		up, _ = e.store.GetUpload(ctx, stated)
		if err := e.store.AsLengthDeclarableUpload(up).DeclareLength(ctx, 150); err != nil {
			t.Fatal(err)
		}
		up, _ = e.store.GetUpload(ctx, stated)
		got, ok, err := up.(objsha.Digester).SHA256(ctx)
		if err != nil || !ok || !objsha.Equal(got, sum[:]) {
			t.Fatalf("SHA256 before finishing: %x %v %v, want %x", got, ok, err, sum)
		}
		// Recorded: an upload refused for its Repr-Digest is asked again
		// on later requests, and then needs no state nor tail.
		if got, ok := objsha.Sum(e.rawInfo(stated)); !ok || !objsha.Equal(got, sum[:]) {
			t.Fatalf("SHA256 did not record it: %x %v", got, ok)
		}
		if err := up.FinishUpload(ctx); err != nil {
			t.Fatal(err)
		}
		if got, ok := objsha.Sum(e.rawInfo(stated)); !ok || !objsha.Equal(got, sum[:]) {
			t.Fatalf("recorded %x %v", got, ok)
		}
		if st := e.rawInfo(plain).Storage; st[objsha.SumKey] != "" || st[objsha.StateKey] != "" {
			t.Fatalf("an upload that stated nothing: %v", st)
		}
		if n := e.s3.count("PutObjectTagging"); n != 1 {
			t.Fatalf("%d objects tagged, want 1", n)
		}
	})
}

// statusError is an S3 error answer with its HTTP status.
type statusError struct {
	error
	status int
}

func (e statusError) HTTPStatusCode() int { return e.status }

// An S3 that refuses tagging is asked once; the SHA-256 is recorded all
// the same.
func TestSHATagRefused(t *testing.T) {
	e := newEnv(t, true)
	l := e.captureLogs()
	e.s3.configure(func(f *fakeS3) {
		f.failOp = func(op, key string) error {
			if op == "PutObjectTagging" {
				return statusError{apiError("AccessDenied", "no"), 403}
			}
			return nil
		}
	})
	for i := range 2 {
		data := testData(100, uint64(i))
		id := e.create(100, false)
		if n, err := e.patch(id, 0, reqBody(data), 100); err != nil || n != 100 {
			t.Fatalf("write: %d, %v", n, err)
		}
		sum := sha256.Sum256(data)
		if got, ok := objsha.Sum(e.rawInfo(id)); !ok || !objsha.Equal(got, sum[:]) {
			t.Fatalf("recorded %x %v", got, ok)
		}
	}
	if n := e.s3.count("PutObjectTagging"); n != 1 {
		t.Fatalf("asked to tag %d times, want once", n)
	}
	if n := l.count("S3 refused to tag"); n != 1 {
		t.Fatalf("logged %d times", n)
	}
}

// Concatenated uploads get their SHA-256 from the assembled object (the
// partials' states cannot be joined): both ways of concatenating.
func TestSHAConcatenation(t *testing.T) {
	for _, size := range []int{10, 40} { // below and above the minimum part size
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			e := newEnv(t, true)
			ctx := context.Background()
			var all []byte
			var partials []handler.Upload
			for i := range 3 {
				data := testData(size+i, uint64(60+i))
				all = append(all, data...)
				up, err := e.store.NewUpload(ctx, handler.FileInfo{Size: int64(len(data)), IsPartial: true})
				if err != nil {
					t.Fatal(err)
				}
				info, _ := up.GetInfo(ctx)
				if n, err := e.patch(info.ID, 0, reqBody(data), int64(len(data))); err != nil || n != int64(len(data)) {
					t.Fatalf("partial: %d, %v", n, err)
				}
				up, _ = e.store.GetUpload(ctx, info.ID)
				partials = append(partials, up)
			}
			final, err := e.store.NewUpload(ctx, handler.FileInfo{Size: int64(len(all)), IsFinal: true})
			if err != nil {
				t.Fatal(err)
			}
			if err := e.store.AsConcatableUpload(final).ConcatUploads(ctx, partials); err != nil {
				t.Fatal(err)
			}
			info, _ := final.GetInfo(ctx)
			sum := sha256.Sum256(all)
			if got, ok := objsha.Sum(e.rawInfo(info.ID)); !ok || !objsha.Equal(got, sum[:]) {
				t.Fatalf("final upload: recorded %x %v, want %x", got, ok, sum)
			}
		})
	}
}

// The process dies while it reads a completed upload's object for its
// SHA-256 (its running state was lost): the upload is left completed with
// its SHA-256 marked as being computed. SHA256, asked under the lock later,
// reads the object again and records the right SHA-256.
func TestSHAReadBackKilledIsReadAgain(t *testing.T) {
	forWriteModes(t, func(t *testing.T, e *env) {
		data := testData(300, 7)
		id := e.create(300, false)
		if n, err := e.patch(id, 0, reqBody(data[:140]), 140); err != nil || n != 140 {
			t.Fatalf("first write: %d, %v", n, err)
		}
		info := e.rawInfo(id)
		delete(info.Storage, objsha.StateKey) // lost
		e.putInfo(info)
		key := e.key(id)
		e.s3.mu.Lock()
		e.s3.failOp = func(op, k string) error {
			if op == "GetObject" && k == key {
				return errDied
			}
			return nil
		}
		e.s3.mu.Unlock()
		if n, err := e.patch(id, 140, reqBody(data[140:]), 160); err != nil || n != 160 {
			t.Fatalf("second write: %d, %v", n, err)
		}
		e.s3.mu.Lock()
		e.s3.failOp = nil
		e.s3.mu.Unlock()
		if _, ok := objsha.Sum(e.rawInfo(id)); ok {
			t.Fatal("a SHA-256 was recorded although the object could not be read")
		}
		if _, ok := objsha.Pending(e.rawInfo(id)); !ok {
			t.Fatal("the upload is not marked as having its SHA-256 computed")
		}
		up, err := e.store.GetUpload(context.Background(), id)
		if err != nil {
			t.Fatal(err)
		}
		sum, ok, err := up.(objsha.Digester).SHA256(context.Background())
		want := sha256.Sum256(data)
		if err != nil || !ok || !objsha.Equal(sum, want[:]) {
			t.Fatalf("SHA256 = %x, %v, %v; want %x", sum, ok, err, want)
		}
		e.checkSHA(id, data)
	})
}
