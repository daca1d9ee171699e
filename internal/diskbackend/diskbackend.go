// Package diskbackend keeps uploads in a local directory: tusd's filestore,
// with tusgate's assembly markers, quota counter, janitor inventory,
// tombstones and webhook outbox in the same directory (see
// internal/backend).
package diskbackend

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/webhook"
)

// Backend is a directory of uploads.
type Backend struct {
	// ObjectSHA256 keeps the SHA-256 of every upload (--object-sha256); set
	// it before UseIn.
	ObjectSHA256 bool

	dir      string
	assembly safestore.DiskAssembly
	expiry   *expiry.Disk
}

var _ backend.Backend = (*Backend)(nil)

// Open prepares dir (--data-dir) for uploads: it creates it, checks that it
// is writable and reads the assembly markers. A directory that cannot be
// used is a *backend.MisconfigError.
func Open(dir string) (*Backend, error) {
	abs, err := filepath.Abs(dir)
	if err == nil {
		err = os.MkdirAll(abs, 0o750)
	}
	if err == nil {
		err = probeWritable(abs)
	}
	if err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--data-dir %s is not usable: %v; choose a writable directory", dir, err)}
	}
	b := &Backend{dir: abs, assembly: safestore.DiskAssembly{Dir: abs}, expiry: &expiry.Disk{Dir: abs}}
	if err := b.assembly.Init(); err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--data-dir %s: %v", dir, err)}
	}
	return b, nil
}

// Dir is the directory's absolute path.
func (b *Backend) Dir() string { return b.dir }

// Name implements backend.Backend.
func (b *Backend) Name() string { return "data-dir" }

// UseIn implements backend.Backend: tusd's filestore, with checked writes
// and the uploads' SHA-256 (see store), whose concatenation starts over from an empty file (see
// concatFromStart).
func (b *Backend) UseIn(c *handler.StoreComposer) {
	store{FileStore: filestore.New(b.dir), objectSHA256: b.ObjectSHA256}.UseIn(c)
	c.UseConcater(concatFromStart{inner: c.Concater, dir: b.dir})
}

// concatFromStart makes filestore's concatenation safe to try again:
// filestore appends the partial uploads to the final upload's file, so an
// attempt that failed half-way (a full disk) would leave bytes that a
// second attempt (safestore assembles a waiting final upload again on its
// next request) appends after. It empties the file first.
type concatFromStart struct {
	inner handler.ConcaterDataStore
	dir   string
}

func (c concatFromStart) AsConcatableUpload(u handler.Upload) handler.ConcatableUpload {
	return concatFromStartUpload{u: u, inner: c.inner.AsConcatableUpload(u), dir: c.dir}
}

type concatFromStartUpload struct {
	u     handler.Upload
	inner handler.ConcatableUpload
	dir   string
}

func (c concatFromStartUpload) ConcatUploads(ctx context.Context, partials []handler.Upload) error {
	info, err := c.u.GetInfo(ctx)
	if err != nil {
		return err
	}
	if !safestore.ValidID(info.ID) {
		return fmt.Errorf("diskbackend: concatenating into an invalid upload ID %q", info.ID)
	}
	if err := os.Truncate(filepath.Join(c.dir, filepath.FromSlash(info.ID)), 0); err != nil {
		return err
	}
	if err := c.inner.ConcatUploads(ctx, partials); err != nil {
		return err
	}
	if up, ok := c.u.(*upload); ok {
		// The partials' states cannot be joined: the final upload's
		// SHA-256 is read from its file.
		return up.recordSHA(ctx)
	}
	return nil
}

// Check implements backend.Backend: the directory is writable.
func (b *Backend) Check(context.Context) error { return probeWritable(b.dir) }

// Assembly implements backend.Backend: markers of finished uploads, since
// filestore keeps no such state of its own.
func (b *Backend) Assembly() safestore.AssemblyChecker { return b.assembly }

// Usage implements backend.Backend.
func (b *Backend) Usage() quota.Counter { return quota.Disk{Dir: b.dir} }

// Expiry implements backend.Backend.
func (b *Backend) Expiry() (expiry.Inventory, expiry.Tombstones) { return b.expiry, b.expiry }

// Outbox implements backend.Backend.
func (b *Backend) Outbox() webhook.Outbox {
	return &webhook.DirOutbox{Dir: filepath.Join(b.dir, layout.InternalFolder, "webhooks")}
}

// Storage implements backend.Backend: the upload's path below the
// directory, and its SHA-256 if recorded.
func (b *Backend) Storage(_ context.Context, info handler.FileInfo, _ bool) (webhook.Storage, error) {
	st := webhook.Storage{Type: "disk", Key: info.ID}
	if sum, ok := objsha.Sum(info); ok {
		st.SHA256 = objsha.Encode(sum)
	}
	return st, nil
}

// Close implements backend.Backend; a directory holds nothing to release.
func (b *Backend) Close() error { return nil }

// probeWritable creates and removes a file in dir.
func probeWritable(dir string) error {
	f, err := os.CreateTemp(dir, ".tusgate-probe-")
	if err != nil {
		var pe *os.PathError
		if errors.As(err, &pe) {
			return pe.Err
		}
		return err
	}
	name := f.Name()
	f.Close()
	return os.Remove(name)
}
