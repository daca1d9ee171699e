// Package readiness tracks whether tusgate's dependencies answer, probing
// them in the background, and serves the result as /readyz: publicly only
// the state and which dependency fails, with the errors for operators.
package readiness

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/tusgate/tusgate/internal/tuserror"
)

// Probe checks one dependency; a nil error means it is usable.
type Probe func(ctx context.Context) error

// Checker holds the state of every registered dependency.
type Checker struct {
	log *slog.Logger

	mu           sync.Mutex
	names        []string
	probes       map[string]Probe
	errs         map[string]error
	live         map[string]func() error
	notes        []note
	shuttingDown bool
}

// note is a remark about a dependency that does not make it unready.
type note struct {
	name string
	text func() string
}

// New returns a Checker with no dependencies; it is ready until one is added.
func New(log *slog.Logger) *Checker {
	return &Checker{log: log, probes: map[string]Probe{}, errs: map[string]error{}, live: map[string]func() error{}}
}

// errNotChecked is the state of a dependency before its first probe.
var errNotChecked = fmt.Errorf("not checked yet")

// Add registers a dependency. initial is its state until the first
// background probe (nil: ready). Call before Run.
func (c *Checker) Add(name string, probe Probe, initial error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
	c.probes[name] = probe
	c.errs[name] = initial
}

// AddLive registers a dependency whose state is cheap to read (kept in
// memory by its owner); it is read on every Status call, not probed.
func (c *Checker) AddLive(name string, state func() error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.names = append(c.names, name)
	c.live[name] = state
}

// AddNote registers a remark about a dependency that leaves it ready, such
// as a feature it lacks (text returns "" while there is nothing to say).
// Detailed lists the remarks under its status line; the public answer
// never shows them.
func (c *Checker) AddNote(name string, text func() string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.notes = append(c.notes, note{name, text})
}

// Notes returns the current remarks, one "<dependency>: <text>" each.
func (c *Checker) Notes() []string {
	c.mu.Lock()
	notes := append([]note(nil), c.notes...)
	c.mu.Unlock()
	var out []string
	for _, n := range notes {
		if t := n.text(); t != "" {
			out = append(out, n.name+": "+t)
		}
	}
	return out
}

// Set records a dependency's state as observed elsewhere.
func (c *Checker) Set(name string, err error) {
	c.mu.Lock()
	prev, known := c.errs[name]
	c.errs[name] = err
	c.mu.Unlock()
	switch {
	case !known:
	case err != nil && (prev == nil || prev.Error() != err.Error()):
		c.log.Warn("dependency not ready", "dependency", name, "reason", err.Error())
	case err == nil && prev != nil:
		c.log.Info("dependency ready", "dependency", name)
	}
}

// Run probes every dependency until ctx ends: every interval while it is
// ready, and with backoff from one second up to interval while it is not.
func (c *Checker) Run(ctx context.Context, interval time.Duration) {
	c.mu.Lock()
	var names []string
	for _, n := range c.names {
		if c.probes[n] != nil {
			names = append(names, n)
		}
	}
	c.mu.Unlock()
	var wg sync.WaitGroup
	for _, name := range names {
		wg.Go(func() { c.loop(ctx, name, interval) })
	}
	wg.Wait()
}

func (c *Checker) loop(ctx context.Context, name string, interval time.Duration) {
	c.mu.Lock()
	probe, err := c.probes[name], c.errs[name]
	c.mu.Unlock()
	backoff := time.Second
	for {
		wait := interval
		if err != nil {
			wait = backoff
			backoff = min(backoff*2, interval)
		} else {
			backoff = time.Second
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		pctx, cancel := context.WithTimeout(ctx, min(interval, 10*time.Second))
		err = probe(pctx)
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.Set(name, err)
	}
}

// SetShuttingDown makes the checker report not ready from now on.
func (c *Checker) SetShuttingDown() {
	c.mu.Lock()
	c.shuttingDown = true
	c.mu.Unlock()
}

// Status reports whether everything is ready, and if not, why, in one line:
// "shutting down", or the first failing dependency's name and error. The
// error may name endpoints and addresses: keep it off public answers.
func (c *Checker) Status() (bool, string) {
	ok, name, err := c.state()
	switch {
	case ok:
		return true, "ok"
	case name == "":
		return false, "shutting down"
	}
	return false, name + ": " + strings.TrimPrefix(err.Error(), name+": ")
}

// PublicStatus is Status without the error: "ok", "shutting down" or
// "<dependency>: unavailable".
func (c *Checker) PublicStatus() (bool, string) {
	ok, name, _ := c.state()
	switch {
	case ok:
		return true, "ok"
	case name == "":
		return false, "shutting down"
	}
	return false, name + ": unavailable"
}

// state returns whether everything is ready, else the first failing
// dependency and its error (none while shutting down).
func (c *Checker) state() (ok bool, name string, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.shuttingDown {
		return false, "", nil
	}
	for _, name := range c.names {
		err := c.errs[name]
		if state := c.live[name]; state != nil {
			err = state()
		}
		if err != nil {
			return false, name, err
		}
	}
	return true, "", nil
}

// Err returns the named dependency's last known error.
func (c *Checker) Err(name string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if state := c.live[name]; state != nil {
		return state()
	}
	return c.errs[name]
}

// ServeHTTP answers 200 "ok" when ready and 503 otherwise, with only the
// state and the dependency concerned (PublicStatus), as the public /readyz.
// The errors themselves go to the log (see Set) and to Detailed.
func (c *Checker) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	serve(w, c.PublicStatus)
}

// Detailed answers like ServeHTTP, but with the failing dependency's error
// (Status) and, on further lines, the remarks (Notes), for the private
// metrics listener.
func (c *Checker) Detailed() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { serve(w, c.Status, c.Notes()...) })
}

func serve(w http.ResponseWriter, status func() (bool, string), notes ...string) {
	ok, reason := status()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if !ok {
		w.Header().Set("Retry-After", tuserror.RetryAfter)
		w.WriteHeader(http.StatusServiceUnavailable)
	}
	fmt.Fprintln(w, reason)
	for _, n := range notes {
		fmt.Fprintln(w, n)
	}
}

// NotChecked is the initial state for a dependency not probed yet.
func NotChecked() error { return errNotChecked }
