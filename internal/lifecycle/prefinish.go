package lifecycle

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"unicode"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/safestore"
	"github.com/tusgate/tusgate/internal/tuserror"
	"github.com/tusgate/tusgate/internal/webhook"
)

// The pre-finish contract (docs/lifecycle.md): a 2xx answer approves; a 4xx
// whose body is the JSON object {"reject": true, "message": "..."}
// (Content-Type application/json) rejects, and the upload is deleted;
// anything else means the application cannot decide now. Statuses alone
// never reject: a mistyped URL (404), an authenticating proxy (401, 403) or
// a body limit (413) in front of the application would otherwise delete
// every upload that finishes.

// errApprovalUnavailable answers while the pre-finish URL cannot decide.
var errApprovalUnavailable = handler.Error{
	ErrorCode: "ERR_APPROVAL_UNAVAILABLE",
	Message:   "the application could not approve this upload yet; retry later",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_APPROVAL_UNAVAILABLE: the application could not approve this upload yet; retry later\n",
		Header:     handler.HTTPHeader{"Content-Type": "text/plain; charset=utf-8", "Retry-After": tuserror.RetryAfter},
	},
}

// maxRejectionMessage bounds the application's message relayed to clients.
const maxRejectionMessage = 500

// defaultRejectionMessage is relayed when a rejection has no message.
const defaultRejectionMessage = "the application rejected this upload"

// verdict is what an answer to the pre-finish call decides.
type verdict int

const (
	undecided verdict = iota // keep the upload complete and unassembled
	approved
	rejected
)

// approve calls the pre-finish URL and returns nil when the application
// approves, a *safestore.Rejection when it explicitly rejects, and
// errApprovalUnavailable otherwise: the upload then stays complete but
// unassembled and is asked about again on its next request.
func (l *Lifecycle) approve(ctx context.Context, url string, info handler.FileInfo) error {
	ev := l.event(webhook.TypePreFinish, webhook.NewEventID(), info)
	// The client's cancellation must not turn into a rejection.
	callCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.o.Settings.WebhookTimeout)
	defer cancel()
	reply, err := webhook.Call(callCtx, l.client, url, l.secret, ev, l.clock.Now(), userAgent)
	v, msg, reason := decide(reply)
	if err != nil {
		v, reason = undecided, "no answer: "+callError(err)
	}
	switch v {
	case approved:
		return nil
	case rejected:
		return &safestore.Rejection{Err: handler.NewError("ERR_UPLOAD_REJECTED", msg, reply.Status)}
	}
	// Never the URL: its query may carry a token.
	l.log.ErrorContext(ctx, "the pre-finish URL neither approved nor rejected the upload; it stays complete but unassembled, and the client is told to retry",
		"id", info.ID, "status", reply.Status, "reason", reason)
	return errApprovalUnavailable
}

// decide reads an answer to the pre-finish call: the verdict, the message
// for the client when rejected, and why it is undecided otherwise.
func decide(reply webhook.Reply) (v verdict, message, reason string) {
	st := reply.Status
	msg, isRejection, why := parseRejection(reply)
	switch {
	case st >= 200 && st < 300:
		if isRejection {
			return undecided, "", "a 2xx answer carries {\"reject\": true}; answer a 4xx to reject, a 2xx without it to approve"
		}
		return approved, "", ""
	case st == http.StatusRequestTimeout || st == http.StatusConflict || st == http.StatusLocked || st == http.StatusTooManyRequests:
		// Clients retry these: a deleted upload would then be uploaded
		// again from the start.
		if isRejection {
			return undecided, "", fmt.Sprintf("status %d tells clients to retry; reject with another 4xx, such as 403 or 422", st)
		}
		return undecided, "", fmt.Sprintf("status %d: the application asks to retry later", st)
	case st >= 400 && st < 500:
		if isRejection {
			return rejected, msg, ""
		}
		return undecided, "", "a 4xx without a rejection body: " + why
	case st >= 300 && st < 400:
		return undecided, "", "redirects are not followed"
	default:
		return undecided, "", "not a 2xx or 4xx answer"
	}
}

// parseRejection reports whether an answer's body is an explicit rejection
// and returns its message, cleaned for the client; why says what is
// missing when it is not one.
func parseRejection(reply webhook.Reply) (message string, ok bool, why string) {
	const want = `the body must be {"reject": true, "message": "..."} with Content-Type application/json`
	mt, _, err := mime.ParseMediaType(reply.ContentType)
	if err != nil || mt != "application/json" {
		return "", false, fmt.Sprintf("Content-Type is %q; %s", mt, want)
	}
	var body struct {
		Reject  *bool  `json:"reject"`
		Message string `json:"message"`
	}
	if err := json.Unmarshal(reply.Body, &body); err != nil {
		return "", false, fmt.Sprintf("the body is not valid JSON of that shape (%v; at most 4 KiB are read); %s", err, want)
	}
	if body.Reject == nil || !*body.Reject {
		return "", false, want
	}
	message = cleanMessage([]byte(body.Message))
	if message == "" {
		message = defaultRejectionMessage
	}
	return message, true, ""
}

// callError describes a failed call without its URL, whose query may carry
// a token.
func callError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		return ue.Op + ": " + ue.Err.Error()
	}
	return err.Error()
}

// cleanMessage makes an application's rejection text safe to relay: one
// line of printable characters, at most maxRejectionMessage bytes.
func cleanMessage(body []byte) string {
	s := strings.ToValidUTF8(string(body), "")
	s = strings.Map(func(r rune) rune {
		if r == '\n' || r == '\r' || r == '\t' {
			return ' '
		}
		if !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, s)
	s = strings.Join(strings.Fields(s), " ")
	if len(s) > maxRejectionMessage {
		s = strings.ToValidUTF8(s[:maxRejectionMessage], "")
	}
	return s
}
