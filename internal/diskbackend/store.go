package diskbackend

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"strconv"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/bodylen"
	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/lockscope"
)

// store is tusd's filestore with checked writes (tus's checksum
// extension) and the upload's SHA-256 kept as its bytes arrive.
//
// A write whose body states a digest appends provisionally, and the data
// file is cut back to where it was when the digest does not match. A
// marker in the .info (pendingKey) keeps a kill between the append and the
// verdict from making unchecked bytes count: while it is there, the offset
// stops at the size it records, and the next request holding the upload's
// lock cuts the file back.
//
// The running SHA-256 (internal/objsha), with ObjectSHA256 or for uploads
// that stated a Repr-Digest, is kept in the .info at the end of the data
// written. The file can be read, so a state left behind (a process killed
// between appending and writing the .info) only means reading the bytes
// after it again when the upload is finished.
type store struct {
	filestore.FileStore
	objectSHA256 bool
}

// pendingKey, in the Storage map of an upload's .info, is the size of its
// data file before a checked write began.
const pendingKey = "TusgatePendingSize"

func (s store) UseIn(c *handler.StoreComposer) {
	c.UseCore(s)
	c.UseTerminater(s)
	c.UseConcater(s)
	c.UseLengthDeferrer(s)
	c.UseContentServer(s)
}

func (s store) NewUpload(ctx context.Context, info handler.FileInfo) (handler.Upload, error) {
	up, err := s.FileStore.NewUpload(ctx, info)
	if err != nil {
		return nil, err
	}
	return &upload{inner: up, s: s}, nil
}

func (s store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.FileStore.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return &upload{inner: up, s: s}, nil
}

func (s store) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return s.FileStore.AsTerminatableUpload(u.(*upload).inner)
}

func (s store) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return u.(*upload)
}

func (s store) AsServableUpload(u handler.Upload) handler.ServableUpload {
	return s.FileStore.AsServableUpload(u.(*upload).inner)
}

func (s store) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return concatable{s: s, u: u.(*upload)}
}

// concatable hands filestore its own uploads.
type concatable struct {
	s store
	u *upload
}

func (c concatable) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	inner := make([]handler.Upload, len(partials))
	for i, p := range partials {
		w, ok := p.(*upload)
		if !ok {
			return fmt.Errorf("diskbackend: concatenating an upload of another store (%T)", p)
		}
		inner[i] = w.inner
	}
	return c.s.FileStore.AsConcatableUpload(c.u.inner).ConcatUploads(ctx, inner)
}

// upload is one of filestore's uploads.
type upload struct {
	inner handler.Upload
	s     store
	// saved is the .info as this upload last wrote it. filestore keeps
	// the .info it read (its DeclareLength would write that back, without
	// tusgate's keys), so GetInfo takes the .info's keys and length from
	// here once this upload wrote it.
	saved *handler.FileInfo
}

// info is the upload as filestore sees it, with what this upload wrote
// to the .info since.
func (u *upload) info(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.inner.GetInfo(ctx)
	if err != nil || u.saved == nil {
		return info, err
	}
	info.Storage, info.Size, info.SizeIsDeferred = u.saved.Storage, u.saved.Size, u.saved.SizeIsDeferred
	return info, nil
}

// GetInfo reports the upload with its offset at the size before an
// unfinished checked write; a request that holds the upload's lock cuts the
// data back to it first.
func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.info(ctx)
	if err != nil {
		return info, err
	}
	size, ok, err := pendingSize(info)
	if err != nil || !ok {
		return info, err
	}
	info.Offset = min(info.Offset, size)
	if lockscope.Holds(ctx, info.ID) {
		if err := u.rollBack(info, size); err != nil {
			return info, err
		}
	}
	return info, nil
}

func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	info, err := u.info(ctx)
	if err != nil {
		return 0, err
	}
	h := u.runningSHA(info, offset)
	if h != nil {
		src = h.Reader(src)
	}
	e := checksum.From(ctx)
	if e == nil {
		n, err := u.inner.WriteChunk(ctx, offset, src)
		if h != nil && n > 0 && h.Offset() == offset+n {
			// Should this fail, the state before stays: the bytes after it
			// are read from the file when the upload is finished.
			_ = u.write(withSHA(info, h))
		}
		return n, err
	}
	if err := u.write(withPending(info, offset)); err != nil {
		return 0, err
	}
	length, ok := bodylen.From(ctx)
	if !ok {
		length = -1
	}
	v := e.Wrap(src, length)
	n, err := u.inner.WriteChunk(ctx, offset, v)
	if err == nil {
		err = v.Verify()
	}
	if err == nil {
		done := withPending(info, -1)
		if h != nil && h.Offset() == offset+n {
			done = withSHA(done, h)
		}
		if err := u.write(done); err != nil {
			// The bytes stay provisional: the request fails, nothing counts.
			return 0, err
		}
		return n, nil
	}
	if rerr := u.rollBack(info, offset); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return 0, err
}

// DeclareLength records the length in the .info (as filestore does, with
// tusgate's keys).
func (u *upload) DeclareLength(ctx context.Context, length int64) error {
	info, err := u.info(ctx)
	if err != nil {
		return err
	}
	info.Size, info.SizeIsDeferred = length, false
	return u.write(info)
}

func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	return u.inner.GetReader(ctx)
}

// FinishUpload records the upload's SHA-256 in the .info, if it keeps one.
func (u *upload) FinishUpload(ctx context.Context) error {
	if err := u.recordSHA(ctx); err != nil {
		return err
	}
	return u.inner.FinishUpload(ctx)
}

func (u *upload) ServeContent(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	return u.inner.(handler.ServableUpload).ServeContent(ctx, w, r)
}

// pendingSize reads the marker of info.
func pendingSize(info handler.FileInfo) (int64, bool, error) {
	v, ok := info.Storage[pendingKey]
	if !ok {
		return 0, false, nil
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n < 0 {
		return 0, false, fmt.Errorf("diskbackend: %s of %s is %q", pendingKey, info.ID, v)
	}
	return n, true, nil
}

// withPending is info with the marker set to size (or without it, for
// size < 0).
func withPending(info handler.FileInfo, size int64) handler.FileInfo {
	info.Storage = maps.Clone(info.Storage)
	if info.Storage == nil {
		info.Storage = map[string]string{}
	}
	delete(info.Storage, pendingKey)
	if size >= 0 {
		info.Storage[pendingKey] = strconv.FormatInt(size, 10)
	}
	return info
}

// rollBack cuts the data file of info back to size and removes the marker.
func (u *upload) rollBack(info handler.FileInfo, size int64) error {
	if err := os.Truncate(info.Storage[filestore.StorageKeyPath], size); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskbackend: cutting back an unchecked write of %s: %w", info.ID, err)
	}
	return u.write(withPending(info, -1))
}

// write writes info as the upload's .info, as filestore writes it.
func (u *upload) write(info handler.FileInfo) error {
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("diskbackend: encoding the info of %s: %w", info.ID, err)
	}
	if err := os.WriteFile(info.Storage[filestore.StorageKeyInfoPath], data, 0o644); err != nil {
		return fmt.Errorf("diskbackend: writing the info of %s: %w", info.ID, err)
	}
	u.saved = &info
	return nil
}
