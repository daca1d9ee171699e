// Package progress shows how the uploads of the tusgate command-line
// client are doing: a bar per file on a terminal, or JSON lines for
// scripts. Uploads update a Tracker; a Sink samples the trackers and is
// told of the events (start, retry, notice, done, error).
package progress

import (
	"sync"
	"sync/atomic"
	"time"
)

// Tracker is the state of one file's upload. Its position moves with the
// bytes sent and goes back when the server confirms less than was sent.
type Tracker struct {
	File string // as given on the command line ("-" for standard input)

	size atomic.Int64 // -1 while unknown
	pos  atomic.Int64

	mu       sync.Mutex
	url      string
	sums     map[string]string
	started  time.Time
	startPos int64
}

// NewTracker returns the tracker of a file of size bytes (-1: unknown).
func NewTracker(file string, size int64) *Tracker {
	t := &Tracker{File: file}
	t.size.Store(size)
	return t
}

// Size is the file's size, -1 while unknown.
func (t *Tracker) Size() int64 { return t.size.Load() }

// SetSize records the size once known.
func (t *Tracker) SetSize(n int64) { t.size.Store(n) }

// Offset is how many bytes of the file are stored or on their way.
func (t *Tracker) Offset() int64 { return t.pos.Load() }

// Add moves the position by n bytes (negative: back).
func (t *Tracker) Add(n int64) { t.pos.Add(n) }

// URL is the upload's URL, "" until known.
func (t *Tracker) URL() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.url
}

// SetURL records the upload's URL.
func (t *Tracker) SetURL(u string) {
	t.mu.Lock()
	t.url = u
	t.mu.Unlock()
}

// Checksums are the stored object's checksums by algorithm, nil until
// the upload is done (and if the server names none).
func (t *Tracker) Checksums() map[string]string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.sums
}

// SetChecksums records the stored object's checksums.
func (t *Tracker) SetChecksums(sums map[string]string) {
	t.mu.Lock()
	t.sums = sums
	t.mu.Unlock()
}

// Begin marks the start of sending in this run, from the current position
// (bytes stored by earlier runs do not count for the rate).
func (t *Tracker) Begin(now time.Time) {
	t.mu.Lock()
	t.started, t.startPos = now, t.pos.Load()
	t.mu.Unlock()
}

// Rate is the average speed of this run in bytes per second.
func (t *Tracker) Rate(now time.Time) float64 {
	t.mu.Lock()
	started, startPos := t.started, t.startPos
	t.mu.Unlock()
	secs := now.Sub(started).Seconds()
	if started.IsZero() || secs <= 0 {
		return 0
	}
	return max(0, float64(t.pos.Load()-startPos)/secs)
}

// Sink receives what happens to the uploads. Methods may be called from
// several goroutines at once.
type Sink interface {
	// Start: the upload of t begins (or resumes, at t.Offset()).
	Start(t *Tracker)
	// Notice: something the user should know, e.g. a changed file.
	Notice(t *Tracker, msg string)
	// Retry: a request failed; the upload goes on after wait.
	Retry(t *Tracker, err error, wait time.Duration)
	// Done: the file is stored at t.URL().
	Done(t *Tracker)
	// Fail: the upload of t failed with err.
	Fail(t *Tracker, err error)
	// Close stops sampling and flushes the output.
	Close()
}
