package lockscope

import (
	"context"
	"testing"
)

type otherKey struct{}

func TestScope(t *testing.T) {
	ctx := New(context.Background())
	if Holds(ctx, "a") {
		t.Fatal("an empty scope holds a")
	}
	releaseA := Add(ctx, "a")
	releaseA2 := Add(context.WithValue(ctx, otherKey{}, 1), "a") // a derived context shares the scope
	if !Holds(ctx, "a") || Holds(ctx, "b") {
		t.Fatal("after Add(a): wrong holdings")
	}
	releaseA()
	releaseA() // a second call changes nothing
	if !Holds(ctx, "a") {
		t.Fatal("a released too early")
	}
	releaseA2()
	if Holds(ctx, "a") {
		t.Fatal("a still held after both releases")
	}
	other := New(context.Background())
	Add(other, "a")
	if Holds(ctx, "a") {
		t.Fatal("another request's lock counts")
	}
	Add(context.Background(), "a")() // no scope: nothing happens
	if Holds(context.Background(), "a") {
		t.Fatal("held without a scope")
	}
}
