package quota

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/tusgate/tusgate/internal/layout"
)

// Disk counts an owner's unfinished uploads in tusd's filestore layout:
// <dir>/<owner>/<id>.info next to the data file <dir>/<owner>/<id>.
type Disk struct{ Dir string }

// Usage implements Counter.
func (d Disk) Usage(ctx context.Context, ownerFolder string) (Usage, error) {
	var u Usage
	entries, err := os.ReadDir(filepath.Join(d.Dir, ownerFolder))
	if errors.Is(err, fs.ErrNotExist) {
		return u, nil
	}
	if err != nil {
		return u, err
	}
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".info")
		if !ok || e.IsDir() {
			continue
		}
		f, err := os.Open(filepath.Join(d.Dir, ownerFolder, e.Name()))
		if err != nil {
			continue // terminated meanwhile
		}
		info, err := layout.DecodeInfo(f)
		f.Close()
		if err != nil {
			continue
		}
		st, err := os.Stat(filepath.Join(d.Dir, ownerFolder, name))
		if err != nil {
			continue
		}
		if info.SizeIsDeferred || st.Size() < info.Size {
			u.Uploads++
			if !info.SizeIsDeferred && !info.IsFinal {
				u.Bytes += info.Size
			}
		}
	}
	return u, ctx.Err()
}
