package quota

import (
	"context"
	"errors"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

type fixed struct {
	u   Usage
	err error
}

func (f fixed) Usage(context.Context, string) (Usage, error) { return f.u, f.err }

func TestCheck(t *testing.T) {
	ctx := context.Background()
	status := func(err error) int {
		var e handler.Error
		if errors.As(err, &e) {
			return e.HTTPResponse.StatusCode
		}
		return 0
	}
	if err := Check(ctx, fixed{err: errors.New("down")}, Limits{}, "o", 1); err != nil {
		t.Fatalf("no limits must not read usage: %v", err)
	}
	if err := Check(ctx, fixed{u: Usage{Uploads: 1, Bytes: 10}}, Limits{Uploads: 2, Bytes: 20}, "o", 10); err != nil {
		t.Fatalf("within limits: %v", err)
	}
	if s := status(Check(ctx, fixed{u: Usage{Uploads: 2}}, Limits{Uploads: 2}, "o", 0)); s != 403 {
		t.Fatalf("uploads over: %d", s)
	}
	if s := status(Check(ctx, fixed{u: Usage{Bytes: 15}}, Limits{Bytes: 20}, "o", 6)); s != 413 {
		t.Fatalf("bytes over: %d", s)
	}
	if err := Check(ctx, fixed{err: errors.New("s3 down")}, Limits{Uploads: 1}, "o", 0); err == nil || status(err) != 0 {
		t.Fatalf("usage error must pass through unmapped: %v", err)
	}
}
