// Package safestore wraps the storage behind tusd's handler so that
//
//   - every upload ID tusd resolves (from a URL path or an Upload-Concat
//     header) is checked before it reaches the store;
//   - a failure of the storage backend becomes a retryable 503 with
//     Retry-After and a short message, never a 500 carrying raw S3 text
//     (the raw error is logged instead); a failure that retrying cannot
//     clear (storeerr.IsPermanent) becomes a 500 without Retry-After;
//   - an upload whose bytes are all stored but which the backend never
//     assembled (a failed S3 CompleteMultipartUpload) is finished on the next
//     request that looks at it, since tusd itself would answer "complete";
//   - lifecycle events (creation, finishing, termination) are reported to a
//     Lifecycle before the request that caused them is answered, and an
//     expired upload answers 410 Gone;
//   - no write takes an upload past its declared length or, while its
//     length is deferred, past Options.MaxSize (413; see limits.go);
//   - what GetInfo read is kept for the HTTP layer (internal/lastinfo),
//     which answers a mismatched Upload-Offset with the offset tusd
//     compared it to;
//   - a final upload may name partial uploads that are still in progress,
//     and is assembled when the last of them finishes (concat.go);
//   - an upload whose creation stated the SHA-256 of its bytes (the IETF
//     draft's Repr-Digest) is finished only if they have it (repr.go).
//
// tusd's StoreComposer exposes the store's optional capabilities as separate
// interfaces that type-assert their own upload type, so the wrapper unwraps
// uploads before handing them back to the inner store.
package safestore

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"regexp"
	"strings"
	"sync"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/lastinfo"
	"github.com/tusgate/tusgate/internal/lockscope"
	"github.com/tusgate/tusgate/internal/metadata"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// Assembly is what became of an upload whose bytes are all stored.
type Assembly int

// The states of Assembly.
const (
	Assembled    Assembly = iota // the final object exists
	NotAssembled                 // all parts exist, the final object does not: finish it
	Gone                         // neither exists (e.g. a lifecycle rule aborted it): the data is lost
)

// ErrNotPartial refuses a concatenation naming an upload that was not
// created as a partial upload (Upload-Concat: partial).
var ErrNotPartial = handler.NewError("ERR_INVALID_CONCAT", "every upload in Upload-Concat must have been created with Upload-Concat: partial", 400)

// AssemblyChecker reports what became of a complete upload. Stores that
// assemble on FinishUpload (S3) provide one.
type AssemblyChecker interface {
	Assembly(ctx context.Context, info handler.FileInfo) (Assembly, error)
}

// AssemblyRecorder is an AssemblyChecker that must be told when an upload
// was assembled or removed, because the store itself does not record it
// (the disk store).
type AssemblyRecorder interface {
	AssemblyChecker
	MarkAssembled(ctx context.Context, info handler.FileInfo) error
	Forget(ctx context.Context, info handler.FileInfo) error
}

// Lifecycle hears of uploads' lifecycle events before the request that
// caused them is answered; an error fails that request.
type Lifecycle interface {
	// Created follows the creation of an upload.
	Created(ctx context.Context, info handler.FileInfo) error
	// Finishing precedes the assembly of an upload whose bytes are all
	// stored. An error leaves the upload unfinished (it is tried again on
	// the next request); a *Rejection deletes the upload instead and answers
	// with the rejection's error.
	Finishing(ctx context.Context, info handler.FileInfo) error
	// Terminating precedes the deletion of an upload by its owner.
	Terminating(ctx context.Context, info handler.FileInfo) error
}

// Rejection is a Lifecycle's refusal of an upload: the upload is deleted
// and the client sees Err.
type Rejection struct{ Err handler.Error }

func (r *Rejection) Error() string { return "upload rejected: " + r.Err.Error() }

// ErrUploadExpired answers requests for an upload that expired.
var ErrUploadExpired = handler.NewError("ERR_UPLOAD_EXPIRED", "this upload expired after being idle too long and was deleted; start a new upload", http.StatusGone)

// Options configure Wrap.
type Options struct {
	Log *slog.Logger
	// Assembly, if set, is asked about complete uploads; see the package doc.
	Assembly AssemblyChecker
	// Authorize, if set, decides whether the request in ctx may reach the
	// upload id; an error answers as if the upload did not exist. It runs for
	// every ID tusd resolves: URL paths and Upload-Concat partials alike.
	Authorize func(ctx context.Context, id string) error
	// Lifecycle, if set, hears of lifecycle events; see Lifecycle.
	Lifecycle Lifecycle
	// Expired, if set, is asked about IDs the store does not know; true
	// answers 410 Gone instead of 404.
	Expired func(ctx context.Context, id string) (bool, error)
	// Admit, if set, decides whether the upload info may be created and, if
	// so, runs create (the store's creation) before it returns: the quota
	// check and the creation as one step (quota.Gate).
	Admit func(ctx context.Context, info handler.FileInfo, create func() error) error
	// Held, if set, records which uploads are locked in this process.
	Held *Held
	// MaxSize, if positive, is the most bytes an upload whose length is
	// deferred may hold (--max-size); a write past it answers 413.
	MaxSize int64
	// OnStorageError, if set, is called once for each storage error
	// answered with ErrStorageFailed (permanent) or ErrStorageUnavailable.
	OnStorageError func(permanent bool)
	// Waiting, if set, keeps the final uploads that wait for unfinished
	// partial uploads, and enables that (concatenation-unfinished; see
	// concat.go).
	Waiting Waiting
}

// Held is the set of uploads whose lock this process holds: uploads being
// written or looked at right now, which the janitor must not expire.
type Held struct {
	mu sync.Mutex
	m  map[string]int
}

// Has reports whether id's lock is held in this process.
func (h *Held) Has(id string) bool {
	if h == nil {
		return false
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.m[id] > 0
}

func (h *Held) add(id string, n int) {
	if h == nil {
		return
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.m == nil {
		h.m = map[string]int{}
	}
	h.m[id] += n
	if h.m[id] <= 0 {
		delete(h.m, id)
	}
}

type store struct {
	inner *handler.StoreComposer
	opt   Options
}

// Wrap returns a composer with the same capabilities as inner whose store
// calls go through the checks described in the package documentation. The
// locker is passed through unchanged.
func Wrap(inner *handler.StoreComposer, opt Options) *handler.StoreComposer {
	if opt.Log == nil {
		opt.Log = slog.Default()
	}
	s := &store{inner: inner, opt: opt}
	c := handler.NewStoreComposer()
	c.UseCore(s)
	if inner.UsesTerminater {
		c.UseTerminater(s)
	}
	if inner.UsesConcater {
		c.UseConcater(s)
	}
	if inner.UsesLengthDeferrer {
		c.UseLengthDeferrer(s)
	}
	if inner.UsesContentServer {
		c.UseContentServer(s)
	}
	if inner.UsesLocker {
		c.UseLocker(&locker{inner: inner.Locker, s: s})
	}
	return c
}

// locker checks IDs and authorization before taking an upload's lock: tusd
// locks before it calls GetUpload, and taking a held lock asks its holder to
// release it, so without this check anyone could interrupt anyone's PATCH
// by sending a HEAD for its URL.
type locker struct {
	inner handler.Locker
	s     *store
}

func (l *locker) NewLock(id string) (handler.Lock, error) {
	lock, err := l.inner.NewLock(id)
	if err != nil {
		return nil, err
	}
	return &checkedLock{inner: lock, id: id, s: l.s}, nil
}

type checkedLock struct {
	inner   handler.Lock
	id      string
	s       *store
	release func() // ends the record in the request's lockscope
}

// Lock runs in the request's context (tusd's lock context carries the
// request's values), so the caller is known here.
func (l *checkedLock) Lock(ctx context.Context, requestRelease func()) error {
	if !ValidID(l.id) {
		return handler.ErrNotFound
	}
	if l.s.opt.Authorize != nil {
		if err := l.s.opt.Authorize(ctx, l.id); err != nil {
			return err
		}
	}
	if err := l.inner.Lock(ctx, requestRelease); err != nil {
		return err
	}
	l.s.opt.Held.add(l.id, 1)
	l.release = lockscope.Add(ctx, l.id)
	return nil
}

func (l *checkedLock) Unlock() error {
	if l.release != nil {
		l.release()
	}
	l.s.opt.Held.add(l.id, -1)
	return l.inner.Unlock()
}

// validID accepts what tusd itself allows in IDs (RFC 3986 path
// characters), but no empty segments, no segments starting with "." (which
// covers "." and "..", and tusgate's own .tusgate folder) and no
// backslashes, so that no ID can address anything outside the uploads.
var validIDChars = regexp.MustCompile(`^[A-Za-z0-9\-._~!$'()*+,;=/:@]{1,512}$`)

// ValidID reports whether id is an upload ID the store may be asked about.
func ValidID(id string) bool {
	if !validIDChars.MatchString(id) {
		return false
	}
	for seg := range strings.SplitSeq(id, "/") {
		if seg == "" || seg[0] == '.' {
			return false
		}
	}
	return true
}

// notFound turns the store's ErrNotFound into ErrUploadExpired when the
// upload expired recently. Stores report unknown uploads from GetUpload
// (filestore) or only from GetInfo (s3store).
func (s *store) notFound(ctx context.Context, id string, err error) error {
	if !errors.Is(err, handler.ErrNotFound) || s.opt.Expired == nil {
		return err
	}
	expired, xerr := s.opt.Expired(ctx, id)
	if xerr != nil {
		return xerr
	}
	if expired {
		return ErrUploadExpired
	}
	return err
}

func (s *store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	if info.ID != "" && !ValidID(info.ID) {
		return nil, fmt.Errorf("safestore: refusing invalid upload ID %q", info.ID)
	}
	var up handler.Upload
	create := func() (err error) {
		up, err = s.inner.Core.NewUpload(metadata.WithUpload(ctx, info.MetaData), info)
		return err
	}
	var err error
	if s.opt.Admit != nil {
		err = s.opt.Admit(ctx, info, create)
	} else {
		err = create()
	}
	if err != nil {
		return nil, s.fail(ctx, "create", info.ID, err)
	}
	if lc := s.opt.Lifecycle; lc != nil {
		created, err := up.GetInfo(ctx)
		if err == nil {
			err = lc.Created(ctx, created)
		}
		if err != nil {
			return nil, s.fail(ctx, "report creation", info.ID, err)
		}
	}
	return &upload{s: s, inner: up}, nil
}

func (s *store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	if !ValidID(id) {
		return nil, handler.ErrNotFound
	}
	if s.opt.Authorize != nil {
		if err := s.opt.Authorize(ctx, id); err != nil {
			return nil, err
		}
	}
	up, err := s.inner.Core.GetUpload(ctx, id)
	if err != nil {
		return nil, s.fail(ctx, "get", id, s.notFound(ctx, id, err))
	}
	return &upload{s: s, inner: up, id: id, existing: true}, nil
}

func (s *store) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return u.(*upload)
}

func (s *store) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return u.(*upload)
}

func (s *store) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return u.(*upload)
}

func (s *store) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return u.(*upload)
}

// upload wraps one upload of the inner store.
type upload struct {
	s     *store
	inner handler.Upload
	id    string
	// existing is set for uploads looked up by ID, not just created: only
	// those can be complete but unassembled.
	existing bool
	// info is what the last GetInfo returned, with declared lengths since.
	info *handler.FileInfo
}

func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	n, err := u.limitedWrite(ctx, offset, src)
	return n, u.s.fail(ctx, "write", u.id, err)
}

func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		if u.existing {
			err = u.s.notFound(ctx, u.id, err)
		}
		return info, u.s.fail(ctx, "info", u.id, err)
	}
	if u.id == "" {
		u.id = info.ID
	}
	if u.reportsAsFinished(ctx, info) {
		return asPartial(info) // see concat.go
	}
	if u.s.opt.Waiting != nil && u.existing && info.IsFinal && !finished(info) && lockscope.Holds(ctx, u.id) {
		// A final upload waiting for partial uploads: assemble it if they
		// are all done (see concat.go).
		done, err := u.s.assembleWaiting(ctx, u.inner, info)
		if err != nil {
			u.s.opt.Log.WarnContext(ctx, "could not assemble a final upload whose partial uploads are done; it is tried again on its next request", "id", u.id, "error", err.Error())
		}
		if done {
			// Read anew: stores keep what they read (filestore).
			inner, err := u.s.inner.Core.GetUpload(ctx, u.id)
			if err == nil {
				u.inner = inner
				info, err = inner.GetInfo(ctx)
			}
			if err != nil {
				return info, u.s.fail(ctx, "info", u.id, err)
			}
		}
	}
	if a := u.s.opt.Assembly; a != nil && u.existing && !info.SizeIsDeferred && info.Offset == info.Size && !info.IsFinal {
		state, err := a.Assembly(ctx, info)
		if err != nil {
			return info, u.s.fail(ctx, "check assembly", u.id, err)
		}
		switch state {
		case NotAssembled:
			if !lockscope.Holds(ctx, u.id) {
				// A repair must not race with the request that holds the
				// lock: only a request holding it finishes the upload (see
				// ConcatUploads for the one that reads without it).
				break
			}
			u.s.opt.Log.WarnContext(ctx, "finishing an upload whose assembly failed or was not approved earlier", "id", u.id)
			if err := u.finish(ctx, info); err != nil {
				return info, err
			}
		case Assembled:
			if want, stated, _ := objsha.Expected(info); stated && lockscope.Holds(ctx, u.id) {
				if sum, ok := objsha.Sum(info); ok && !objsha.Equal(sum, want) {
					// Assembled before it could be compared (see repr.go),
					// and its deletion failed: it is not finished, and goes.
					return info, u.checkReprAssembled(ctx, info, want)
				} else if !ok {
					// Assembled before it could be compared, and the
					// process died while it computed the SHA-256 from the
					// object: compute it again, and compare.
					return info, u.recheckRepr(ctx, info, want)
				}
			}
		case Gone:
			// Clients must learn that the bytes are gone and start over;
			// answering "complete" or "retry later" would lose the file.
			u.s.opt.Log.WarnContext(ctx, "upload's data is gone from storage (multipart upload aborted?); answering 404", "id", u.id)
			// Midway through an expiry's removal this is the tombstone's 410.
			return info, u.s.notFound(ctx, u.id, handler.ErrNotFound)
		}
	}
	u.info = &info
	lastinfo.Record(ctx, info)
	return info, nil
}

func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	r, err := u.inner.GetReader(ctx)
	return r, u.s.fail(ctx, "read", u.id, err)
}

func (u *upload) FinishUpload(ctx context.Context) error {
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		return u.s.fail(ctx, "finish", u.id, err)
	}
	return u.finish(ctx, info)
}

// finish checks the SHA-256 the upload's creation stated (repr.go), tells
// the Lifecycle (which may refuse the upload), assembles the upload and
// records that it did.
func (u *upload) finish(ctx context.Context, info handler.FileInfo) error {
	want, stated, err := objsha.Expected(info)
	if err != nil {
		return u.s.fail(ctx, "read the stated SHA-256", u.id, storeerr.Permanent(err))
	}
	checked := false
	if stated {
		if checked, err = u.checkRepr(ctx, want); err != nil {
			return err
		}
	}
	if err := u.finishing(ctx, info); err != nil {
		return err
	}
	if err := u.inner.FinishUpload(ctx); err != nil {
		return u.s.fail(ctx, "finish", u.id, err)
	}
	if stated && !checked {
		if err := u.checkReprAssembled(ctx, info, want); err != nil {
			return err
		}
	}
	if err := u.assembled(ctx, info); err != nil {
		return err
	}
	if info.IsPartial {
		u.s.resumeFinals(ctx, info.ID)
	}
	return nil
}

// assembled records, for stores that need it, that the upload is finished.
func (u *upload) assembled(ctx context.Context, info handler.FileInfo) error {
	if rec, ok := u.s.opt.Assembly.(AssemblyRecorder); ok {
		return u.s.fail(ctx, "record assembly", u.id, rec.MarkAssembled(ctx, info))
	}
	return nil
}

// finishing asks the Lifecycle about an upload about to be finished and
// deletes it if refused.
func (u *upload) finishing(ctx context.Context, info handler.FileInfo) error {
	lc := u.s.opt.Lifecycle
	if lc == nil {
		return nil
	}
	err := lc.Finishing(ctx, info)
	var rej *Rejection
	if !errors.As(err, &rej) {
		return u.s.fail(ctx, "report finishing", u.id, err)
	}
	u.s.opt.Log.InfoContext(ctx, "upload rejected before finishing; deleting it", "id", info.ID, "status", rej.Err.HTTPResponse.StatusCode)
	if u.s.inner.UsesTerminater {
		if err := u.s.inner.Terminater.AsTerminatableUpload(u.inner).Terminate(ctx); err != nil {
			return u.s.fail(ctx, "delete rejected upload", u.id, err)
		}
		u.forget(ctx, info)
	}
	return rej.Err
}

func (u *upload) forget(ctx context.Context, info handler.FileInfo) {
	if rec, ok := u.s.opt.Assembly.(AssemblyRecorder); ok {
		if err := rec.Forget(ctx, info); err != nil {
			u.s.opt.Log.WarnContext(ctx, "could not forget a deleted upload's assembly marker", "id", info.ID, "error", err.Error())
		}
	}
}

func (u *upload) Terminate(ctx context.Context) error {
	// Stores may "terminate" uploads that never existed (s3store does);
	// unknown uploads must answer 404.
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		return u.s.fail(ctx, "terminate", u.id, u.s.notFound(ctx, u.id, err))
	}
	if lc := u.s.opt.Lifecycle; lc != nil {
		if err := lc.Terminating(ctx, info); err != nil {
			return u.s.fail(ctx, "report termination", u.id, err)
		}
	}
	err = u.s.inner.Terminater.AsTerminatableUpload(u.inner).Terminate(ctx)
	if err == nil {
		u.forget(ctx, info)
		if info.IsPartial {
			u.s.forgetWaiting(ctx, info.ID)
		}
	}
	return u.s.fail(ctx, "terminate", u.id, err)
}

func (u *upload) DeclareLength(ctx context.Context, length int64) error {
	err := u.s.inner.LengthDeferrer.AsLengthDeclarableUpload(u.inner).DeclareLength(ctx, length)
	if err == nil && u.info != nil {
		u.info.Size, u.info.SizeIsDeferred = length, false
	}
	return u.s.fail(ctx, "declare length", u.id, err)
}

func (u *upload) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	err := u.s.inner.ContentServer.AsServableUpload(u.inner).ServeContent(ctx, w, r)
	return u.s.fail(ctx, "serve", u.id, err)
}
