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
// extension): a write whose body states a digest appends provisionally, and
// the data file is cut back to where it was when the digest does not match.
// A marker in the .info (pendingKey) keeps a kill between the append and
// the verdict from making unchecked bytes count: while it is there, the
// offset stops at the size it records, and the next request holding the
// upload's lock cuts the file back.
type store struct {
	filestore.FileStore
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
	return &upload{inner: up}, nil
}

func (s store) GetUpload(ctx context.Context, id string) (handler.Upload, error) {
	up, err := s.FileStore.GetUpload(ctx, id)
	if err != nil {
		return nil, err
	}
	return &upload{inner: up}, nil
}

func (s store) AsTerminatableUpload(u handler.Upload) handler.TerminatableUpload {
	return s.FileStore.AsTerminatableUpload(u.(*upload).inner)
}

func (s store) AsLengthDeclarableUpload(u handler.Upload) handler.LengthDeclarableUpload {
	return s.FileStore.AsLengthDeclarableUpload(u.(*upload).inner)
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
}

// GetInfo reports the upload with its offset at the size before an
// unfinished checked write; a request that holds the upload's lock cuts the
// data back to it first.
func (u *upload) GetInfo(ctx context.Context) (handler.FileInfo, error) {
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		return info, err
	}
	size, ok, err := pendingSize(info)
	if err != nil || !ok {
		return info, err
	}
	info.Offset = min(info.Offset, size)
	if lockscope.Holds(ctx, info.ID) {
		if err := rollBack(info, size); err != nil {
			return info, err
		}
	}
	return info, nil
}

func (u *upload) WriteChunk(ctx context.Context, offset int64, src io.Reader) (int64, error) {
	e := checksum.From(ctx)
	if e == nil {
		return u.inner.WriteChunk(ctx, offset, src)
	}
	info, err := u.inner.GetInfo(ctx)
	if err != nil {
		return 0, err
	}
	if err := writeInfo(info, offset); err != nil {
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
		if err := writeInfo(info, -1); err != nil {
			// The bytes stay provisional: the request fails, nothing counts.
			return 0, err
		}
		return n, nil
	}
	if rerr := rollBack(info, offset); rerr != nil {
		err = errors.Join(err, rerr)
	}
	return 0, err
}

func (u *upload) GetReader(ctx context.Context) (io.ReadCloser, error) {
	return u.inner.GetReader(ctx)
}

func (u *upload) FinishUpload(ctx context.Context) error { return u.inner.FinishUpload(ctx) }

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

// rollBack cuts the data file of info back to size and removes the marker.
func rollBack(info handler.FileInfo, size int64) error {
	if err := os.Truncate(info.Storage[filestore.StorageKeyPath], size); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("diskbackend: cutting back an unchecked write of %s: %w", info.ID, err)
	}
	return writeInfo(info, -1)
}

// writeInfo writes info's .info with the marker set to size (or without
// it, for size < 0), as filestore writes it.
func writeInfo(info handler.FileInfo, size int64) error {
	info.Storage = maps.Clone(info.Storage)
	delete(info.Storage, pendingKey)
	if size >= 0 {
		info.Storage[pendingKey] = strconv.FormatInt(size, 10)
	}
	data, err := json.Marshal(info)
	if err != nil {
		return fmt.Errorf("diskbackend: encoding the info of %s: %w", info.ID, err)
	}
	if err := os.WriteFile(info.Storage[filestore.StorageKeyInfoPath], data, 0o644); err != nil {
		return fmt.Errorf("diskbackend: writing the info of %s: %w", info.ID, err)
	}
	return nil
}
