// Package backend is the one shape of a storage backend: everything the
// rest of tusgate needs from the place uploads are kept. internal/s3backend
// (a bucket) and internal/diskbackend (a directory) implement it; the
// server assembles whichever is configured, and no other package asks which
// one it is.
//
// Each feature keeps its own small interface where it is used (tusd's
// store composer, safestore.AssemblyChecker, quota.Counter, expiry's
// Inventory and Tombstones, webhook.Outbox); a Backend hands out its
// implementation of each.
package backend

import (
	"context"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/webhook"
)

// Backend is a storage backend.
type Backend interface {
	// Name names the backend in logs and on /readyz ("s3", "data-dir").
	Name() string
	// UseIn installs the data store, with its extensions, in c.
	UseIn(c *handler.StoreComposer)
	// Check probes the backend for /readyz: nil while it serves.
	Check(ctx context.Context) error
	// Assembly tells what became of uploads whose bytes are all stored.
	Assembly() safestore.AssemblyChecker
	// Usage reads an owner's unfinished uploads, for quotas.
	Usage() quota.Counter
	// Expiry lists uploads for the janitor and keeps tombstones of expired
	// ones.
	Expiry() (expiry.Inventory, expiry.Tombstones)
	// Waiting keeps the final uploads that wait for unfinished partial
	// uploads (concatenation-unfinished), beside the uploads.
	Waiting() safestore.Waiting
	// Outbox stores webhook events durably, beside the uploads (with
	// Redis, the server uses a shared outbox instead).
	Outbox() webhook.Outbox
	// Storage describes where an upload's data lies, for events; with
	// object set (the upload is finished), it reads the finished object's
	// version too (S3: its ETag).
	Storage(ctx context.Context, info handler.FileInfo, object bool) (webhook.Storage, error)
	// Close releases what the backend holds.
	Close() error
}

// MisconfigError is a definite mistake in the backend's settings found
// while opening it: Msg names the setting to fix. tusgate exits with code
// 2 on it, where an unreachable dependency only keeps /readyz at 503.
type MisconfigError struct{ Msg string }

func (e *MisconfigError) Error() string { return e.Msg }
