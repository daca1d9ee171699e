package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Headers of every delivery and Call.
const (
	HeaderEventID   = "Tusgate-Event-Id"
	HeaderEventType = "Tusgate-Event-Type"
	// HeaderTimestamp holds the unix time of the attempt in seconds, in
	// decimal.
	HeaderTimestamp = "Tusgate-Timestamp"
	// HeaderSignature holds one or more comma-separated "v1=<hex>" values;
	// see Sign.
	HeaderSignature = "Tusgate-Signature"
)

// Errors of Verify, wrapped with details.
var (
	ErrBadTimestamp = errors.New("webhook: bad timestamp")
	ErrBadSignature = errors.New("webhook: bad signature")
)

// signatureScheme prefixes each signature in HeaderSignature.
const signatureScheme = "v1="

// Sign returns "v1=" + lower-case hex HMAC-SHA256(secret, timestamp + "." +
// body), timestamp in decimal unix seconds.
func Sign(secret []byte, timestamp int64, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(strconv.FormatInt(timestamp, 10)))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return signatureScheme + hex.EncodeToString(mac.Sum(nil))
}

// Verify checks a delivery the way a receiver should: the timestamp header
// must parse and lie within tolerance of now, in either direction (this
// rejects replays of old deliveries), and the signature header, which may
// hold several comma-separated "v1=..." values while a sender rotates its
// secret, must contain one matching body, compared in constant time. The
// error wraps ErrBadTimestamp or ErrBadSignature and says what failed.
func Verify(secret []byte, h http.Header, body []byte, now time.Time, tolerance time.Duration) error {
	raw := h.Get(HeaderTimestamp)
	if raw == "" {
		return fmt.Errorf("%w: %s header missing", ErrBadTimestamp, HeaderTimestamp)
	}
	ts, err := strconv.ParseInt(raw, 10, 64)
	if err != nil {
		return fmt.Errorf("%w: %s is not unix seconds", ErrBadTimestamp, HeaderTimestamp)
	}
	if skew := now.Sub(time.Unix(ts, 0)); skew > tolerance || skew < -tolerance {
		return fmt.Errorf("%w: %v away from now, tolerance %v", ErrBadTimestamp, skew.Truncate(time.Second), tolerance)
	}
	sigs := h.Values(HeaderSignature)
	if len(sigs) == 0 {
		return fmt.Errorf("%w: %s header missing", ErrBadSignature, HeaderSignature)
	}
	want := []byte(Sign(secret, ts, body))
	seen := false
	for _, line := range sigs {
		for sig := range strings.SplitSeq(line, ",") {
			sig = strings.TrimSpace(sig)
			if !strings.HasPrefix(sig, signatureScheme) {
				continue // a scheme we do not know
			}
			seen = true
			if hmac.Equal([]byte(sig), want) {
				return nil
			}
		}
	}
	if !seen {
		return fmt.Errorf("%w: no v1 signature in %s", ErrBadSignature, HeaderSignature)
	}
	return fmt.Errorf("%w: no v1 signature matches the body", ErrBadSignature)
}

// newRequest builds the signed POST of body (the JSON of ev) to target.
func newRequest(ctx context.Context, target string, secret []byte, ev *Event, body []byte, now time.Time, userAgent string) (*http.Request, error) {
	if err := checkURL(target); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, target, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	ts := now.Unix()
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", userAgent)
	req.Header.Set(HeaderEventID, ev.ID)
	req.Header.Set(HeaderEventType, ev.Type)
	req.Header.Set(HeaderTimestamp, strconv.FormatInt(ts, 10))
	req.Header.Set(HeaderSignature, Sign(secret, ts, body))
	return req, nil
}

// checkURL accepts absolute http and https URLs without user information:
// net/http would turn user:password into an Authorization header, which
// deliveries never carry.
func checkURL(target string) error {
	u, err := url.Parse(target)
	if err != nil {
		return fmt.Errorf("webhook: bad URL: %w", err)
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("webhook: URL %q is not an absolute http or https URL", u.Redacted())
	}
	if u.User != nil {
		return fmt.Errorf("webhook: URL %q must not contain credentials", u.Redacted())
	}
	return nil
}

// maxCallBody is how much of a response body Call returns.
const maxCallBody = 4 << 10

// Reply is a receiver's answer to Call.
type Reply struct {
	Status int
	// ContentType is the answer's Content-Type header.
	ContentType string
	// Body holds up to 4 KiB of the answer's body.
	Body []byte
}

// Call posts ev synchronously to url, signed like deliveries with the
// timestamp now, and returns the answer; it is how the pre-finish approval
// hook asks for a decision. err is set only for failures to build, send or
// read the request, never for a status. A nil client means one like the
// Dispatcher's default: 10 s timeout, redirects not followed.
func Call(ctx context.Context, client *http.Client, url string, secret []byte, ev Event, now time.Time, userAgent string) (Reply, error) {
	payload, err := json.Marshal(ev)
	if err != nil {
		return Reply{}, err
	}
	req, err := newRequest(ctx, url, secret, &ev, payload, now, userAgent)
	if err != nil {
		return Reply{}, err
	}
	if client == nil {
		client = newClient(defaultTimeout)
	}
	resp, err := client.Do(req)
	if err != nil {
		return Reply{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxCallBody))
	return Reply{Status: resp.StatusCode, ContentType: resp.Header.Get("Content-Type"), Body: body}, err
}
