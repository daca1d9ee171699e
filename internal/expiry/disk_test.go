package expiry

import (
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/filestore"
	"github.com/tus/tusd/v2/pkg/handler"
)

// diskStore is tusd's filestore in a temp dir that also holds what a
// tusgate data dir holds besides uploads.
func diskStore(t *testing.T) store {
	dir := t.TempDir()
	fst := filestore.New(dir)
	inv := &Disk{Dir: dir}
	file := func(rel string) string { return filepath.Join(dir, filepath.FromSlash(rel)) }
	exists := func(rel string) bool { _, err := os.Lstat(file(rel)); return err == nil }
	put := func(t *testing.T, rel, content string) {
		if err := os.MkdirAll(filepath.Dir(file(rel)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(file(rel), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	var othersMade bool
	return withTusd(fst, store{
		inv:  inv,
		tomb: inv,
		orphan: func(t *testing.T) string {
			rel := uploadName(t)
			put(t, rel, "") // as filestore leaves it when writing .info fails
			return rel
		},
		age: func(t *testing.T, d time.Duration) {
			then := time.Now().Add(-d)
			err := filepath.WalkDir(dir, func(p string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Chtimes(p, then, then)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		traces: func(t *testing.T, id string) []string {
			var tr []string
			for _, rel := range []string{id, id + ".info"} {
				if exists(rel) {
					tr = append(tr, rel)
				}
			}
			return tr
		},
		orphanExists: func(t *testing.T, rel string) bool { return exists(rel) },
		finished: func(t *testing.T, id string) (bool, bool) {
			return exists(id), exists(id + ".info")
		},
		others: func(t *testing.T) []string {
			if !othersMade {
				othersMade = true
				put(t, "dev-issuer/key.pem", "-----BEGIN PRIVATE KEY-----")
				put(t, "s3-tmp/s3store-123", "a part waiting for S3")
				// Empty files outside upload folders are not orphans.
				put(t, "s3-tmp/s3store-456", "")
				put(t, "dev-issuer/empty", "")
				put(t, ".tusgate/empty", "")
				put(t, ownerFolder+"/.hidden/empty", "")
				put(t, ".tusgate/state", "x")
				put(t, ownerFolder+"/.hidden/x", "x")
				put(t, "notes.info", "not JSON")
				put(t, "notes", "a file beside a .info that is not an upload's")
				// A .info whose ID is not its name is not an upload's.
				put(t, ownerFolder+"/stray.info", `{"ID":"elsewhere/stray","Size":100}`)
				put(t, ownerFolder+"/stray", "")
				put(t, ownerFolder+"/x.lock", "")
				put(t, ownerFolder+"/.x.tmp", "")
			}
			var o []string
			err := filepath.WalkDir(dir, func(p string, e fs.DirEntry, err error) error {
				if err != nil || e.IsDir() {
					return err
				}
				rel, _ := filepath.Rel(dir, p)
				rel = filepath.ToSlash(rel)
				upload := strings.HasPrefix(rel, ownerFolder+"/") && len(rel) >= len(ownerFolder)+33 && !strings.Contains(rel, "/.")
				if !upload && !strings.HasPrefix(rel, ".tusgate/expired/") {
					o = append(o, rel)
				}
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			slices.Sort(o)
			return o
		},
		partTail: func(string) string { return "" },
	})
}

func TestDisk(t *testing.T) {
	scenario(t, diskStore(t))
}

func TestDiskMissingDir(t *testing.T) {
	d := &Disk{Dir: filepath.Join(t.TempDir(), "not-yet")}
	called := false
	err := d.Unfinished(t.Context(), func(Upload) error { called = true; return nil })
	if err != nil || called {
		t.Errorf("Unfinished on a missing dir: %v, called %v", err, called)
	}
	if n, err := d.Sweep(t.Context(), time.Now()); n != 0 || err != nil {
		t.Errorf("Sweep on a missing dir = %d, %v", n, err)
	}
}

func TestDiskTombstoneIDs(t *testing.T) {
	tombstoneIDs(t, diskStore(t).tomb, ownerFolder+"/0123456789abcdef", ownerFolder+"/0123456789abcdef")
}

// TestDiskSymlinkedDir: the data dir may be a symbolic link.
func TestDiskSymlinkedDir(t *testing.T) {
	target := t.TempDir()
	link := filepath.Join(t.TempDir(), "data")
	if err := os.Symlink(target, link); err != nil {
		t.Skip(err)
	}
	up, err := filestore.New(target).NewUpload(t.Context(), handler.FileInfo{ID: uploadName(t), Size: 10})
	if err != nil {
		t.Fatal(err)
	}
	info, _ := up.GetInfo(t.Context())
	var got []string
	if err := (&Disk{Dir: link}).Unfinished(t.Context(), func(u Upload) error {
		got = append(got, u.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got, []string{info.ID}) {
		t.Errorf("Unfinished found %v, want %s", got, info.ID)
	}
}
