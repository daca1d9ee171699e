package s3stream

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/objsha"
)

// shaFuzzSeeds is the seeds per plan and mode (SHA_FUZZ_SEEDS; 25).
func shaFuzzSeeds() int {
	if s := os.Getenv("SHA_FUZZ_SEEDS"); s != "" {
		n, _ := strconv.Atoi(s)
		return n
	}
	return 25
}

// TestSHAMatchesObjectWithDifferentBytes drives uploads through random
// S3 failures, lost S3 answers, process deaths, cut and chunked bodies and
// checked writes (right and wrong digests), on several part plans, where
// every attempt carries bytes of its own: a running SHA-256 that kept bytes
// which were not stored (or missed some that were) then records a SHA-256
// other than the object's. Whatever is recorded must be the finished
// object's SHA-256. Half the uploads keep it because of ObjectSHA256, half
// because they stated a Repr-Digest (ObjectSHA256 off).
func TestSHAMatchesObjectWithDifferentBytes(t *testing.T) {
	cfgs := []cfgCase{
		{"default", 0, false, 0, 0},
		{"parts20", 20, false, 2000, 0},
		{"parts20-equal", 20, true, 2000, 0},
		{"parts12-maxpart200", 12, false, 1500, 200},
	}
	for _, c := range cfgs {
		for _, m := range writeModes {
			t.Run(c.name+"/"+m.name, func(t *testing.T) {
				recorded, seeds := 0, shaFuzzSeeds()
				for seed := range uint64(seeds) {
					if runSHAFuzzSeed(t, c, m.stream, m.budget, seed) {
						recorded++
					}
				}
				if recorded < seeds/2 {
					t.Errorf("only %d of %d uploads recorded a SHA-256", recorded, seeds)
				}
			})
		}
	}
}

func runSHAFuzzSeed(t *testing.T, c cfgCase, stream bool, budget int64, seed uint64) bool {
	e := newEnv(t, stream, func(s *s3store.S3Store) {
		if c.maxParts > 0 {
			s.MaxMultipartParts = int64(c.maxParts)
		}
		if c.equal {
			s.MinPartSize = testPartSize
		}
		if c.maxPart > 0 {
			s.MaxPartSize = c.maxPart
		}
	})
	if c.equal {
		e.s3.minPart = testPartSize
	}
	e.store.MaxSize = c.maxSize
	e.store.Buffers = NewBuffers(budget)
	lost := &lostS3{fakeS3: e.s3}
	e.store.Objects, e.store.Parts = lost, lost
	rng := rand.New(rand.NewPCG(seed, 4242))
	size := int64(1 + rng.IntN(400))
	if c.maxSize > 0 {
		size = int64(1 + rng.IntN(int(c.maxSize)))
	}
	deferred := rng.IntN(3) == 0
	ctxBg := context.Background()
	info := handler.FileInfo{Size: size, SizeIsDeferred: deferred}
	if seed%2 == 1 {
		// Kept because stated (the value does not matter here).
		e.store.ObjectSHA256 = false
		info.MetaData = handler.MetaData{objsha.ReprKey: objsha.Encode(make([]byte, objsha.Size))}
	}
	if deferred {
		info.Size = 0
	}
	up, err := e.store.NewUpload(ctxBg, info)
	if err != nil {
		t.Fatal(err)
	}
	info, _ = up.GetInfo(ctxBg)
	id := info.ID
	var history []string
	fail := func(format string, args ...any) {
		t.Helper()
		t.Fatalf("seed %d size %d deferred %v: %s\nhistory:\n  %s", seed, size, deferred, fmt.Sprintf(format, args...), strings.Join(history, "\n  "))
	}
	for step := 0; ; step++ {
		if step > 600 {
			fail("no progress")
		}
		info, err := e.s3Info(id)
		if err != nil {
			fail("GetInfo: %v", err)
		}
		off := info.Offset
		if off == size && !info.SizeIsDeferred {
			if _, ok := e.s3.object(e.key(id)); ok {
				break
			}
			up, _ := e.store.GetUpload(ctxBg, id)
			if seed%2 == 1 {
				_, _, _ = up.(objsha.Digester).SHA256(ctxBg)
			}
			if err := up.FinishUpload(ctxBg); err != nil {
				history = append(history, fmt.Sprintf("repair finish: %v", err))
			}
			continue
		}
		chunk := min(int64(1+rng.IntN(140)), size-off)
		data := testData(int(chunk), rng.Uint64())
		var body io.Reader = bytes.NewReader(data)
		what := fmt.Sprintf("%d+%d", off, chunk)
		bodyLen := chunk
		if budget != 0 && rng.IntN(4) == 0 {
			bodyLen = -1
			what += " chunked"
		}
		if rng.IntN(5) == 0 {
			body = readers[1+rng.IntN(2)].wrap(body)
		}
		ctx := ctxBg
		cut := false
		switch rng.IntN(8) {
		case 0:
			k := rng.IntN(10)
			e.s3.killAfter(k)
			what += fmt.Sprintf(" died after %d ops", k)
		case 1:
			if chunk == 0 {
				break
			}
			cutAt := rng.Int64N(chunk)
			body = io.LimitReader(body, cutAt)
			cut = true
			what += fmt.Sprintf(" body cut at %d", cutAt)
		case 2:
			p := int32(1 + rng.IntN(25))
			e.s3.configure(func(f *fakeS3) { f.failUploadPart = func(n int32, _ int) error { return failIf(n == p) } })
			what += fmt.Sprintf(" part %d fails", p)
		case 3:
			p := int32(1 + rng.IntN(25))
			r := int64(rng.IntN(70))
			once := rng.IntN(2) == 0
			e.s3.configure(func(f *fakeS3) {
				f.abortUploadPart = func(n int32, a int) (int64, error) {
					if n == p && (!once || a == 1) {
						return r, errors.New("connection reset")
					}
					return 0, nil
				}
			})
			what += fmt.Sprintf(" part %d aborts after %d (once=%v)", p, r, once)
		case 4:
			ops := []string{"UploadPart", "PutObject", "DeleteObject", "CompleteMultipartUpload"}
			op := ops[rng.IntN(len(ops))]
			p := int32(1 + rng.IntN(25))
			lost.lose = func(o string, n int32) bool { return o == op && (o != "UploadPart" || n == p) }
			what += fmt.Sprintf(" %s %d response lost", op, p)
		case 5:
			ops := []string{"PutObject", "GetObject", "HeadObject", "DeleteObject", "ListParts", "CompleteMultipartUpload", "PutObjectTagging"}
			op := ops[rng.IntN(len(ops))]
			nth := rng.IntN(3)
			cnt := 0
			e.s3.configure(func(f *fakeS3) {
				f.failOp = func(o, key string) error {
					if o == op {
						cnt++
						if cnt > nth {
							return errS3
						}
					}
					return nil
				}
			})
			what += fmt.Sprintf(" %s fails from call %d", op, nth+1)
		case 6:
			if bodyLen < 0 {
				break
			}
			want := data
			if rng.IntN(2) == 0 {
				want = testData(int(chunk), rng.Uint64())
				what += " checked, wrong"
			} else {
				what += " checked"
			}
			ctx = checkedCtx(t, want, chunk)
			if rng.IntN(3) == 0 {
				k := rng.IntN(10)
				e.s3.killAfter(k)
				what += fmt.Sprintf(" died after %d ops", k)
			}
		}
		r := req{bodyLen: bodyLen, uploadLength: -1}
		if info.SizeIsDeferred {
			switch {
			case off+chunk == size && rng.IntN(2) == 0:
				r.complete = true
			case rng.IntN(4) == 0 || off+chunk == size:
				r.uploadLength = size
			}
		}
		what += fmt.Sprintf(" len=%d complete=%v", r.uploadLength, r.complete)
		n, err := e.fuzzPatch(ctx, id, off, reqBody2(body), r, cut)
		e.s3.killAfter(-1)
		lost.lose = nil
		e.s3.configure(func(f *fakeS3) { f.failUploadPart, f.abortUploadPart, f.failOp = nil, nil, nil })
		history = append(history, fmt.Sprintf("%s: %d, %v", what, n, err))
	}
	obj, ok := e.s3.object(e.key(id))
	if !ok {
		fail("no object")
	}
	if int64(len(obj)) != size {
		fail("object of %d bytes", len(obj))
	}
	want := sha256.Sum256(obj)
	sum, ok := objsha.Sum(e.rawInfo(id))
	if !ok {
		// The process died while it computed it: none, never a wrong one.
		return false
	}
	if !objsha.Equal(sum, want[:]) {
		fail("the .info records SHA-256 %x, the object has %x", sum, want)
	}
	return true
}

// fuzzPatch drives the store as tusd's PATCH handler does, in ctx.
func (e *env) fuzzPatch(ctx context.Context, id string, offset int64, src io.Reader, r req, cut bool) (int64, error) {
	if r.bodyLen >= 0 {
		ctx = bodylen.With(ctx, r.bodyLen)
	}
	up, err := e.core.GetUpload(ctx, id)
	if err != nil {
		return 0, err
	}
	info, err := up.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	if info.Offset != offset {
		return 0, fmt.Errorf("409: at %d", info.Offset)
	}
	if r.uploadLength >= 0 && info.SizeIsDeferred {
		if err := e.core.AsLengthDeclarableUpload(up).DeclareLength(ctx, r.uploadLength); err != nil {
			return 0, err
		}
		info.Size, info.SizeIsDeferred = r.uploadLength, false
	}
	n, err := up.WriteChunk(ctx, offset, src)
	info.Offset = offset + n
	if !info.SizeIsDeferred && info.Offset == info.Size {
		if _, stated := info.MetaData[objsha.ReprKey]; stated {
			// As safestore compares it before finishing.
			_, _, _ = up.(objsha.Digester).SHA256(ctx)
		}
		if ferr := up.FinishUpload(ctx); ferr != nil && err == nil {
			err = ferr
		}
	}
	if err != nil {
		return n, err
	}
	if r.complete && info.SizeIsDeferred && !cut {
		now, err := up.GetInfo(ctx)
		if err != nil {
			return n, err
		}
		if err := e.core.AsLengthDeclarableUpload(up).DeclareLength(ctx, now.Offset); err != nil {
			return n, err
		}
		if _, stated := info.MetaData[objsha.ReprKey]; stated {
			_, _, _ = up.(objsha.Digester).SHA256(ctx)
		}
		if err := up.FinishUpload(ctx); err != nil {
			return n, err
		}
	}
	return n, nil
}

// checkedCtx states the SHA-256 of want for a body of length bytes.
func checkedCtx(t *testing.T, want []byte, length int64) context.Context {
	t.Helper()
	sum := sha256.Sum256(want)
	r := httptest.NewRequest(http.MethodPatch, "/files/x", nil)
	r.Header.Set("Upload-Checksum", "sha256 "+base64.StdEncoding.EncodeToString(sum[:]))
	ex, err := checksum.FromRequest(r)
	if err != nil || ex == nil {
		t.Fatalf("FromRequest: %v, %v", ex, err)
	}
	return bodylen.With(checksum.With(context.Background(), ex), length)
}
