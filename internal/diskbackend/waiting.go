package diskbackend

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/safestore"
)

// Waiting implements backend.Backend: the records of final uploads that
// wait for partial uploads are empty files under the internal folder
// (layout.WaitingDir).
func (b *Backend) Waiting() safestore.Waiting { return waiting{b.dir} }

type waiting struct{ dir string }

func (w waiting) path(partialID string) string {
	return filepath.Join(w.dir, filepath.FromSlash(layout.WaitingDir(partialID)))
}

// Add implements safestore.Waiting.
func (w waiting) Add(_ context.Context, partialID, finalID string) error {
	dir := w.path(partialID)
	if err := os.MkdirAll(dir, 0o750); err != nil {
		return err
	}
	f, err := os.OpenFile(filepath.Join(dir, layout.WaitingName(finalID)), os.O_CREATE|os.O_WRONLY, 0o640)
	if err != nil {
		return err
	}
	return f.Close()
}

// Finals implements safestore.Waiting.
func (w waiting) Finals(_ context.Context, partialID string) ([]string, error) {
	entries, err := os.ReadDir(w.path(partialID))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var finals []string
	for _, e := range entries {
		if id, ok := layout.WaitingFinal(e.Name()); ok && !e.IsDir() {
			finals = append(finals, id)
		}
	}
	return finals, nil
}

// Remove implements safestore.Waiting; the partial upload's folder goes
// with its last record.
func (w waiting) Remove(_ context.Context, partialID, finalID string) error {
	dir := w.path(partialID)
	err := os.Remove(filepath.Join(dir, layout.WaitingName(finalID)))
	if errors.Is(err, fs.ErrNotExist) {
		err = nil
	}
	_ = os.Remove(dir) // fails while other records remain
	return err
}
