package progress

import (
	"encoding/json"
	"io"
	"math"
	"sync"
	"time"
)

// Event is one JSON line: what happened to which file.
//
//	start     the upload begins or resumes (offset: bytes already stored)
//	progress  every interval while bytes move (rate: bytes/s in this run)
//	retry     a request failed; the upload goes on after wait seconds
//	notice    a message, e.g. a changed file starting anew
//	done      the file is stored at url (checksums: the stored object's,
//	          by algorithm, when the server names them)
//	error     the upload of this file failed
type Event struct {
	Time    time.Time `json:"time"`
	Event   string    `json:"event"`
	File    string    `json:"file"`
	URL     string    `json:"url,omitempty"`
	Offset  int64     `json:"offset"`
	Size    *int64    `json:"size,omitempty"` // absent while unknown (standard input)
	Rate    float64   `json:"rate"`           // bytes per second
	Wait    float64   `json:"wait,omitempty"` // seconds (retry)
	Message string    `json:"message,omitempty"`
	Error   string    `json:"error,omitempty"`
	// Checksums (done) are base64 digests by algorithm ("crc32", "sha256").
	Checksums map[string]string `json:"checksums,omitempty"`
}

// JSON writes events as JSON lines.
type JSON struct {
	mu     sync.Mutex
	w      io.Writer
	now    func() time.Time
	active map[*Tracker]int64 // offset last reported
	stop   chan struct{}
	done   chan struct{}
}

// NewJSON writes events to w, with a progress event per moving upload
// every interval (0: none).
func NewJSON(w io.Writer, interval time.Duration) *JSON {
	return newJSON(w, interval, time.Now)
}

func newJSON(w io.Writer, interval time.Duration, now func() time.Time) *JSON {
	j := &JSON{w: w, now: now, active: map[*Tracker]int64{}, stop: make(chan struct{}), done: make(chan struct{})}
	if interval <= 0 {
		close(j.done)
		return j
	}
	go func() {
		defer close(j.done)
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for {
			select {
			case <-j.stop:
				return
			case <-tick.C:
				j.sample()
			}
		}
	}()
	return j
}

// sample reports the uploads whose offset moved since last reported.
func (j *JSON) sample() {
	j.mu.Lock()
	defer j.mu.Unlock()
	for t, last := range j.active {
		if off := t.Offset(); off != last {
			j.active[t] = off
			j.emit(j.event("progress", t))
		}
	}
}

func (j *JSON) event(kind string, t *Tracker) Event {
	now := j.now()
	e := Event{Time: now.UTC(), Event: kind, File: t.File, URL: t.URL(), Offset: t.Offset(), Rate: math.Round(t.Rate(now))}
	if n := t.Size(); n >= 0 {
		e.Size = &n
	}
	return e
}

// emit writes one line. Called with j.mu held.
func (j *JSON) emit(e Event) {
	line, err := json.Marshal(e)
	if err != nil {
		return
	}
	_, _ = j.w.Write(append(line, '\n'))
}

// Start implements Sink.
func (j *JSON) Start(t *Tracker) {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.active[t] = t.Offset()
	j.emit(j.event("start", t))
}

// Notice implements Sink.
func (j *JSON) Notice(t *Tracker, msg string) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.event("notice", t)
	e.Message = msg
	j.emit(e)
}

// Retry implements Sink.
func (j *JSON) Retry(t *Tracker, err error, wait time.Duration) {
	j.mu.Lock()
	defer j.mu.Unlock()
	e := j.event("retry", t)
	e.Error, e.Wait = err.Error(), math.Round(wait.Seconds()*1000)/1000
	j.emit(e)
}

// Done implements Sink.
func (j *JSON) Done(t *Tracker) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.active, t)
	e := j.event("done", t)
	e.Checksums = t.Checksums()
	j.emit(e)
}

// Fail implements Sink.
func (j *JSON) Fail(t *Tracker, err error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	delete(j.active, t)
	e := j.event("error", t)
	e.Error = err.Error()
	j.emit(e)
}

// Close implements Sink.
func (j *JSON) Close() {
	select {
	case <-j.stop:
	default:
		close(j.stop)
	}
	<-j.done
}
