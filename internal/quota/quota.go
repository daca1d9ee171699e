// Package quota limits what one owner may have in flight: the number of
// unfinished uploads and their declared bytes. Usage is read from storage
// at creation time (S3's list of in-progress multipart uploads under the
// owner's folder, or the owner's folder on disk), not kept in memory, so the
// limits hold across instances and restarts.
package quota

import (
	"context"
	"fmt"
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"
)

// Usage is what an owner has in flight.
type Usage struct {
	Uploads int   // unfinished uploads
	Bytes   int64 // their declared sizes (deferred lengths count as 0; a final upload waiting for partial uploads holds none of its own)
}

// Counter reads an owner's usage from storage.
type Counter interface {
	Usage(ctx context.Context, ownerFolder string) (Usage, error)
}

// Limits are per owner; zero means no limit.
type Limits struct {
	Uploads int
	Bytes   int64
}

// Enabled reports whether any limit is set.
func (l Limits) Enabled() bool { return l.Uploads > 0 || l.Bytes > 0 }

// Check refuses a new upload of size bytes for the owner when it would
// exceed a limit: 403 for the number of uploads, 413 for bytes. A failure
// to read usage is returned as is (the store wrapper's caller maps it).
func Check(ctx context.Context, c Counter, l Limits, ownerFolder string, size int64) error {
	if !l.Enabled() {
		return nil
	}
	u, err := c.Usage(ctx, ownerFolder)
	if err != nil {
		return fmt.Errorf("reading quota usage: %w", err)
	}
	if l.Uploads > 0 && u.Uploads+1 > l.Uploads {
		return handler.NewError("ERR_QUOTA_UPLOADS",
			fmt.Sprintf("you have %d unfinished uploads and may have at most %d at once; finish or cancel one first", u.Uploads, l.Uploads),
			http.StatusForbidden)
	}
	if l.Bytes > 0 && u.Bytes+size > l.Bytes {
		return handler.NewError("ERR_QUOTA_BYTES",
			fmt.Sprintf("your unfinished uploads hold %d bytes; %d more would exceed your limit of %d bytes; finish or cancel uploads first", u.Bytes, size, l.Bytes),
			http.StatusRequestEntityTooLarge)
	}
	return nil
}
