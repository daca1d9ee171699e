package client

import (
	"context"
	"errors"
	"io"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/tusgate/tusgate/internal/client/progress"
)

// errStalled ends a request whose body stopped moving.
var errStalled = errors.New("the connection stalled (no bytes moved for too long)")

// streamPos is one upload's share of a file's progress: its offset,
// added to the file's tracker as it moves.
type streamPos struct {
	t        *progress.Tracker
	reported atomic.Int64
}

func newStreamPos(t *progress.Tracker) *streamPos { return &streamPos{t: t} }

// set moves the upload's offset to v (forward as bytes are sent, back to
// what the server confirms after a failure).
func (s *streamPos) set(v int64) {
	old := s.reported.Swap(v)
	s.t.Add(v - old)
}

// meteredBody is a PATCH body: it moves the progress, keeps to the rate
// limit and keeps the stall timer from firing while bytes move.
type meteredBody struct {
	r          io.Reader
	ctx        context.Context
	limiter    *rate.Limiter
	pos        *streamPos
	base, read int64
	n          int64 // body length: the timer stops when all is read
	stall      *time.Timer
	stallAfter time.Duration
}

func (m *meteredBody) Read(p []byte) (int, error) {
	if m.limiter != nil {
		if b := m.limiter.Burst(); b > 0 && len(p) > b {
			p = p[:b]
		}
		if err := m.limiter.WaitN(m.ctx, len(p)); err != nil {
			return 0, err
		}
	}
	k, err := m.r.Read(p)
	m.read += int64(k)
	m.pos.set(m.base + m.read)
	if err != nil || m.read >= m.n {
		m.stall.Stop() // sent: the transport's answer timeout takes over
	} else {
		m.stall.Reset(m.stallAfter)
	}
	return k, err
}
