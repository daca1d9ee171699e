// Package lastinfo carries, in a request's context, what the store last
// read of each upload during the request, from the store back to the HTTP
// layer. tusd answers a PATCH whose Upload-Offset does not match with 409
// but without the offset it compared against, which tus 1.0 requires in
// that answer; the offset it compared against is what the store read under
// the upload's lock, so the HTTP layer takes it from here rather than
// asking the store again.
//
// A record belongs to one request (New, from the HTTP layer); the store
// records (Record) and the HTTP layer reads (Get).
package lastinfo

import (
	"context"
	"sync"

	"github.com/tus/tusd/v2/pkg/handler"
)

type key struct{}

type record struct {
	mu    sync.Mutex
	infos map[string]handler.FileInfo
}

// New returns ctx with an empty record; every request gets its own.
func New(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, &record{infos: map[string]handler.FileInfo{}})
}

// Record keeps info as the last read of upload info.ID in the request in
// ctx. Without a record in ctx it keeps nothing.
func Record(ctx context.Context, info handler.FileInfo) {
	r, ok := ctx.Value(key{}).(*record)
	if !ok || info.ID == "" {
		return
	}
	r.mu.Lock()
	r.infos[info.ID] = info
	r.mu.Unlock()
}

// Get returns what the store last read of upload id in the request in ctx.
func Get(ctx context.Context, id string) (handler.FileInfo, bool) {
	r, ok := ctx.Value(key{}).(*record)
	if !ok {
		return handler.FileInfo{}, false
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	info, ok := r.infos[id]
	return info, ok
}

// Ensure returns ctx with a record: ctx itself if it has one, else New.
func Ensure(ctx context.Context) context.Context {
	if _, ok := ctx.Value(key{}).(*record); ok {
		return ctx
	}
	return New(ctx)
}
