package s3backend

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/tusgate/tusgate/internal/backend"
)

// TempDir is the directory where s3store stages parts on their way to S3.
// One tusgate process owns it at a time (an flock on a lock file), so files
// left there by a crashed process can be removed safely at start.
type TempDir struct {
	Path string
	lock *os.File
}

// tempPrefixes are the name prefixes of s3store's temporary files and
// s3stream's joined partials (MinIO concatenation, see s3stream.joinInTempDir).
var tempPrefixes = []string{"tusd-s3-tmp-", "tusd-s3-concat-tmp-", "tusgate-concat-"}

// OpenTempDir creates dir if needed, takes its lock and removes leftovers.
func OpenTempDir(dir string, log *slog.Logger) (*TempDir, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--s3-temp-dir %q: %v", dir, err)}
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--s3-temp-dir %s cannot be created: %v; choose a writable directory", abs, unwrapPath(err))}
	}
	f, err := os.OpenFile(filepath.Join(abs, ".tusgate.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--s3-temp-dir %s is not writable: %v; choose a writable directory", abs, unwrapPath(err))}
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("--s3-temp-dir %s is in use by another tusgate process; give each instance its own --s3-temp-dir (or --data-dir)", abs)}
	}

	entries, err := os.ReadDir(abs)
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("reading --s3-temp-dir %s: %w", abs, err)
	}
	removed := 0
	for _, e := range entries {
		for _, p := range tempPrefixes {
			if strings.HasPrefix(e.Name(), p) {
				if err := os.Remove(filepath.Join(abs, e.Name())); err == nil {
					removed++
				}
			}
		}
	}
	if removed > 0 {
		log.Info("removed temporary part files left by an earlier run", "dir", abs, "files", removed)
	}
	return &TempDir{Path: abs, lock: f}, nil
}

// Close releases the directory's lock.
func (t *TempDir) Close() error { return t.lock.Close() }

func unwrapPath(err error) error {
	if pe, ok := err.(*os.PathError); ok {
		return pe.Err
	}
	return err
}
