package safestore

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"

	"github.com/tusgate/tusgate/internal/lockscope"
)

// memWaiting is a Waiting in memory whose Finals can be made to fail.
type memWaiting struct {
	mu      sync.Mutex
	records map[[2]string]bool
	fail    error
}

func (m *memWaiting) Add(_ context.Context, partialID, finalID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.records[[2]string{partialID, finalID}] = true
	return nil
}

func (m *memWaiting) Finals(_ context.Context, partialID string) ([]string, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail != nil {
		return nil, m.fail
	}
	var ids []string
	for r := range m.records {
		if r[0] == partialID {
			ids = append(ids, r[1])
		}
	}
	return ids, nil
}

func (m *memWaiting) Remove(_ context.Context, partialID, finalID string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.records, [2]string{partialID, finalID})
	return nil
}

func (m *memWaiting) count() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.records)
}

// concatEnv is tusd's filestore wrapped as tusgate wraps it, driven the way
// tusd's handler drives it.
type concatEnv struct {
	t       *testing.T
	dir     string
	c       *handler.StoreComposer
	waiting *memWaiting
}

func newConcatEnv(t *testing.T) *concatEnv {
	dir := t.TempDir()
	inner := handler.NewStoreComposer()
	filestore.New(dir).UseIn(inner)
	memorylocker.New().UseIn(inner)
	w := &memWaiting{records: map[[2]string]bool{}}
	c := Wrap(inner, Options{Assembly: DiskAssembly{Dir: dir}, Waiting: w, Log: slog.New(slog.DiscardHandler)})
	return &concatEnv{t: t, dir: dir, c: c, waiting: w}
}

// request runs f as one request: its own lockscope, holding id's lock if
// id is not "".
func (e *concatEnv) request(id string, f func(ctx context.Context)) {
	e.t.Helper()
	ctx := lockscope.New(context.Background())
	if id != "" {
		lock, err := e.c.Locker.NewLock(id)
		if err != nil {
			e.t.Fatal(err)
		}
		if err := lock.Lock(ctx, func() {}); err != nil {
			e.t.Fatal(err)
		}
		defer lock.Unlock()
	}
	f(ctx)
}

func (e *concatEnv) create(id string, size int64) {
	e.t.Helper()
	e.request("", func(ctx context.Context) {
		if _, err := e.c.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: size, IsPartial: true}); err != nil {
			e.t.Fatal(err)
		}
	})
}

// write appends data as a PATCH does, finishing the upload when complete.
func (e *concatEnv) write(id, data string) {
	e.t.Helper()
	e.request(id, func(ctx context.Context) {
		up, err := e.c.Core.GetUpload(ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		n, err := up.WriteChunk(ctx, info.Offset, strings.NewReader(data))
		if err != nil {
			e.t.Fatal(err)
		}
		if info.Offset+n == info.Size {
			if err := up.FinishUpload(ctx); err != nil {
				e.t.Fatal(err)
			}
		}
	})
}

// final creates a final upload as tusd does: it sums the partial uploads'
// lengths (refusing unfinished ones), creates and concatenates.
func (e *concatEnv) final(id string, partials ...string) error {
	var err error
	e.request("", func(ctx context.Context) {
		ctx = AllowUnfinishedPartials(ctx)
		var ups []handler.Upload
		var size int64
		for _, p := range partials {
			up, gerr := e.c.Core.GetUpload(ctx, p)
			var info handler.FileInfo
			if gerr == nil {
				info, gerr = up.GetInfo(ctx)
			}
			if gerr != nil {
				err = gerr
				return
			}
			if info.SizeIsDeferred || info.Offset != info.Size {
				err = handler.ErrUploadNotFinished
				return
			}
			ups, size = append(ups, up), size+info.Size
		}
		up, cerr := e.c.Core.NewUpload(ctx, handler.FileInfo{ID: id, Size: size, IsFinal: true, PartialUploads: partials})
		if cerr != nil {
			err = cerr
			return
		}
		err = e.c.Concater.AsConcatableUpload(up).ConcatUploads(ctx, ups)
	})
	return err
}

// head reads id as HEAD does (under its lock) and returns its offset.
func (e *concatEnv) head(id string) int64 {
	e.t.Helper()
	var off int64
	e.request(id, func(ctx context.Context) {
		up, err := e.c.Core.GetUpload(ctx, id)
		if err != nil {
			e.t.Fatal(err)
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			e.t.Fatal(err)
		}
		off = info.Offset
	})
	return off
}

func (e *concatEnv) content(id string) string {
	e.t.Helper()
	b, err := os.ReadFile(filepath.Join(e.dir, id))
	if err != nil {
		e.t.Fatal(err)
	}
	return string(b)
}

func TestFinalUploadAssembledWhenItsLastPartialFinishes(t *testing.T) {
	e := newConcatEnv(t)
	e.create("o/p1", 3)
	e.create("o/p2", 2)
	e.create("o/p3", 4)
	e.write("o/p1", "abc")
	e.write("o/p2", "d")
	if err := e.final("o/f", "o/p1", "o/p2", "o/p3"); err != nil {
		t.Fatalf("final naming unfinished partial uploads: %v", err)
	}
	if off := e.head("o/f"); off == 9 {
		t.Fatal("the final upload is assembled before its partial uploads finished")
	}
	if n := e.waiting.count(); n != 3 {
		t.Fatalf("%d records, want one for each partial upload", n)
	}
	e.write("o/p2", "e")
	if off := e.head("o/f"); off == 9 {
		t.Fatal("the final upload is assembled before its last partial upload finished")
	}
	e.write("o/p3", "fghi")
	if off := e.head("o/f"); off != 9 || e.content("o/f") != "abcdefghi" {
		t.Fatalf("final upload after its last partial upload finished: offset %d, content %q", off, e.content("o/f"))
	}
	if n := e.waiting.count(); n != 0 {
		t.Fatalf("%d records left after the assembly", n)
	}
}

// When the partial upload's request cannot assemble the final upload, the
// next request holding the final upload's lock does.
func TestWaitingFinalUploadAssembledByItsNextRequest(t *testing.T) {
	e := newConcatEnv(t)
	e.create("o/p1", 3)
	e.create("o/p2", 2)
	e.write("o/p1", "abc")
	if err := e.final("o/f", "o/p1", "o/p2"); err != nil {
		t.Fatal(err)
	}
	e.waiting.fail = errors.New("storage unavailable")
	e.write("o/p2", "de") // finishes; the final upload is not found waiting
	e.waiting.fail = nil
	// Read without its lock, it stays as it is.
	e.request("", func(ctx context.Context) {
		up, _ := e.c.Core.GetUpload(ctx, "o/f")
		if info, err := up.GetInfo(ctx); err != nil || info.Offset == 5 {
			t.Fatalf("read without the lock: %+v, %v; want it unassembled", info, err)
		}
	})
	if off := e.head("o/f"); off != 5 || e.content("o/f") != "abcde" {
		t.Fatalf("HEAD of the final upload: offset %d, content %q", off, e.content("o/f"))
	}
	if n := e.waiting.count(); n != 0 {
		t.Fatalf("%d records left after the assembly", n)
	}
}

func TestFinalUploadRefusesPartialsOfUnknownLength(t *testing.T) {
	e := newConcatEnv(t)
	e.create("o/p1", 3)
	e.request("", func(ctx context.Context) {
		if _, err := e.c.Core.NewUpload(ctx, handler.FileInfo{ID: "o/p2", SizeIsDeferred: true, IsPartial: true}); err != nil {
			t.Fatal(err)
		}
	})
	if err := e.final("o/f", "o/p1", "o/p2"); !errors.Is(err, ErrPartialLengthUnknown) {
		t.Fatalf("final naming a partial upload of unknown length: %v", err)
	}
	// Without AllowUnfinishedPartials (any request but a final upload's
	// creation), unfinished partial uploads read as they are.
	e.request("o/p1", func(ctx context.Context) {
		up, _ := e.c.Core.GetUpload(ctx, "o/p1")
		if info, err := up.GetInfo(ctx); err != nil || info.Offset != 0 {
			t.Fatalf("partial upload read by its own request: %+v, %v", info, err)
		}
	})
}

// Deleting a partial upload forgets the final uploads waiting for it.
func TestDeletedPartialForgetsWaitingFinals(t *testing.T) {
	e := newConcatEnv(t)
	e.create("o/p1", 3)
	if err := e.final("o/f", "o/p1"); err != nil {
		t.Fatal(err)
	}
	e.request("o/p1", func(ctx context.Context) {
		up, _ := e.c.Core.GetUpload(ctx, "o/p1")
		if err := e.c.Terminater.AsTerminatableUpload(up).Terminate(ctx); err != nil {
			t.Fatal(err)
		}
	})
	if n := e.waiting.count(); n != 0 {
		t.Fatalf("%d records left after the partial upload was deleted", n)
	}
	if ids, _ := e.waiting.Finals(context.Background(), "o/p1"); !slices.Equal(ids, nil) {
		t.Fatalf("Finals = %v", ids)
	}
}

// refuseFinals is a Lifecycle that refuses every final upload.
type refuseFinals struct{}

func (refuseFinals) Created(context.Context, handler.FileInfo) error     { return nil }
func (refuseFinals) Terminating(context.Context, handler.FileInfo) error { return nil }
func (refuseFinals) Finishing(_ context.Context, info handler.FileInfo) error {
	if info.IsFinal {
		return &Rejection{Err: handler.NewError("ERR_REFUSED", "no", 422)}
	}
	return nil
}

// A waiting final upload the application refuses is deleted when its last
// partial upload finishes; the partial upload's own request succeeds.
func TestRefusedWaitingFinalUploadIsDeleted(t *testing.T) {
	e := newConcatEnv(t)
	inner := handler.NewStoreComposer()
	filestore.New(e.dir).UseIn(inner)
	memorylocker.New().UseIn(inner)
	e.c = Wrap(inner, Options{Assembly: DiskAssembly{Dir: e.dir}, Waiting: e.waiting, Lifecycle: refuseFinals{}, Log: slog.New(slog.DiscardHandler)})
	e.create("o/p1", 3)
	if err := e.final("o/f", "o/p1"); err != nil {
		t.Fatal(err)
	}
	e.write("o/p1", "abc")
	if _, err := os.Stat(filepath.Join(e.dir, "o/f.info")); !os.IsNotExist(err) {
		t.Fatalf("the refused final upload is still there (stat: %v)", err)
	}
	if n := e.waiting.count(); n != 0 {
		t.Fatalf("%d records left after the refusal", n)
	}
}

// A partial upload whose own assembly failed (all its bytes stored, never
// finished) holds up the final upload until a request repairs it; that
// repair assembles the final upload.
func TestRepairedPartialAssemblesWaitingFinal(t *testing.T) {
	e := newConcatEnv(t)
	e.create("o/p1", 3)
	e.create("o/p2", 2)
	// p1's bytes are stored, but it was never finished (no assembly marker).
	e.request("o/p1", func(ctx context.Context) {
		up, _ := e.c.Core.GetUpload(ctx, "o/p1")
		if _, err := up.GetInfo(ctx); err != nil {
			t.Fatal(err)
		}
		if _, err := up.WriteChunk(ctx, 0, strings.NewReader("abc")); err != nil {
			t.Fatal(err)
		}
	})
	if err := e.final("o/f", "o/p1", "o/p2"); err != nil {
		t.Fatal(err)
	}
	e.write("o/p2", "de")
	if _, err := os.Stat(filepath.Join(e.dir, ".tusgate", "finished", "o", "f")); err == nil {
		t.Fatal("the final upload was assembled from a partial upload never finished")
	}
	if off := e.head("o/p1"); off != 3 { // repairs p1 under its lock
		t.Fatalf("HEAD of the repaired partial upload: offset %d", off)
	}
	if e.content("o/f") != "abcde" {
		t.Fatalf("final upload after the repair: %q", e.content("o/f"))
	}
}
