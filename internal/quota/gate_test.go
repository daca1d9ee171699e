package quota

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tus/tusd/v2/pkg/memorylocker"
)

// counted is a Counter over uploads created through a Gate.
type counted struct{ n atomic.Int64 }

func (c *counted) Usage(context.Context, string) (Usage, error) {
	return Usage{Uploads: int(c.n.Load())}, nil
}

// A burst of creations by one owner admits exactly the limit: each check
// sees the creations admitted before it.
func TestGateAdmitsBurstUpToLimit(t *testing.T) {
	c := &counted{}
	g := &Gate{Locker: memorylocker.New(), Counter: c, Limits: Limits{Uploads: 3}}
	var wg sync.WaitGroup
	var refused atomic.Int64
	for range 32 {
		wg.Go(func() {
			err := g.Admit(t.Context(), "alice", 1, func() error {
				c.n.Add(1)
				return nil
			})
			var he handler.Error
			switch {
			case errors.As(err, &he) && he.ErrorCode == "ERR_QUOTA_UPLOADS":
				refused.Add(1)
			case err != nil:
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if c.n.Load() != 3 || refused.Load() != 29 {
		t.Fatalf("created %d, refused %d; want 3 and 29", c.n.Load(), refused.Load())
	}
}

// A failed creation is returned as is and holds no slot; without limits
// (or without a Gate) creation runs unchecked.
func TestGatePassesCreationErrors(t *testing.T) {
	c := &counted{}
	g := &Gate{Locker: memorylocker.New(), Counter: c, Limits: Limits{Uploads: 1}}
	boom := errors.New("boom")
	if err := g.Admit(t.Context(), "o", 1, func() error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("Admit: %v, want the creation's error", err)
	}
	if err := g.Admit(t.Context(), "o", 1, func() error { c.n.Add(1); return nil }); err != nil {
		t.Fatalf("Admit after a failed creation: %v", err)
	}
	var nilGate *Gate
	ran := false
	if err := nilGate.Admit(t.Context(), "o", 1, func() error { ran = true; return nil }); err != nil || !ran {
		t.Fatalf("nil Gate: %v, ran %v", err, ran)
	}
}
