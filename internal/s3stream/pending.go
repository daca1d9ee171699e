package s3stream

import (
	"context"
	"fmt"
	"maps"
	"strconv"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/layout"
)

// pendingKey, in the Storage map of an upload's .info, marks the parts
// after the first N as provisional: a write whose body states a digest
// (tus's checksum extension) stores its parts while the body arrives, but
// they may count only once the digest checked out. Until then, and if the
// process dies before it knew, they are stale: the offset stops before
// them, and the next write under the lock blanks them. The marker lives in
// the .info, which every look at an upload reads anyway, so uploads without
// checksums pay nothing for it.
const pendingKey = "TusgatePendingParts"

// pendingCount reads the marker of info: ok is false without one.
func pendingCount(info handler.FileInfo) (n int, ok bool, err error) {
	v, ok := info.Storage[pendingKey]
	if !ok {
		return 0, false, nil
	}
	n, err = strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("%s is %q", pendingKey, v)
	}
	return n, true, nil
}

// setPending marks the parts after the first n of the upload in st as
// provisional.
func (s *Store) setPending(ctx context.Context, st *state, n int) error {
	info := st.info
	info.Storage = maps.Clone(info.Storage)
	if info.Storage == nil {
		info.Storage = map[string]string{}
	}
	info.Storage[pendingKey] = strconv.Itoa(n)
	if err := s.writeInfo(ctx, info); err != nil {
		return fmt.Errorf("s3stream: marking the parts of a checked write: %w", err)
	}
	st.info, st.pending = info, true
	return nil
}

// clearPending removes the marker: the parts after it count.
func (s *Store) clearPending(ctx context.Context, st *state) error {
	if !st.pending {
		return nil
	}
	info := st.info
	info.Storage = maps.Clone(info.Storage)
	delete(info.Storage, pendingKey)
	// The parts count from now on: so does the running state at their end.
	info = withSHA(st, info)
	if err := s.writeInfo(ctx, info); err != nil {
		return fmt.Errorf("s3stream: committing the parts of a checked write: %w", err)
	}
	st.info, st.pending = info, false
	return nil
}

// settle ends a write whose body states a digest: when the body checked
// out (and the write succeeded), its parts are committed; otherwise they
// are blanked and the upload is as it was before (st becomes before), with
// the tail it had, so that none of the request's bytes count. werr is the
// write's own error.
func (s *Store) settle(ctx context.Context, st *state, before state, v *checksum.Verifier, werr error) error {
	if !st.pending {
		// Committed before its tail was stored (see WriteChunk): what
		// failed after that failed an ordinary write, which stored what
		// it stored.
		return werr
	}
	err := werr
	if err == nil {
		err = v.Verify()
	}
	if err == nil {
		// If this fails, the parts stay provisional and the request fails:
		// nothing it sent counts, and the client sends it again.
		return s.clearPending(ctx, st)
	}
	objectID, multipartID := layout.SplitID(st.info.ID)
	key := s.key(objectID)
	// A rollback that fails leaves the marker: the parts stay stale.
	ctx = context.WithoutCancel(ctx)
	for _, p := range st.parts[len(before.parts):] {
		before.stale = append(before.stale, *p.PartNumber)
	}
	before.stale = append(before.stale, st.stale...)
	before.info, before.pending = st.info, true
	*st = before
	rerr := s.blankStale(ctx, st, key, multipartID)
	if rerr == nil {
		rerr = s.clearPending(ctx, st)
	}
	if rerr != nil {
		s.Log.DebugContext(ctx, "rolling back a checked write failed; its parts stay stale until the next write", "key", key, "error", rerr.Error())
	}
	return err
}
