package safestore

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/layout"
)

// DiskAssembly records finished uploads of tusd's filestore, which has no
// notion of "finished" beyond "all bytes written": without a record, an
// upload whose approval (pre-finish hook) failed would look finished to the
// next HEAD. Markers are empty files under <Dir>/.tusgate/finished/<id>.
type DiskAssembly struct{ Dir string }

func (d DiskAssembly) marker(id string) string {
	return filepath.Join(d.Dir, layout.InternalFolder, "finished", filepath.FromSlash(id))
}

// Assembly reports Assembled once MarkAssembled ran for the upload, and
// NotAssembled before.
func (d DiskAssembly) Assembly(_ context.Context, info handler.FileInfo) (Assembly, error) {
	if !ValidID(info.ID) {
		return 0, errors.New("safestore: invalid upload ID")
	}
	_, err := os.Stat(d.marker(info.ID))
	switch {
	case err == nil:
		return Assembled, nil
	case errors.Is(err, fs.ErrNotExist):
		return NotAssembled, nil
	default:
		return 0, err
	}
}

// MarkAssembled records that the upload is finished.
func (d DiskAssembly) MarkAssembled(_ context.Context, info handler.FileInfo) error {
	if !ValidID(info.ID) {
		return errors.New("safestore: invalid upload ID")
	}
	p := d.marker(info.ID)
	if err := os.MkdirAll(filepath.Dir(p), 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// Forget removes the record of a deleted upload.
func (d DiskAssembly) Forget(_ context.Context, info handler.FileInfo) error {
	if !ValidID(info.ID) {
		return nil
	}
	err := os.Remove(d.marker(info.ID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	return err
}

// Init marks every complete upload as assembled the first time it runs on
// a data dir (when the marker folder does not exist yet): those uploads were
// finished by a tusgate that kept no markers, and must not be finished (and
// sent for approval) again.
func (d DiskAssembly) Init() error {
	root := filepath.Join(d.Dir, layout.InternalFolder, "finished")
	if _, err := os.Stat(root); err == nil {
		return nil
	}
	err := filepath.WalkDir(d.Dir, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if e.IsDir() && p != d.Dir && strings.HasPrefix(e.Name(), ".") {
			return filepath.SkipDir
		}
		rel, ok := strings.CutSuffix(p, ".info")
		if e.IsDir() || !ok {
			return nil
		}
		f, err := os.Open(p)
		if err != nil {
			return err
		}
		info, err := layout.DecodeInfo(f)
		f.Close()
		if err != nil || !ValidID(info.ID) || filepath.Join(d.Dir, filepath.FromSlash(info.ID)) != rel {
			return nil // not an upload
		}
		st, err := os.Stat(rel)
		if err != nil || info.SizeIsDeferred || st.Size() != info.Size {
			return nil // unfinished
		}
		return d.MarkAssembled(context.Background(), info)
	})
	if err != nil {
		return fmt.Errorf("marking the data dir's finished uploads: %w", err)
	}
	return os.MkdirAll(root, 0o750)
}
