package expiry

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/objsha"
)

// Disk implements Inventory and Tombstones for tusd's filestore in Dir: the
// data of upload <id> in Dir/<id>, its FileInfo in Dir/<id>.info (IDs may
// contain "/", so files live in subdirectories). Tombstones are
// Dir/.tusgate/expired/<id>, holding the expiry time (also their mtime).
//
// Dir also holds things that are not uploads (dev-issuer/, s3-tmp/, ".*"
// folders): only a file X.info holding a FileInfo whose ID is X counts as
// an upload, and orphans are sought outside those folders only.
type Disk struct {
	Dir string
}

// skippedDirs are top-level folders of the data directory that hold no
// uploads (besides every folder whose name starts with ".").
var skippedDirs = map[string]bool{"dev-issuer": true, "s3-tmp": true}

// notData are suffixes of files beside uploads that are not their data.
var notData = []string{".info", ".lock", ".tmp"}

// path returns the file path of rel ("/"-separated, relative to Dir).
func (d *Disk) path(rel string) string { return filepath.Join(d.Dir, filepath.FromSlash(rel)) }

// walk calls fn for every regular file under Dir outside skipped folders,
// with its "/"-separated path relative to Dir. Files and folders vanishing
// meanwhile are skipped; other failures are collected in errs.
func (d *Disk) walk(ctx context.Context, errs *errList, fn func(rel string, e fs.DirEntry) error) error {
	// WalkDir does not follow symbolic links, not even Dir itself.
	root, err := filepath.EvalSymlinks(d.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil // no uploads yet
	}
	if err != nil {
		return err
	}
	return filepath.WalkDir(root, func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if p == root {
				return err
			}
			if !errors.Is(err, fs.ErrNotExist) {
				errs.add(err)
			}
			if e != nil && e.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		if e.IsDir() {
			if rel != "." && (strings.HasPrefix(e.Name(), ".") || !strings.Contains(rel, "/") && skippedDirs[rel]) {
				return fs.SkipDir
			}
			return nil
		}
		if !e.Type().IsRegular() || strings.HasPrefix(e.Name(), ".") {
			return nil
		}
		return fn(rel, e)
	})
}

// diskUpload is what an upload's files say.
type diskUpload struct {
	info       handler.FileInfo
	infoMod    time.Time
	size       int64     // of the data file; 0 if missing
	dataMod    time.Time // zero if missing
	unfinished bool
}

// read reads the upload whose .info is at infoRel, and false if that is not
// an upload's .info (or vanished).
func (d *Disk) read(infoRel string) (diskUpload, bool, error) {
	id, ok := strings.CutSuffix(infoRel, ".info")
	if !ok || !validRel(id) {
		return diskUpload{}, false, nil
	}
	f, err := os.Open(d.path(infoRel))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return diskUpload{}, false, nil
		}
		return diskUpload{}, false, err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return diskUpload{}, false, err
	}
	var u diskUpload
	if u.info, err = layout.DecodeInfo(f); err != nil || u.info.ID != id {
		return diskUpload{}, false, nil // not an upload's
	}
	u.infoMod = st.ModTime()
	dst, err := os.Stat(d.path(id))
	switch {
	case err == nil:
		u.size, u.dataMod = dst.Size(), dst.ModTime()
	case !errors.Is(err, fs.ErrNotExist):
		return diskUpload{}, false, err
	}
	u.info.Offset = u.size
	u.unfinished = u.info.SizeIsDeferred || u.size < u.info.Size || reprRefused(u.info)
	return u, true, nil
}

// reprRefused reports whether the upload's bytes are known not to have the
// SHA-256 its creation stated (Repr-Digest): it is complete but is never
// finished (internal/safestore), so it expires like an unfinished upload.
func reprRefused(info handler.FileInfo) bool {
	want, stated, err := objsha.Expected(info)
	if err != nil || !stated {
		return false
	}
	sum, ok := objsha.Sum(info)
	return ok && !objsha.Equal(sum, want)
}

// Unfinished implements Inventory: uploads with a deferred size or a data
// file shorter than their size (filestore does not keep Offset in .info).
func (d *Disk) Unfinished(ctx context.Context, fn func(Upload) error) error {
	var errs errList
	err := d.walk(ctx, &errs, func(rel string, _ fs.DirEntry) error {
		u, ok, err := d.read(rel)
		if err != nil {
			errs.add(err)
			return nil
		}
		if !ok || !u.unfinished {
			return nil
		}
		return fn(Upload{ID: u.info.ID, Info: u.info, LastActivity: latest(u.infoMod, u.dataMod)})
	})
	return errors.Join(err, errs.err())
}

// Lookup implements Inventory: the upload, if it is unfinished, read as
// Unfinished reads each.
func (d *Disk) Lookup(_ context.Context, id string) (Upload, bool, error) {
	if !validRel(id) {
		return Upload{}, false, nil
	}
	u, ok, err := d.read(id + ".info")
	if err != nil || !ok || !u.unfinished {
		return Upload{}, false, err
	}
	return Upload{ID: u.info.ID, Info: u.info, LastActivity: latest(u.infoMod, u.dataMod)}, true, nil
}

// Orphans implements Inventory: empty files without .info, last modified
// before before, other than .info, .lock and .tmp files. filestore creates
// the data file, then the .info, and writes data only once the .info
// exists, so a crash in between leaves an empty data file; a non-empty
// file without .info is a finished upload whose .info RemoveInfo removed.
func (d *Disk) Orphans(ctx context.Context, before time.Time, fn func(Orphan) error) error {
	var errs errList
	err := d.walk(ctx, &errs, func(rel string, e fs.DirEntry) error {
		if !validRel(rel) || hasAnySuffix(rel, notData) {
			return nil
		}
		fi, err := e.Info()
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs.add(err)
			}
			return nil
		}
		if fi.Size() != 0 || !fi.ModTime().Before(before) {
			return nil
		}
		switch _, err := os.Lstat(d.path(rel + ".info")); {
		case err == nil:
			return nil
		case !errors.Is(err, fs.ErrNotExist):
			errs.add(err)
			return nil
		}
		return fn(Orphan{Key: rel, Since: fi.ModTime()})
	})
	return errors.Join(err, errs.err())
}

func hasAnySuffix(s string, suffixes []string) bool {
	for _, x := range suffixes {
		if strings.HasSuffix(s, x) {
			return true
		}
	}
	return false
}

// FinishedInfos implements Inventory. Empty uploads keep their .info, as
// an empty data file without .info is an orphan.
func (d *Disk) FinishedInfos(ctx context.Context, before time.Time, fn func(id string) error) error {
	var errs errList
	err := d.walk(ctx, &errs, func(rel string, _ fs.DirEntry) error {
		u, ok, err := d.read(rel)
		if err != nil {
			errs.add(err)
			return nil
		}
		if !ok || u.unfinished || u.size == 0 || !u.dataMod.Before(before) { // the last write finished it
			return nil
		}
		return fn(u.info.ID)
	})
	return errors.Join(err, errs.err())
}

// errWritten is returned when an upload or orphan changed after it was
// listed, which means someone is writing it.
var errWritten = errors.New("written to since it was listed; left alone")

// Remove implements Inventory. It leaves the files alone if they were
// modified after u.LastActivity.
func (d *Disk) Remove(_ context.Context, u Upload) error {
	if !validRel(u.ID) {
		return fmt.Errorf("not a filestore upload ID: %q", u.ID)
	}
	data, info := d.path(u.ID), d.path(u.ID+".info")
	for _, p := range []string{data, info} {
		st, err := os.Stat(p)
		if err == nil && st.ModTime().After(u.LastActivity) {
			return fmt.Errorf("upload %s: %w", u.ID, errWritten)
		}
	}
	// Data first, as filestore's Terminate: an .info without data is an
	// upload the next run finds again.
	for _, p := range []string{data, info} {
		if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return err
		}
	}
	return nil
}

// RemoveOrphan implements Inventory. It leaves the file alone if it got a
// .info or was modified after it was listed.
func (d *Disk) RemoveOrphan(_ context.Context, o Orphan) error {
	if !validRel(o.Key) || hasAnySuffix(o.Key, notData) {
		return fmt.Errorf("not a filestore data file: %q", o.Key)
	}
	if _, err := os.Lstat(d.path(o.Key + ".info")); err == nil {
		return fmt.Errorf("orphan %s has a .info now; left alone", o.Key)
	}
	st, err := os.Lstat(d.path(o.Key))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	if st.Size() != 0 || st.ModTime().After(o.Since) {
		return fmt.Errorf("orphan %s: %w", o.Key, errWritten)
	}
	if err := os.Remove(d.path(o.Key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// RemoveInfo implements Inventory. It refuses if the upload is not
// finished.
func (d *Disk) RemoveInfo(_ context.Context, id string) error {
	if !validRel(id) {
		return fmt.Errorf("not a filestore upload ID: %q", id)
	}
	u, ok, err := d.read(id + ".info")
	if err != nil {
		return err
	}
	if !ok {
		return nil // gone already
	}
	if u.unfinished || u.size == 0 {
		return fmt.Errorf("upload %s is not finished or empty; its .info is kept", id)
	}
	if err := os.Remove(d.path(id + ".info")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// tombstoneDir is where tombstones live: Dir/.tusgate/expired.
func (d *Disk) tombstoneDir() string { return filepath.Join(d.Dir, layout.InternalFolder, "expired") }

// Put implements Tombstones: it writes the tombstone atomically, with its
// mtime set to expired.
func (d *Disk) Put(_ context.Context, id string, expired time.Time) (err error) {
	if !validRel(id) {
		return fmt.Errorf("no tombstone for invalid upload ID %q", id)
	}
	p := filepath.Join(d.tombstoneDir(), filepath.FromSlash(id))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	f, err := os.CreateTemp(filepath.Dir(p), "."+path.Base(id)+".*.tmp")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if _, err := f.WriteString(expired.UTC().Format(time.RFC3339Nano)); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Chtimes(f.Name(), expired, expired); err != nil {
		return err
	}
	return os.Rename(f.Name(), p)
}

// Get implements Tombstones. IDs that cannot be uploads have no tombstone.
func (d *Disk) Get(_ context.Context, id string) (time.Time, bool, error) {
	if !validRel(id) {
		return time.Time{}, false, nil
	}
	p := filepath.Join(d.tombstoneDir(), filepath.FromSlash(id))
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return time.Time{}, false, nil
		}
		if st, serr := os.Stat(p); serr == nil && st.IsDir() {
			return time.Time{}, false, nil // a prefix of other IDs
		}
		return time.Time{}, false, err
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("tombstone %s: %w", p, err)
	}
	return t, true, nil
}

// Sweep implements Tombstones, going by the files' mtimes (the expiry
// times). Leftover temporary files are swept too.
func (d *Disk) Sweep(ctx context.Context, before time.Time) (int, error) {
	n := 0
	var errs errList
	err := filepath.WalkDir(d.tombstoneDir(), func(p string, e fs.DirEntry, err error) error {
		if err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs.add(err)
			}
			return nil
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		fi, err := e.Info()
		if err != nil || !fi.ModTime().Before(before) {
			return nil
		}
		if err := os.Remove(p); err != nil {
			if !errors.Is(err, fs.ErrNotExist) {
				errs.add(err)
			}
			return nil
		}
		if !strings.HasSuffix(e.Name(), ".tmp") {
			n++
		}
		return nil
	})
	return n, errors.Join(err, errs.err())
}

var (
	_ Inventory  = (*Disk)(nil)
	_ Tombstones = (*Disk)(nil)
)
