package safestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/tusgate/tusgate/internal/lockscope"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// fakeStore is an in-memory store whose calls can be made to fail.
type fakeStore struct {
	uploads  map[string]*fakeUpload
	fail     error
	finished []string
}

type fakeUpload struct {
	s    *fakeStore
	info handler.FileInfo
	data []byte
}

func (f *fakeStore) NewUpload(_ context.Context, info handler.FileInfo) (handler.Upload, error) {
	if f.fail != nil {
		return nil, f.fail
	}
	u := &fakeUpload{s: f, info: info}
	f.uploads[info.ID] = u
	return u, nil
}

func (f *fakeStore) GetUpload(_ context.Context, id string) (handler.Upload, error) {
	if u, ok := f.uploads[id]; ok {
		return u, nil
	}
	return &fakeUpload{s: f, info: handler.FileInfo{ID: id}}, nil // like s3store: no I/O here
}

func (f *fakeStore) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return u.(*fakeUpload)
}

// WriteChunk stores what src yields until EOF, like filestore.
func (u *fakeUpload) WriteChunk(_ context.Context, offset int64, src io.Reader) (int64, error) {
	if u.s.fail != nil {
		return 0, u.s.fail
	}
	if offset != u.info.Offset {
		return 0, errors.New("fake: write at the wrong offset")
	}
	b, err := io.ReadAll(src)
	u.data = append(u.data, b...)
	u.info.Offset += int64(len(b))
	return int64(len(b)), err
}

func (f *fakeStore) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return u.(*fakeUpload)
}

func (u *fakeUpload) DeclareLength(_ context.Context, length int64) error {
	u.info.Size, u.info.SizeIsDeferred = length, false
	return u.s.fail
}
func (u *fakeUpload) GetInfo(context.Context) (handler.FileInfo, error) {
	if u.s.fail != nil {
		return handler.FileInfo{}, u.s.fail
	}
	if _, ok := u.s.uploads[u.info.ID]; !ok {
		return handler.FileInfo{}, handler.ErrNotFound
	}
	return u.info, nil
}
func (u *fakeUpload) GetReader(context.Context) (io.ReadCloser, error) { return nil, u.s.fail }
func (u *fakeUpload) FinishUpload(context.Context) error {
	u.s.finished = append(u.s.finished, u.info.ID)
	return u.s.fail
}
func (u *fakeUpload) Terminate(context.Context) error {
	delete(u.s.uploads, u.info.ID)
	return u.s.fail
}

type assembly map[string]Assembly

func (a assembly) Assembly(_ context.Context, info handler.FileInfo) (Assembly, error) {
	return a[info.ID], nil
}

func newStore(a AssemblyChecker) (*fakeStore, *handler.StoreComposer) {
	return newStoreWith(Options{Assembly: a})
}

func newStoreWith(opt Options) (*fakeStore, *handler.StoreComposer) {
	f := &fakeStore{uploads: map[string]*fakeUpload{}}
	c := handler.NewStoreComposer()
	c.UseCore(f)
	c.UseTerminater(f)
	c.UseLengthDeferrer(f)
	opt.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	return f, Wrap(c, opt)
}

func TestValidID(t *testing.T) {
	for _, id := range []string{"abc", "0a1b+2c3d", "owner/abc+X.Y_Z-1~", "a:b@c"} {
		if !ValidID(id) {
			t.Errorf("ValidID(%q) = false", id)
		}
	}
	for _, id := range []string{"", "../etc/passwd", "a/../b", "a//b", "/a", "a/", "./a", `a\b`, "a b", "a%2f..", "a\x00", ".tusgate/webhooks/x", "owner/.hidden", strings.Repeat("a", 513)} {
		if ValidID(id) {
			t.Errorf("ValidID(%q) = true", id)
		}
	}
}

func TestInvalidIDsNeverReachTheStore(t *testing.T) {
	_, c := newStore(nil)
	_, err := c.Core.GetUpload(context.Background(), "../../etc/passwd")
	if !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}

func TestBackendErrorsBecome503(t *testing.T) {
	f, c := newStore(nil)
	f.uploads["u1"] = &fakeUpload{s: f, info: handler.FileInfo{ID: "u1", Size: 10}}
	up, err := c.Core.GetUpload(context.Background(), "u1")
	if err != nil {
		t.Fatal(err)
	}
	f.fail = errors.New("operation error S3: GetObject, https response error StatusCode: 500")
	_, err = up.GetInfo(context.Background())
	var tusErr handler.Error
	if !errors.As(err, &tusErr) || tusErr.HTTPResponse.StatusCode != 503 || tusErr.HTTPResponse.Header["Retry-After"] == "" {
		t.Fatalf("raw backend error not mapped: %v", err)
	}
	if strings.Contains(tusErr.HTTPResponse.Body, "S3") {
		t.Fatalf("raw text in body: %q", tusErr.HTTPResponse.Body)
	}
	// tus errors pass unchanged.
	f.fail = handler.ErrNotFound
	if _, err := up.GetInfo(context.Background()); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("ErrNotFound changed to %v", err)
	}
}

func TestTerminateUnknownIs404(t *testing.T) {
	_, c := newStore(nil)
	up, _ := c.Core.GetUpload(context.Background(), "nope")
	err := c.Terminater.AsTerminatableUpload(up).Terminate(context.Background())
	if !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("got %v", err)
	}
}

// An upload complete but not assembled is finished by a request that holds
// its lock, never by one that only reads it (tusd reads the partials of a
// final upload without their locks), and a concatenation finishes its
// partials under their locks.
func TestUnassembledCompleteUploadIsFinishedUnderItsLock(t *testing.T) {
	f := &fakeStore{uploads: map[string]*fakeUpload{}}
	inner := handler.NewStoreComposer()
	inner.UseCore(f)
	inner.UseTerminater(f)
	memorylocker.New().UseIn(inner)
	a := assembly{"done": Assembled, "stuck": NotAssembled, "partway": NotAssembled, "fresh": NotAssembled, "aborted": Gone}
	c := Wrap(inner, Options{Assembly: a, Log: slog.New(slog.DiscardHandler)})
	for _, id := range []string{"done", "aborted", "stuck"} {
		f.uploads[id] = &fakeUpload{s: f, info: handler.FileInfo{ID: id, Size: 5, Offset: 5}}
	}
	f.uploads["partway"] = &fakeUpload{s: f, info: handler.FileInfo{ID: "partway", Size: 5, Offset: 2}}

	// Read as tusd reads a final upload's partials: no lock.
	ctx := lockscope.New(context.Background())
	gone, _ := c.Core.GetUpload(ctx, "aborted")
	if _, err := gone.GetInfo(ctx); !errors.Is(err, handler.ErrNotFound) {
		t.Fatalf("upload whose data is gone: %v, want not found", err)
	}
	for _, id := range []string{"done", "stuck", "partway"} {
		up, _ := c.Core.GetUpload(ctx, id)
		info, err := up.GetInfo(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if id == "stuck" && info.Offset != 5 {
			t.Fatalf("stuck reads offset %d", info.Offset)
		}
	}
	if len(f.finished) != 0 {
		t.Fatalf("finished %v without holding a lock", f.finished)
	}

	// Under its lock, as for HEAD, PATCH and GET.
	for _, id := range []string{"done", "stuck", "partway"} {
		lock, err := c.Locker.NewLock(id)
		if err != nil {
			t.Fatal(err)
		}
		if err := lock.Lock(ctx, func() {}); err != nil {
			t.Fatal(err)
		}
		up, _ := c.Core.GetUpload(ctx, id)
		if _, err := up.GetInfo(ctx); err != nil {
			t.Fatal(err)
		}
		lock.Unlock()
	}
	if len(f.finished) != 1 || f.finished[0] != "stuck" {
		t.Fatalf("finished %v, want [stuck]", f.finished)
	}
	// A lock held by another request does not count.
	f.finished = nil
	other := lockscope.New(context.Background())
	lock, _ := c.Locker.NewLock("stuck")
	if err := lock.Lock(other, func() {}); err != nil {
		t.Fatal(err)
	}
	up, _ := c.Core.GetUpload(ctx, "stuck")
	if _, err := up.GetInfo(ctx); err != nil || len(f.finished) != 0 {
		t.Fatalf("GetInfo = %v, finished %v while another request held the lock", err, f.finished)
	}
	lock.Unlock()

	// A just-created upload is never finished by a GetInfo.
	fresh, _ := c.Core.NewUpload(ctx, handler.FileInfo{ID: "fresh"})
	if _, err := fresh.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if len(f.finished) != 0 {
		t.Fatalf("fresh upload finished by GetInfo: %v", f.finished)
	}
}

// Errors that retrying cannot clear answer 500 without Retry-After; all
// others 503 with it. Each is counted once, by kind.
func TestPermanentBackendErrorsAre500(t *testing.T) {
	counts := map[bool]int{}
	f, c := newStoreWith(Options{OnStorageError: func(permanent bool) { counts[permanent]++ }})
	f.uploads["u1"] = &fakeUpload{s: f, info: handler.FileInfo{ID: "u1", Size: 10}}
	ctx := context.Background()
	up, err := c.Core.GetUpload(ctx, "u1")
	if err != nil {
		t.Fatal(err)
	}
	answer := func(err error) (int, string, string) {
		var tusErr handler.Error
		if !errors.As(err, &tusErr) {
			t.Fatalf("not a tus error: %v", err)
		}
		return tusErr.HTTPResponse.StatusCode, tusErr.HTTPResponse.Header["Retry-After"], tusErr.HTTPResponse.Body
	}

	f.fail = fmt.Errorf("s3stream: part 2 of u1: %w", storeerr.Permanent(errors.New("holds 5 bytes, not 7")))
	_, err = up.WriteChunk(ctx, 0, strings.NewReader("abc"))
	status, retry, body := answer(err)
	if status != 500 || retry != "" || !strings.HasPrefix(body, "ERR_STORAGE_FAILED: ") || !strings.Contains(body, "contact the operator") || strings.Contains(body, "holds") {
		t.Fatalf("permanent error: %d Retry-After %q body %q", status, retry, body)
	}
	_, err = up.GetInfo(ctx)
	if status, _, _ := answer(err); status != 500 {
		t.Fatalf("permanent error on GetInfo: %d", status)
	}

	f.fail = errors.New("operation error S3: UploadPart, https response error StatusCode: 503, RequestID: R, HostID: H, api error SlowDown: Please reduce your request rate.")
	_, err = up.WriteChunk(ctx, 0, strings.NewReader("abc"))
	if status, retry, _ := answer(err); status != 503 || retry == "" {
		t.Fatalf("transient error: %d Retry-After %q", status, retry)
	}
	if counts[true] != 2 || counts[false] != 1 {
		t.Fatalf("counted %d permanent, %d transient; want 2, 1", counts[true], counts[false])
	}
}
