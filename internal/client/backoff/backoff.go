// Package backoff decides what a tus client does after a failed request:
// which answers are worth retrying, how long to wait (exponential back-off
// with jitter, or the server's Retry-After), and when to give up.
package backoff

import (
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Action is what to do after an answer that is not a success.
type Action int

const (
	// Fail: retrying cannot help; report the error for this upload.
	Fail Action = iota
	// Retry: a transient failure; wait, re-read the offset and go on.
	Retry
	// Resync: the client's offset is stale (409); re-read it and go on.
	Resync
	// Reauth: the token was refused (401); refresh it once and retry.
	Reauth
)

func (a Action) String() string {
	switch a {
	case Retry:
		return "retry"
	case Resync:
		return "resync"
	case Reauth:
		return "reauth"
	}
	return "fail"
}

// StatusChecksumMismatch is tus 1.0's answer to a chunk whose
// Upload-Checksum does not match its bytes.
const StatusChecksumMismatch = 460

// Classify returns the action for an HTTP status. hasRetryAfter tells
// whether the answer carried Retry-After: tusgate answers storage errors
// that retrying cannot clear with 500 and no Retry-After, so that clients
// stop, and transient ones with Retry-After.
func Classify(status int, hasRetryAfter bool) Action {
	switch status {
	case http.StatusUnauthorized:
		return Reauth
	case http.StatusConflict:
		return Resync
	case http.StatusRequestTimeout, http.StatusLocked, http.StatusTooManyRequests,
		http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout,
		StatusChecksumMismatch:
		return Retry
	case http.StatusInternalServerError:
		if hasRetryAfter {
			return Retry
		}
	}
	return Fail
}

// ParseRetryAfter reads a Retry-After value (RFC 9110 §10.2.3): a number
// of seconds or an HTTP date. ok is false for a missing or malformed
// value. A date in the past gives 0.
func ParseRetryAfter(v string, now time.Time) (d time.Duration, ok bool) {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0, false
	}
	if secs, err := strconv.ParseInt(v, 10, 64); err == nil {
		if secs < 0 {
			return 0, false
		}
		if secs > int64(maxRetryAfter/time.Second) {
			return maxRetryAfter, true
		}
		return time.Duration(secs) * time.Second, true
	}
	t, err := http.ParseTime(v)
	if err != nil {
		return 0, false
	}
	return max(0, min(t.Sub(now), maxRetryAfter)), true
}

// maxRetryAfter bounds what ParseRetryAfter returns, so that a silly value
// cannot park a client for days.
const maxRetryAfter = time.Hour

// Policy is exponential back-off with jitter.
type Policy struct {
	// Base is the first delay (default 1s); each further attempt doubles it.
	Base time.Duration
	// Max caps a delay (default 60s).
	Max time.Duration
	// Attempts is how many failures in a row, without progress in between,
	// end the upload (default 10).
	Attempts int
	// Rand returns a number in [0, 1); nil uses math/rand/v2.
	Rand func() float64
}

// Defaults of Policy.
const (
	DefaultBase     = time.Second
	DefaultMax      = 60 * time.Second
	DefaultAttempts = 10
)

func (p Policy) withDefaults() Policy {
	if p.Base <= 0 {
		p.Base = DefaultBase
	}
	if p.Max <= 0 {
		p.Max = DefaultMax
	}
	if p.Attempts <= 0 {
		p.Attempts = DefaultAttempts
	}
	if p.Rand == nil {
		p.Rand = rand.Float64
	}
	return p
}

// GiveUp reports whether failure number attempt (1 for the first failure
// since the last progress) ends the upload.
func (p Policy) GiveUp(attempt int) bool {
	return attempt > p.withDefaults().Attempts
}

// Delay is how long to wait after failure number attempt (1-based). A
// server's Retry-After (retryAfter ≥ 0) is honoured as it is, plus up to a
// tenth of jitter so that many clients told the same do not return in
// step; otherwise the delay is Base·2^(attempt-1), capped at Max, of which
// the upper half is random ("equal jitter"). Pass retryAfter < 0 for none.
func (p Policy) Delay(attempt int, retryAfter time.Duration) time.Duration {
	p = p.withDefaults()
	if retryAfter >= 0 {
		return retryAfter + time.Duration(p.Rand()*float64(retryAfter)/10)
	}
	d := p.Max
	if attempt < 1 {
		attempt = 1
	}
	if attempt <= 32 {
		if e := p.Base << (attempt - 1); e > 0 && e < p.Max {
			d = e
		}
	}
	return d/2 + time.Duration(p.Rand()*float64(d/2))
}
