package quota

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/tuserror"
)

// lockWait bounds how long a creation waits for the owner's other
// creations; beyond it the client is asked to retry (ErrBusy).
const lockWait = 10 * time.Second

// ErrBusy answers a creation that waited too long for the same owner's
// other creations.
var ErrBusy = handler.Error{
	ErrorCode: "ERR_QUOTA_BUSY",
	Message:   "too many of your uploads are being created at once; retry in a few seconds",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_QUOTA_BUSY: too many of your uploads are being created at once; retry in a few seconds\n",
		Header: handler.HTTPHeader{
			"Content-Type": "text/plain; charset=utf-8",
			"Retry-After":  tuserror.RetryAfter,
		},
	},
}

// Gate makes an owner's quota check and the creation it admits one step.
// Check alone reads usage and then lets the caller create: a burst of
// creations would all read the same usage and all be admitted. Under a
// Gate the creations of one owner take turns, on every instance that shares
// the Locker (tusd's memory locker in one process, Redis across
// instances), so each check sees the uploads created before it.
type Gate struct {
	Locker  handler.Locker
	Counter Counter
	Limits  Limits
}

// Admit runs create if the owner may have one more upload of size bytes,
// holding the owner's quota lock from the check until create returns.
// Without limits it just runs create.
func (g *Gate) Admit(ctx context.Context, owner string, size int64, create func() error) error {
	if g == nil || !g.Limits.Enabled() {
		return create()
	}
	lock, err := g.Locker.NewLock(lockID(owner))
	if err != nil {
		return fmt.Errorf("quota lock of %s: %w", owner, err)
	}
	wctx, cancel := context.WithTimeout(ctx, lockWait)
	// The lock is held for a listing and a creation; a release request from
	// a waiting creation is answered by finishing, not by giving it up.
	err = lock.Lock(wctx, func() {})
	cancel()
	switch {
	case errors.Is(err, handler.ErrLockTimeout) && ctx.Err() == nil:
		return ErrBusy
	case err != nil:
		return fmt.Errorf("quota lock of %s: %w", owner, err)
	}
	defer func() { _ = lock.Unlock() }()
	if err := Check(ctx, g.Counter, g.Limits, owner, size); err != nil {
		return err
	}
	return create()
}

// lockID names an owner's quota lock in the upload locker's namespace.
// Upload IDs start with an owner folder or a random name, never with
// "quota/", so the two cannot meet.
func lockID(owner string) string { return "quota/" + owner }
