package ietfdraft

import (
	"encoding/base64"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/objsha"
)

// The draft lets clients protect their bytes with RFC 9530's integrity
// fields ("Integrity Digests"):
//
//   - Content-Digest on a creation or append states the digest of that
//     request's content. It is checked like tus's Upload-Checksum (the
//     store keeps the content provisional until its digest is known,
//     internal/checksum): on a mismatch none of it counts, and the answer
//     is 400 with the problem type problemContentDigest and the offset to
//     go on from. sha-256 and sha-512 are checked.
//   - Repr-Digest on a creation states the digest of the whole upload. Its
//     sha-256 is kept with the upload (objsha.ReprKey), which then keeps a
//     running SHA-256, and compared when the upload completes
//     (internal/safestore): a mismatch answers 400 with
//     problemReprDigest and Upload-Complete: ?1, and the upload is not
//     finished. sha-512 alone is refused (400): it would take a second
//     running hash, for an algorithm no other part of tusgate reports.
//   - HEAD of a finished upload answers Repr-Digest: sha-256=:…: when its
//     SHA-256 is known, and so does the request that completes an upload
//     when it asks for it (Want-Repr-Digest with sha-256 above 0).
//
// A digest field that does not parse as RFC 9530 says (a Structured Field
// Dictionary of Byte Sequences), or that names only algorithms tusgate does
// not check, is answered 400 before anything is stored (RFC 9651 lets a
// recipient treat a message whose field fails parsing as malformed): a
// client that asked for a check is never told "stored" without one.

// Problem types of the digest answers: tusgate's, documented in
// docs/protocol.md (the draft defines none).
const (
	problemContentDigest = "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#content-digest-mismatch"
	problemReprDigest    = "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#repr-digest-mismatch"
	problemDigestField   = "https://github.com/tusgate/tusgate/blob/main/docs/protocol.md#digest-fields"
)

// errDigestSyntax: a digest field is not a Dictionary of Byte Sequences.
var errDigestSyntax = errors.New("not a Structured Field Dictionary of Byte Sequences (RFC 9530)")

// digestField parses the integrity field name of h: algorithm keys and
// their digests. ok is false when h has none.
func digestField(h http.Header, name string) (digests map[string][]byte, ok bool, err error) {
	vs := h.Values(name)
	if len(vs) == 0 {
		return nil, false, nil
	}
	p := sfParser{s: strings.Join(vs, ",")}
	digests = map[string][]byte{}
	p.ows()
	for {
		key, ok := p.key()
		if !ok || !p.eat('=') {
			return nil, true, errDigestSyntax
		}
		b, ok := p.byteSequence()
		if !ok || !p.params() {
			return nil, true, errDigestSyntax
		}
		digests[key] = b // a repeated key: the last counts (RFC 9651)
		p.ows()
		if p.done() {
			return digests, true, nil
		}
		if !p.eat(',') {
			return nil, true, errDigestSyntax
		}
		p.ows()
		if p.done() {
			return nil, true, errDigestSyntax // a trailing comma
		}
	}
}

// wantsSHA256 reports whether h's Want-Repr-Digest (RFC 9530: a Dictionary
// of algorithms with preferences from 0, "not acceptable", to 10) asks for
// sha-256. A field that does not parse asks for nothing: it is advisory.
func wantsSHA256(h http.Header) bool {
	vs := h.Values("Want-Repr-Digest")
	if len(vs) == 0 {
		return false
	}
	p := sfParser{s: strings.Join(vs, ",")}
	want := false
	p.ows()
	for !p.done() {
		key, ok := p.key()
		if !ok || !p.eat('=') {
			return false
		}
		start := p.i
		for c := p.peek(); c >= '0' && c <= '9' && !p.done(); c = p.peek() {
			p.i++
		}
		pref, err := strconv.Atoi(p.s[start:p.i])
		if err != nil || !p.params() {
			return false
		}
		if key == "sha-256" {
			want = pref > 0 // a repeated key: the last counts
		}
		p.ows()
		if p.done() {
			return want
		}
		if !p.eat(',') {
			return false
		}
		p.ows()
		if p.done() {
			return false // a trailing comma
		}
	}
	return want
}

// sfParser reads the parts of a Structured Field tusgate needs.
type sfParser struct {
	s string
	i int
}

func (p *sfParser) done() bool { return p.i >= len(p.s) }

func (p *sfParser) peek() byte {
	if p.done() {
		return 0
	}
	return p.s[p.i]
}

func (p *sfParser) eat(c byte) bool {
	if p.peek() == c && !p.done() {
		p.i++
		return true
	}
	return false
}

// ows skips optional white space (space and tab).
func (p *sfParser) ows() {
	for p.peek() == ' ' || p.peek() == '\t' {
		p.i++
	}
}

// key reads ( lcalpha / "*" ) *( lcalpha / DIGIT / "_" / "-" / "." / "*" ).
func (p *sfParser) key() (string, bool) {
	start := p.i
	if c := p.peek(); !(c >= 'a' && c <= 'z' || c == '*') {
		return "", false
	}
	for {
		c := p.peek()
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || strings.IndexByte("_-.*", c) >= 0) || p.done() {
			return p.s[start:p.i], true
		}
		p.i++
	}
}

// byteSequence reads ":" base64 ":"; missing "=" padding is accepted.
func (p *sfParser) byteSequence() ([]byte, bool) {
	if !p.eat(':') {
		return nil, false
	}
	end := strings.IndexByte(p.s[p.i:], ':')
	if end < 0 {
		return nil, false
	}
	enc := p.s[p.i : p.i+end]
	p.i += end + 1
	b, err := base64.RawStdEncoding.DecodeString(strings.TrimRight(enc, "="))
	return b, err == nil
}

// params reads the parameters of a member, which tusgate ignores:
// *( ";" *SP key [ "=" bare-item ] ).
func (p *sfParser) params() bool {
	for p.eat(';') {
		for p.eat(' ') {
		}
		if _, ok := p.key(); !ok {
			return false
		}
		if p.eat('=') && !p.bareItem() {
			return false
		}
	}
	return true
}

// bareItem skips a parameter's value: a String, Byte Sequence, Boolean,
// or a token, number, date or display string (their characters).
func (p *sfParser) bareItem() bool {
	switch c := p.peek(); {
	case c == '"':
		p.i++
		for !p.done() {
			switch p.s[p.i] {
			case '\\':
				p.i += 2
			case '"':
				p.i++
				return true
			default:
				p.i++
			}
		}
		return false
	case c == ':':
		_, ok := p.byteSequence()
		return ok
	case c == '?':
		p.i++
		return p.eat('0') || p.eat('1')
	}
	start := p.i
	for !p.done() && !strings.ContainsRune(" \t,;=()\"", rune(p.s[p.i])) {
		p.i++
	}
	return p.i > start
}

// Digest answers: the field cannot be checked.
var (
	errDigestMalformed        = digestProblem{"a digest field is malformed: " + errDigestSyntax.Error()}
	errContentDigestAlgorithm = digestProblem{"Content-Digest names no algorithm this server checks; send sha-256 or sha-512"}
	errReprDigestAlgorithm    = digestProblem{"Repr-Digest names no algorithm this server checks; send sha-256"}
	errDigestLength           = digestProblem{"a digest has the wrong length for its algorithm"}
	errTwoDigests             = digestProblem{"send Content-Digest or Upload-Checksum, not both"}
)

// digestProblem is a digest field that cannot be checked (400).
type digestProblem struct{ detail string }

func (d digestProblem) Error() string { return d.detail }

// contentDigest is the Expectation for the store of r's Content-Digest
// (sha-256 if given, else sha-512), or nil without one.
func contentDigest(r *http.Request) (*checksum.Expectation, error) {
	d, ok, err := digestField(r.Header, "Content-Digest")
	switch {
	case !ok:
		return nil, nil
	case err != nil:
		return nil, errDigestMalformed
	case checksum.From(r.Context()) != nil:
		return nil, errTwoDigests
	}
	for _, a := range []struct{ key, alg string }{{"sha-256", "sha256"}, {"sha-512", "sha512"}} {
		if v, ok := d[a.key]; ok {
			e, err := checksum.Expect(a.alg, v)
			if err != nil {
				return nil, errDigestLength
			}
			return e, nil
		}
	}
	return nil, errContentDigestAlgorithm
}

// reprDigest is the SHA-256 r's Repr-Digest states, or nil without one.
func reprDigest(r *http.Request) ([]byte, error) {
	d, ok, err := digestField(r.Header, "Repr-Digest")
	switch {
	case !ok:
		return nil, nil
	case err != nil:
		return nil, errDigestMalformed
	}
	v, ok := d["sha-256"]
	switch {
	case !ok:
		return nil, errReprDigestAlgorithm
	case len(v) != objsha.Size:
		return nil, errDigestLength
	}
	return v, nil
}

// reprDigestValue is the Repr-Digest field of a SHA-256.
func reprDigestValue(sum []byte) string {
	return "sha-256=:" + base64.StdEncoding.EncodeToString(sum) + ":"
}

// digestFieldProblem answers a digest field that cannot be checked.
func digestFieldProblem(w http.ResponseWriter, err error) {
	problem(w, http.StatusBadRequest, problemDigestField, "the digest cannot be checked", map[string]any{"detail": err.Error()})
}

// contentDigestProblem answers content that does not match its
// Content-Digest, or ended before it could be checked: none of it was
// stored, and the upload goes on from offset.
func contentDigestProblem(w http.ResponseWriter, offset int64, err error) {
	detail := "the content does not match its Content-Digest; none of it was stored: send it again from Upload-Offset"
	if errors.Is(err, checksum.ErrUnverified) {
		detail = "the content ended before its Content-Digest could be checked; none of it was stored: send it again from Upload-Offset"
	}
	w.Header().Set("Upload-Offset", strconv.FormatInt(offset, 10))
	problem(w, http.StatusBadRequest, problemContentDigest, "Content-Digest mismatch", map[string]any{"detail": detail})
}

// reprDigestProblem answers an upload whose bytes do not have the SHA-256
// its creation stated (or, rarely, whose SHA-256 could not be computed: it
// was then deleted). It comes from processing the complete upload.
func reprDigestProblem(w http.ResponseWriter, err error) {
	status, detail := http.StatusBadRequest, "the upload's SHA-256 does not match the Repr-Digest stated when it was created; it was not finished: delete it and upload the file again"
	if errors.Is(err, objsha.ErrReprUnverified) {
		status, detail = http.StatusInternalServerError, "the upload's SHA-256 could not be compared with its Repr-Digest, so it was deleted: upload the file again"
	}
	writeProblem(w, status, problemReprDigest, "Repr-Digest mismatch", map[string]any{"detail": detail}, true)
}
