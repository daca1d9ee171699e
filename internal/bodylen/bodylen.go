// Package bodylen carries the declared length of a request body
// (Content-Length) from the HTTP layer to the stores: tusd hands a store
// only a reader, and a store that knows the length can refuse a body that
// would not fit before reading any of it.
//
// It is a package of its own so that the store wrapper and the S3 write
// path can both read the length without depending on each other.
package bodylen

import "context"

type key struct{}

// With records that the request body in ctx carries n bytes. A negative n
// records nothing: the length is unknown (a chunked body).
func With(ctx context.Context, n int64) context.Context {
	if n < 0 {
		return ctx
	}
	return context.WithValue(ctx, key{}, n)
}

// From returns the body length recorded by With; ok is false when none was.
func From(ctx context.Context) (n int64, ok bool) {
	n, ok = ctx.Value(key{}).(int64)
	return n, ok
}
