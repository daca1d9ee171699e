// Package privatefile writes files only their owner may read, atomically:
// the client's tokens and resume records.
package privatefile

import (
	"fmt"
	"path/filepath"

	"github.com/google/renameio/v2"
)

// Write replaces the file at path with data: a temp file in the same
// folder, written, fsynced and renamed over the old one, mode 0600 whatever
// the old one's was (renameio.WriteFile would keep an old file's mode).
func Write(path string, data []byte) error {
	f, err := renameio.NewPendingFile(path, renameio.WithTempDir(filepath.Dir(path)), renameio.WithStaticPermissions(0o600))
	if err != nil {
		return err
	}
	defer f.Cleanup()
	if _, err := f.Write(data); err != nil {
		return err
	}
	if err := f.CloseAtomicallyReplace(); err != nil {
		return fmt.Errorf("replacing %s: %w", path, err)
	}
	return nil
}
