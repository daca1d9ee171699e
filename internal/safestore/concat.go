package safestore

// Concatenation: tus's concatenation and concatenation-unfinished
// extensions.
//
// tusd concatenates a final upload's partial uploads when the final upload
// is created, and refuses partial uploads that are not finished. With
// Options.Waiting set, a final upload may name partial uploads still in
// progress (concatenation-unfinished):
//
//   - while tusd creates the final upload, the partial uploads it reads
//     report their declared length as their offset (so tusd sums the
//     lengths instead of refusing them); a partial upload whose length is
//     still deferred is refused, since the final upload's length must be
//     known;
//   - ConcatUploads then records, in storage (Waiting), that the final
//     upload waits for each of its partial uploads, and leaves the final
//     upload unassembled: HEAD answers without Upload-Offset (the HTTP
//     layer removes it) until it is assembled;
//   - when a partial upload finishes (its own request, or the repair of a
//     failed assembly), the final uploads waiting for it are assembled if
//     all their partial uploads are finished and assembled, under the final
//     upload's lock: the one that finishes last assembles;
//   - a request holding a waiting final upload's lock (HEAD, say) assembles
//     it too if it finds all its partial uploads done, so that a failed
//     assembly is tried again.
//
// The records live where the uploads do, so that every instance finds
// them. No assembler takes a partial upload's lock: a partial upload whose
// own assembly failed is repaired by the next request for it, which then
// assembles the final uploads waiting for it.

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/metadata"
)

// Waiting keeps, in storage that every instance sees, which final uploads
// wait for which unfinished partial uploads (layout.WaitingDir).
type Waiting interface {
	// Add records that final upload finalID waits for partial upload
	// partialID.
	Add(ctx context.Context, partialID, finalID string) error
	// Finals lists the final uploads recorded as waiting for partialID.
	Finals(ctx context.Context, partialID string) ([]string, error)
	// Remove deletes a record; a missing one is no error.
	Remove(ctx context.Context, partialID, finalID string) error
}

// ErrPartialLengthUnknown refuses a final upload naming an unfinished
// partial upload whose length is still deferred: the final upload's length
// is the sum of its partial uploads' and must be known when it is created.
var ErrPartialLengthUnknown = handler.NewError("ERR_INVALID_CONCAT",
	"a partial upload in Upload-Concat has not declared its length yet; declare it (Upload-Length on its next PATCH) before naming it in a final upload",
	http.StatusBadRequest)

type unfinishedKey struct{}

// AllowUnfinishedPartials marks the request in ctx as the creation of a
// final upload, whose partial uploads may be unfinished (the HTTP layer sets
// it on POSTs with Upload-Concat: final). It has an effect only with
// Options.Waiting set.
func AllowUnfinishedPartials(ctx context.Context) context.Context {
	return context.WithValue(ctx, unfinishedKey{}, true)
}

func unfinishedAllowed(ctx context.Context) bool {
	ok, _ := ctx.Value(unfinishedKey{}).(bool)
	return ok
}

// finished reports whether info's bytes are all stored.
func finished(info handler.FileInfo) bool {
	return !info.SizeIsDeferred && info.Offset == info.Size
}

// asPartial is what GetInfo reports of an unfinished partial upload to the
// creation of a final upload: its length as its offset (tusd refuses
// unfinished partial uploads), or ErrPartialLengthUnknown.
func asPartial(info handler.FileInfo) (handler.FileInfo, error) {
	if info.SizeIsDeferred {
		return info, ErrPartialLengthUnknown
	}
	info.Offset = info.Size
	return info, nil
}

// reportsAsFinished tells GetInfo to answer with asPartial.
func (u *upload) reportsAsFinished(ctx context.Context, info handler.FileInfo) bool {
	return u.s.opt.Waiting != nil && u.existing && info.IsPartial && !finished(info) && unfinishedAllowed(ctx)
}

// ConcatUploads assembles a new final upload from its partial uploads, or,
// if some are unfinished, records that it waits for them.
func (u *upload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	infos := make([]handler.FileInfo, len(partials))
	inner := make([]handler.Upload, len(partials))
	waits := false
	for i, p := range partials {
		w, ok := p.(*upload)
		if !ok {
			return fmt.Errorf("safestore: partial upload %d is not from this store", i)
		}
		info, err := w.inner.GetInfo(ctx)
		if err != nil {
			return u.s.fail(ctx, "concatenate", u.id, err)
		}
		infos[i], inner[i] = info, w.inner
		waits = waits || !finished(info)
	}
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		return u.s.fail(ctx, "concatenate", u.id, err)
	}
	if waits {
		return u.wait(ctx, info, infos)
	}
	for _, p := range infos {
		// CheckPartials refused uploads that are not partial before the
		// final upload was created.
		if err := u.s.assemblePartial(ctx, p); err != nil {
			return err
		}
	}
	return u.concatenate(ctx, info, inner)
}

// concatenate tells the Lifecycle (which may refuse the final upload),
// assembles the final upload from the partial uploads inner (of the inner
// store) and records that it did. tusd never calls FinishUpload for a
// concatenation: this is its finish.
func (u *upload) concatenate(ctx context.Context, info handler.FileInfo, inner []handler.Upload) error {
	info.Offset = info.Size
	if err := u.finishing(ctx, info); err != nil {
		return err
	}
	mctx := metadata.WithUpload(ctx, info.MetaData)
	if err := u.s.inner.Concater.AsConcatableUpload(u.inner).ConcatUploads(mctx, inner); err != nil {
		return u.s.fail(ctx, "concatenate", u.id, err)
	}
	return u.assembled(ctx, info)
}

// wait records that the new final upload waits for its partial uploads,
// under the final upload's lock, and then assembles it if they all
// finished meanwhile (a partial upload that finished before its record was
// written found none). Finished partial uploads get a record too: one
// whose own assembly failed assembles the final upload when it is
// repaired. Records go when the final upload is assembled.
func (u *upload) wait(ctx context.Context, final handler.FileInfo, partials []handler.FileInfo) error {
	unlock, err := u.s.lock(ctx, final.ID)
	if err != nil {
		return u.s.fail(ctx, "lock the final upload", final.ID, err)
	}
	defer unlock()
	for _, p := range partials {
		if err := u.s.opt.Waiting.Add(ctx, p.ID, final.ID); err != nil {
			return u.s.fail(ctx, "record a waiting final upload", final.ID, err)
		}
	}
	u.s.opt.Log.InfoContext(ctx, "final upload waits for unfinished partial uploads", "id", final.ID, "partials", final.PartialUploads)
	_, err = u.s.assembleWaiting(ctx, u.inner, final)
	return err
}

// assembleWaiting assembles the final upload final (of the inner store,
// whose lock the caller holds) if all its partial uploads are finished and
// assembled, and removes the records of its waiting; done tells whether
// the final upload is assembled now. A final upload with a missing partial
// upload is left as it is: it can never be assembled, and expires.
func (s *store) assembleWaiting(ctx context.Context, finalUp handler.Upload, final handler.FileInfo) (done bool, err error) {
	if finished(final) {
		return true, nil
	}
	inner := make([]handler.Upload, len(final.PartialUploads))
	for i, id := range final.PartialUploads {
		up, err := s.inner.Core.GetUpload(ctx, id)
		var info handler.FileInfo
		if err == nil {
			info, err = up.GetInfo(ctx)
		}
		if errors.Is(err, handler.ErrNotFound) {
			return false, nil
		}
		if err != nil {
			return false, s.fail(ctx, "read a partial upload", id, err)
		}
		if !finished(info) {
			return false, nil
		}
		if a := s.opt.Assembly; a != nil {
			state, err := a.Assembly(ctx, info)
			if err != nil {
				return false, s.fail(ctx, "check assembly", id, err)
			}
			if state != Assembled {
				return false, nil
			}
		}
		inner[i] = up
	}
	u := &upload{s: s, inner: finalUp, id: final.ID}
	err = u.concatenate(ctx, final, inner)
	if err != nil {
		// Read anew (stores keep what they read): was it deleted?
		up, gerr := s.inner.Core.GetUpload(ctx, final.ID)
		if gerr == nil {
			_, gerr = up.GetInfo(ctx)
		}
		if !errors.Is(gerr, handler.ErrNotFound) {
			return false, err // it still waits
		}
		// The application refused it, and it was deleted.
	}
	// Assembled, or deleted: nothing waits any more.
	for _, id := range final.PartialUploads {
		if rerr := s.opt.Waiting.Remove(ctx, id, final.ID); rerr != nil {
			s.opt.Log.WarnContext(ctx, "could not remove the record of a final upload waiting for a partial upload", "id", final.ID, "partial", id, "error", rerr.Error())
		}
	}
	if err == nil {
		s.opt.Log.InfoContext(ctx, "final upload assembled from partial uploads that finished after it was created", "id", final.ID)
	}
	return err == nil, err
}

// resumeFinals assembles the final uploads waiting for the partial upload
// partialID, which just finished, where it was the last they waited for.
// Failures are logged, not returned: the partial upload is finished either
// way, and a waiting final upload is assembled again by the next request
// for it.
func (s *store) resumeFinals(ctx context.Context, partialID string) {
	if s.opt.Waiting == nil {
		return
	}
	finals, err := s.opt.Waiting.Finals(ctx, partialID)
	if err != nil {
		s.opt.Log.WarnContext(ctx, "could not list the final uploads waiting for a partial upload; they are assembled on their next request", "partial", partialID, "error", err.Error())
		return
	}
	for _, id := range finals {
		if err := s.resumeFinal(ctx, partialID, id); err != nil {
			s.opt.Log.WarnContext(ctx, "could not assemble a final upload whose partial upload finished; it is tried again on its next request", "id", id, "partial", partialID, "error", err.Error())
		}
	}
}

// resumeFinal assembles the final upload finalID, which waits for the
// partial upload partialID, if that was the last one it waited for.
func (s *store) resumeFinal(ctx context.Context, partialID, finalID string) error {
	if !ValidID(finalID) {
		return s.opt.Waiting.Remove(ctx, partialID, finalID)
	}
	unlock, err := s.lock(ctx, finalID)
	if err != nil {
		return err
	}
	defer unlock()
	up, err := s.inner.Core.GetUpload(ctx, finalID)
	var info handler.FileInfo
	if err == nil {
		info, err = up.GetInfo(ctx)
	}
	switch {
	case errors.Is(err, handler.ErrNotFound):
		return s.opt.Waiting.Remove(ctx, partialID, finalID) // deleted or expired
	case err != nil:
		return err
	case !info.IsFinal || finished(info):
		return s.opt.Waiting.Remove(ctx, partialID, finalID)
	}
	_, err = s.assembleWaiting(ctx, up, info)
	return err
}

// forgetWaiting removes the records of the final uploads waiting for the
// partial upload partialID, which was deleted: they can never be assembled,
// and expire.
func (s *store) forgetWaiting(ctx context.Context, partialID string) {
	if s.opt.Waiting == nil {
		return
	}
	finals, err := s.opt.Waiting.Finals(ctx, partialID)
	for _, id := range finals {
		if err == nil {
			err = s.opt.Waiting.Remove(ctx, partialID, id)
		}
	}
	if err != nil {
		s.opt.Log.WarnContext(ctx, "could not remove the records of final uploads waiting for a deleted partial upload", "partial", partialID, "error", err.Error())
	}
}

// lock takes upload id's lock through the checked locker, so that the
// caller must own the upload, waiting at most partialLockWait. A request
// that asks for the lock meanwhile waits for it to be released: this lock
// is held only for a short repair or assembly.
func (s *store) lock(ctx context.Context, id string) (unlock func(), err error) {
	if !s.inner.UsesLocker {
		return func() {}, nil
	}
	lock, err := (&locker{inner: s.inner.Locker, s: s}).NewLock(id)
	if err != nil {
		return nil, err
	}
	lockCtx, cancel := context.WithTimeout(ctx, partialLockWait)
	defer cancel()
	if err := lock.Lock(lockCtx, func() {}); err != nil {
		return nil, err
	}
	return func() { _ = lock.Unlock() }, nil
}

// CheckPartials refuses a concatenation of uploads that were not created
// as partial uploads (Upload-Concat: partial), before the final upload is
// created (tusd's pre-create hook): tusd itself would concatenate any
// finished upload. store is the wrapped store, so every ID is authorized.
func CheckPartials(ctx context.Context, store *handler.StoreComposer, ids []string) error {
	for _, id := range ids {
		up, err := store.Core.GetUpload(ctx, id)
		if err != nil {
			return err
		}
		info, err := up.GetInfo(ctx)
		if err != nil {
			return err
		}
		if !info.IsPartial {
			return ErrNotPartial
		}
	}
	return nil
}

// assemblePartial finishes a partial upload that is complete but not
// assembled (its CompleteMultipartUpload failed), under its lock: tusd
// reads the partials of a final upload without locking them, and their
// objects must exist before they are concatenated.
func (s *store) assemblePartial(ctx context.Context, info handler.FileInfo) error {
	a := s.opt.Assembly
	if a == nil || !finished(info) || !s.inner.UsesLocker {
		return nil
	}
	state, err := a.Assembly(ctx, info)
	if err != nil || state != NotAssembled {
		return s.fail(ctx, "check assembly", info.ID, err)
	}
	unlock, err := s.lock(ctx, info.ID)
	if err != nil {
		return s.fail(ctx, "lock partial upload", info.ID, err)
	}
	defer unlock()
	up, err := s.GetUpload(ctx, info.ID)
	if err != nil {
		return err
	}
	_, err = up.GetInfo(ctx) // holding the lock, this finishes it
	return err
}

// partialLockWait bounds how long a concatenation waits for a lock of a
// partial or final upload (tusd's own lock wait).
const partialLockWait = 20 * time.Second
