package progress

import (
	"fmt"
	"io"
	"path/filepath"
	"sync"
	"time"

	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
)

// Bars draws a progress bar per file on a terminal (github.com/vbauerster/mpb),
// with bytes, rate and time left. Messages print above the bars.
type Bars struct {
	p *mpb.Progress

	mu     sync.Mutex
	bars   map[*Tracker]*bar
	closed bool
	stop   chan struct{}
	done   chan struct{}
}

type bar struct {
	b    *mpb.Bar
	last time.Time
}

// sampleEvery is how often the bars follow their trackers.
const sampleEvery = 200 * time.Millisecond

// NewBars draws on w, a terminal.
func NewBars(w io.Writer) *Bars {
	s := &Bars{
		p:    mpb.New(mpb.WithOutput(w), mpb.WithWidth(40), mpb.WithRefreshRate(sampleEvery), mpb.WithAutoRefresh()),
		bars: map[*Tracker]*bar{},
		stop: make(chan struct{}),
		done: make(chan struct{}),
	}
	go s.follow()
	return s
}

func (s *Bars) follow() {
	defer close(s.done)
	tick := time.NewTicker(sampleEvery)
	defer tick.Stop()
	for {
		select {
		case <-s.stop:
			return
		case now := <-tick.C:
			s.mu.Lock()
			for t, b := range s.bars {
				s.update(t, b, now)
			}
			s.mu.Unlock()
		}
	}
}

// update moves a bar to its tracker's offset. Called with s.mu held.
func (s *Bars) update(t *Tracker, b *bar, now time.Time) {
	off := t.Offset()
	if n := t.Size(); n > 0 {
		b.b.SetTotal(n, false)
	} else if n < 0 {
		b.b.SetTotal(off+1, false) // unknown: grows ahead of the offset
	}
	if off < b.b.Current() {
		b.b.SetCurrent(off) // bytes the server did not keep: no speed sample
	} else {
		b.b.EwmaSetCurrent(off, now.Sub(b.last))
	}
	b.last = now
}

func label(file string) string {
	name := filepath.Base(file)
	if file == "-" {
		name = "stdin"
	}
	if r := []rune(name); len(r) > 24 {
		name = string(r[:11]) + "…" + string(r[len(r)-12:])
	}
	return name
}

// Start implements Sink.
func (s *Bars) Start(t *Tracker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return
	}
	if b, ok := s.bars[t]; ok { // started again (a changed file): same bar
		b.b.SetCurrent(t.Offset())
		return
	}
	total := max(t.Size(), 0)
	b := s.p.AddBar(total,
		mpb.PrependDecorators(
			decor.Name(label(t.File), decor.WC{C: decor.DindentRight | decor.DextraSpace}),
			decor.CountersKibiByte("% .1f / % .1f", decor.WCSyncWidth),
		),
		mpb.AppendDecorators(
			decor.OnAbort(decor.OnComplete(decor.EwmaSpeed(decor.SizeB1024(0), "% .1f", 30, decor.WCSyncSpace), "done"), "failed"),
			decor.OnAbort(decor.OnComplete(decor.EwmaETA(decor.ET_STYLE_GO, 30, decor.WCSyncSpace), ""), ""),
		),
	)
	b.SetCurrent(t.Offset())
	s.bars[t] = &bar{b: b, last: time.Now()}
}

// Notice implements Sink.
func (s *Bars) Notice(t *Tracker, msg string) {
	s.println(fmt.Sprintf("%s: %s", t.File, msg))
}

// Retry implements Sink.
func (s *Bars) Retry(t *Tracker, err error, wait time.Duration) {
	s.println(fmt.Sprintf("%s: %v; retrying in %s", t.File, err, wait.Round(100*time.Millisecond)))
}

// Done implements Sink.
func (s *Bars) Done(t *Tracker) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if b, ok := s.bars[t]; ok {
		b.b.SetTotal(t.Offset(), true) // the final offset, not the last sample
		delete(s.bars, t)
	}
}

// Fail implements Sink.
func (s *Bars) Fail(t *Tracker, err error) {
	s.mu.Lock()
	if b, ok := s.bars[t]; ok {
		b.b.Abort(false)
		delete(s.bars, t)
	}
	s.mu.Unlock()
	s.println(fmt.Sprintf("%s: %v", t.File, err))
}

func (s *Bars) println(line string) {
	_, _ = s.p.Write([]byte(line + "\n"))
}

// Close implements Sink: bars still running (an interrupted run) stop
// where they are.
func (s *Bars) Close() {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return
	}
	s.closed = true
	close(s.stop)
	for t, b := range s.bars {
		b.b.Abort(false)
		delete(s.bars, t)
	}
	s.mu.Unlock()
	<-s.done
	s.p.Wait()
}
