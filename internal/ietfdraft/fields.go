package ietfdraft

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
)

// The draft's fields are Structured Fields (RFC 9651): Upload-Offset and
// Upload-Length are Integers, Upload-Complete a Boolean, Upload-Limit a
// Dictionary; Upload-Draft-Interop-Version is an Integer. A field whose
// value is not of its type "MUST cause the entire header field to be
// ignored": the parsers below report such a field as absent.

// item returns the bare item of a Structured Field Item, with its
// parameters (";key=value…") dropped, and false if the field is absent,
// sent more than once, or not an Item.
func item(h http.Header, name string) (string, bool) {
	vs := h.Values(name)
	if len(vs) != 1 {
		return "", false
	}
	v := strings.Trim(vs[0], " \t")
	bare, params, hasParams := strings.Cut(v, ";")
	if hasParams && strings.TrimSpace(params) == "" {
		return "", false
	}
	if bare == "" || strings.ContainsAny(bare, " \t,") {
		return "", false
	}
	return bare, true
}

// sfBool parses a Structured Field Boolean: ?1 or ?0.
func sfBool(h http.Header, name string) (value, ok bool) {
	v, ok := item(h, name)
	switch {
	case !ok:
		return false, false
	case v == "?1":
		return true, true
	case v == "?0":
		return false, true
	}
	return false, false
}

// sfUint parses a Structured Field Integer that must not be negative: at
// most 15 digits.
func sfUint(h http.Header, name string) (int64, bool) {
	v, ok := item(h, name)
	if !ok || len(v) > 15 {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	return n, err == nil
}

// boolField is a Boolean's value as sent.
func boolField(b bool) string {
	if b {
		return "?1"
	}
	return "?0"
}

// The problem types of the draft (RFC 9457 problem details).
const (
	problemMismatchingOffset  = "https://iana.org/assignments/http-problem-types#mismatching-upload-offset"
	problemInconsistentLength = "https://iana.org/assignments/http-problem-types#inconsistent-upload-length"
	// problemCompletedUpload is from drafts -03 to -08 (interop version 7);
	// the draft dropped it from -09 on, where refusing is still allowed.
	problemCompletedUpload = "https://iana.org/assignments/http-problem-types#completed-upload"
)

// problem writes an RFC 9457 problem details answer that does not come
// from processing a complete upload: it says Upload-Complete: ?0.
func problem(w http.ResponseWriter, status int, typ, title string, members map[string]any) {
	writeProblem(w, status, typ, title, members, false)
}

// writeProblem writes an RFC 9457 problem details answer; complete says
// whether it comes from processing the complete upload (Upload-Complete).
func writeProblem(w http.ResponseWriter, status int, typ, title string, members map[string]any, complete bool) {
	body := map[string]any{"type": typ, "title": title}
	for k, v := range members {
		body[k] = v
	}
	b, _ := json.Marshal(body)
	b = append(b, '\n')
	h := w.Header()
	h.Set("Upload-Complete", boolField(complete))
	h.Set("Content-Type", "application/problem+json")
	h.Set("Content-Length", strconv.Itoa(len(b)))
	w.WriteHeader(status)
	_, _ = w.Write(b)
}
