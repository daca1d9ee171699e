package diskbackend

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/objsha"
)

// runningSHA is the upload's running SHA-256 for a write at offset: from
// the state in the .info if it is at offset (none yet: an empty upload
// starts from nothing). Otherwise nil: the write is not hashed, and the
// bytes after the state are read from the file when the upload is
// finished.
func (u *upload) runningSHA(info handler.FileInfo, offset int64) *objsha.Hash {
	if !objsha.Wanted(u.s.objectSHA256, info) {
		return nil
	}
	snap, ok, err := objsha.State(info)
	switch {
	case err != nil:
		return nil
	case !ok && offset == 0:
		snap = objsha.Fresh()
	case !ok || snap.Offset != offset:
		return nil
	}
	h, err := objsha.Resume(snap)
	if err != nil {
		return nil
	}
	return h
}

// withSHA is info carrying h's state.
func withSHA(info handler.FileInfo, h *objsha.Hash) handler.FileInfo {
	snap, _ := h.At(h.Offset())
	return objsha.WithState(info, &snap)
}

// sum is the SHA-256 of the upload's bytes (all of them: info.Size): the
// one recorded, or the state in the .info continued with the bytes of the
// file after it (all of them if there is no usable state).
func (u *upload) sum(info handler.FileInfo) ([]byte, error) {
	if sum, ok := objsha.Sum(info); ok {
		return sum, nil
	}
	snap, ok, err := objsha.State(info)
	if !ok || err != nil || snap.Offset > info.Size {
		snap = objsha.Fresh()
	}
	f, err := os.Open(info.Storage[filestore.StorageKeyPath])
	if err != nil {
		return nil, fmt.Errorf("diskbackend: reading %s for its SHA-256: %w", info.ID, err)
	}
	defer f.Close()
	if _, err := f.Seek(snap.Offset, io.SeekStart); err != nil {
		return nil, fmt.Errorf("diskbackend: reading %s for its SHA-256: %w", info.ID, err)
	}
	want := info.Size - snap.Offset
	sum, n, err := objsha.Of(snap, io.LimitReader(f, want))
	if err == nil && n != want {
		err = fmt.Errorf("%d bytes after offset %d, want %d", n, snap.Offset, want)
	}
	if err != nil {
		return nil, fmt.Errorf("diskbackend: reading %s for its SHA-256: %w", info.ID, err)
	}
	return sum, nil
}

// SHA256 implements objsha.Digester: the SHA-256 of the upload once all
// its bytes are stored, if it keeps one. It records it in the .info, so
// that a later look needs no reading.
func (u *upload) SHA256(ctx context.Context) ([]byte, bool, error) {
	info, err := u.GetInfo(ctx)
	if err != nil {
		return nil, false, err
	}
	if !objsha.Wanted(u.s.objectSHA256, info) || info.SizeIsDeferred || info.Offset != info.Size {
		return nil, false, nil
	}
	if sum, ok := objsha.Sum(info); ok {
		return sum, true, nil
	}
	sum, err := u.sum(info)
	if err == nil {
		err = u.write(objsha.WithSum(info, sum))
	}
	if err != nil {
		return nil, false, err
	}
	return sum, true, nil
}

// recordSHA records the SHA-256 of the upload, all of whose bytes are
// stored, in its .info, if it keeps one.
func (u *upload) recordSHA(ctx context.Context) error {
	info, err := u.info(ctx)
	if err != nil {
		return err
	}
	if !objsha.Wanted(u.s.objectSHA256, info) {
		return nil
	}
	if _, ok := objsha.Sum(info); ok {
		return nil
	}
	sum, err := u.sum(info)
	if err != nil {
		return err
	}
	return u.write(objsha.WithSum(info, sum))
}
