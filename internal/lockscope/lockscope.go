// Package lockscope records which upload locks the current request holds.
//
// tusd locks an upload for most requests (PATCH, HEAD, GET, DELETE), but
// not for all: creating a final upload (Upload-Concat: final) reads its
// partial uploads without their locks. The stores repair what they find
// (an upload complete but never assembled, parts stored past a gap), and a
// repair must only run under the upload's lock, or it races with the
// request that holds it. So a request carries a scope (New, from the HTTP
// layer), the locker records in it what the request locked (Add), and a
// store asks before it repairs (Holds).
//
// A scope belongs to one request; a lock held by another request of the
// same process does not count.
package lockscope

import (
	"context"
	"sync"
)

type key struct{}

type scope struct {
	mu  sync.Mutex
	ids map[string]int
}

// New returns ctx with an empty scope; every request gets its own.
func New(ctx context.Context) context.Context {
	return context.WithValue(ctx, key{}, &scope{ids: map[string]int{}})
}

// Add records that the request in ctx holds the lock of upload id, and
// returns the function that records its release. Without a scope in ctx it
// records nothing.
func Add(ctx context.Context, id string) (release func()) {
	s, ok := ctx.Value(key{}).(*scope)
	if !ok {
		return func() {}
	}
	s.mu.Lock()
	s.ids[id]++
	s.mu.Unlock()
	var once sync.Once
	return func() {
		once.Do(func() {
			s.mu.Lock()
			defer s.mu.Unlock()
			if s.ids[id]--; s.ids[id] <= 0 {
				delete(s.ids, id)
			}
		})
	}
}

// Holds reports whether the request in ctx holds the lock of upload id.
func Holds(ctx context.Context, id string) bool {
	s, ok := ctx.Value(key{}).(*scope)
	if !ok {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.ids[id] > 0
}
