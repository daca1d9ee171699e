// Package metadata strictly parses and validates tus Upload-Metadata and
// prepares it for storage as S3 user metadata.
//
// tusd's own handler.ParseMetadataHeader silently drops malformed pairs, and
// its S3 store copies values into S3 user metadata and Content-Type without
// checking them. This package rejects bad input with an *Error whose message
// can be shown to the client (HTTP 400).
package metadata

import (
	"encoding/base64"
	"fmt"
	"mime"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/tus/tusd/v2/pkg/handler"
)

const (
	// maxKeyLen is the longest key accepted, in bytes.
	maxKeyLen = 128
	// maxFilenameLen is the longest file name kept, in bytes.
	maxFilenameLen = 255
	// maxS3Size is S3's limit on user metadata: the sum of the lengths of
	// all keys and values.
	maxS3Size = 2048
	// maxQuoted is how many bytes of client input are echoed in messages.
	maxQuoted = 100
)

// Error is a client mistake in Upload-Metadata; its message is safe to show
// to the client.
type Error struct{ Msg string }

// Error returns the message.
func (e *Error) Error() string { return e.Msg }

func errorf(format string, args ...any) error {
	return &Error{Msg: fmt.Sprintf(format, args...)}
}

// Parse strictly parses a tus 1.0 Upload-Metadata header value and returns
// the cleaned metadata. A maxSize > 0 limits the length of header in bytes.
// All failures are of type *Error.
func Parse(header string, maxSize int) (handler.MetaData, error) {
	if maxSize > 0 && len(header) > maxSize {
		return nil, errorf("Upload-Metadata is %d bytes; the limit is %d bytes", len(header), maxSize)
	}
	meta := handler.MetaData{}
	if strings.TrimSpace(header) == "" {
		return meta, nil
	}
	keys := make([]string, 0, strings.Count(header, ",")+1)
	for i, pair := range strings.Split(header, ",") {
		pair = strings.Trim(pair, " \t")
		if pair == "" {
			return nil, errorf(`Upload-Metadata: entry %d is empty; remove the extra ","`, i+1)
		}
		key, encoded, hasValue := strings.Cut(pair, " ")
		if err := checkKey(key); err != nil {
			return nil, err
		}
		if strings.Contains(encoded, " ") {
			return nil, errorf(`Upload-Metadata: the entry for key %s has more than one space; the format is "key base64value"`, quote(key))
		}
		if _, dup := meta[key]; dup {
			return nil, errorf("Upload-Metadata: key %s appears more than once; send each key only once", quote(key))
		}
		value := ""
		if hasValue {
			dec, ok := decodeBase64(encoded)
			if !ok {
				return nil, errorf("Upload-Metadata: the value of key %s is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)", quote(key))
			}
			value = dec
		}
		meta[key] = value
		keys = append(keys, key)
	}
	return clean(meta, keys)
}

// Clean validates and normalises already-decoded metadata (used for metadata
// tusd derived itself, e.g. from the IETF draft's Content-Type /
// Content-Disposition). It applies the same rules as Parse after decoding; a
// maxSize > 0 limits the sum of len(key)+len(value) over all entries. meta is
// not modified. All failures are of type *Error.
func Clean(meta handler.MetaData, maxSize int) (handler.MetaData, error) {
	size := 0
	keys := make([]string, 0, len(meta))
	for k, v := range meta {
		size += len(k) + len(v)
		keys = append(keys, k)
	}
	if maxSize > 0 && size > maxSize {
		return nil, errorf("Upload-Metadata is %d bytes (keys plus values); the limit is %d bytes", size, maxSize)
	}
	sort.Strings(keys)
	out := make(handler.MetaData, len(meta))
	for _, k := range keys {
		if err := checkKey(k); err != nil {
			return nil, err
		}
		out[k] = meta[k]
	}
	return clean(out, keys)
}

// clean checks the values of meta (in the order of keys, for stable error
// messages) and normalises filetype and filename in place. Keys must already
// have been checked.
func clean(meta handler.MetaData, keys []string) (handler.MetaData, error) {
	for _, k := range keys {
		if k == "filename" {
			continue // sanitised below rather than refused: browsers send what the OS allows
		}
		if err := checkValue(k, meta[k]); err != nil {
			return nil, err
		}
	}
	if ft, ok := meta["filetype"]; ok {
		if ft == "" {
			delete(meta, "filetype")
		} else {
			canon, ok := canonicalMediaType(ft)
			if !ok {
				return nil, errorf(`Upload-Metadata: filetype %q is not a valid media type (for example "video/mp4")`, cut(ft, maxQuoted))
			}
			meta["filetype"] = canon
		}
	}
	if fn, ok := meta["filename"]; ok {
		if s := SanitizeFilename(fn); s == "" {
			delete(meta, "filename")
		} else {
			meta["filename"] = s
		}
	}
	return meta, nil
}

func canonicalMediaType(s string) (string, bool) {
	mt, params, err := mime.ParseMediaType(s)
	if err != nil {
		return "", false
	}
	if !strings.Contains(mt, "/") {
		// FormatMediaType accepts a bare "video"; RFC 9110 requires type/subtype.
		return "", false
	}
	canon := mime.FormatMediaType(mt, params)
	return canon, canon != ""
}

func checkKey(key string) error {
	if key == "" {
		return errorf(`Upload-Metadata: an entry has an empty key; the format is "key base64value"`)
	}
	if len(key) > maxKeyLen {
		return errorf("Upload-Metadata: key %s is %d bytes; the limit is %d bytes", quote(key), len(key), maxKeyLen)
	}
	for i := 0; i < len(key); i++ {
		if !isTokenChar(key[i]) {
			r, _ := utf8.DecodeRuneInString(key[i:])
			return errorf("Upload-Metadata: key %s contains %q, which is not allowed; keys may only contain letters, digits and !#$%%&'*+-.^_`|~", quote(key), r)
		}
	}
	return nil
}

func checkValue(key, value string) error {
	if !utf8.ValidString(value) {
		return errorf("Upload-Metadata: the value of key %s is not valid UTF-8 text", quote(key))
	}
	for _, r := range value {
		if unicode.IsControl(r) {
			return errorf("Upload-Metadata: the value of key %s contains the control character %U; remove line breaks, tabs and other control characters", quote(key), r)
		}
	}
	return nil
}

// decodeBase64 decodes standard base64 (RFC 4648 §4), padded or unpadded.
// Unlike encoding/base64 it does not skip CR and LF.
func decodeBase64(s string) (string, bool) {
	body := strings.TrimRight(s, "=")
	if body == "" {
		return "", false
	}
	for i := 0; i < len(body); i++ {
		c := body[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return "", false
		}
	}
	enc := base64.StdEncoding
	if len(body) == len(s) && len(s)%4 != 0 {
		enc = base64.RawStdEncoding
	}
	b, err := enc.DecodeString(s)
	if err != nil {
		return "", false
	}
	return string(b), true
}

// isTokenChar reports whether c is an RFC 9110 tchar.
func isTokenChar(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isTokenChar(s[i]) {
			return false
		}
	}
	return true
}

// quote returns s quoted with %q, cut to a readable length.
func quote(s string) string {
	if c := cut(s, maxQuoted); len(c) < len(s) {
		return fmt.Sprintf("%q…", c)
	}
	return fmt.Sprintf("%q", s)
}

// cut returns the longest prefix of s that is at most n bytes and does not
// split a UTF-8 sequence.
func cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	i := n
	for i > 0 && !utf8.RuneStart(s[i]) {
		i--
	}
	return s[:i]
}

// SanitizeFilename returns the base name of a client-supplied file name with
// no path, no control characters, valid UTF-8, at most 255 bytes (cut on a
// rune boundary). It returns "" if nothing is left.
func SanitizeFilename(name string) string {
	if i := strings.LastIndexAny(name, `/\`); i >= 0 {
		name = name[i+1:]
	}
	var b strings.Builder
	b.Grow(len(name))
	for i := 0; i < len(name); {
		r, size := utf8.DecodeRuneInString(name[i:])
		i += size
		if r == utf8.RuneError && size <= 1 || unicode.IsControl(r) {
			continue
		}
		b.WriteRune(r)
	}
	name = strings.TrimSpace(b.String())
	name = strings.TrimSpace(cut(name, maxFilenameLen))
	if name == "." || name == ".." {
		return ""
	}
	return name
}

// ForS3 returns the subset of meta that an S3 server can store as user
// metadata (x-amz-meta-*). Keys are lower-cased; keys that are not RFC 9110
// tokens are left out, and when two keys differ only in case the first in
// sorted order wins. Values with only printable ASCII (0x20–0x7E) are kept as
// they are; others are replaced by RFC 2047 encoded words ("=?UTF-8?B?...?=",
// at most 75 characters each, separated by a space; invalid UTF-8 becomes
// U+FFFD). The total size (sum of len(key)+len(value)) is at most 2048 bytes:
// entries are considered in sorted key order and an entry that would push the
// total over the limit is left out (it stays in tusd's .info object).
func ForS3(meta map[string]string) map[string]string {
	keys := make([]string, 0, len(meta))
	for k := range meta {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make(map[string]string, len(meta))
	total := 0
	for _, k := range keys {
		if !isToken(k) {
			continue
		}
		lk := strings.ToLower(k)
		if _, dup := out[lk]; dup {
			continue
		}
		v := meta[k]
		if !isPrintableASCII(v) {
			v = encodeWords(v)
		}
		if total+len(lk)+len(v) > maxS3Size {
			continue
		}
		total += len(lk) + len(v)
		out[lk] = v
	}
	return out
}

func isPrintableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// encodeWords encodes s as RFC 2047 "B" encoded words of at most 75
// characters each, splitting only on rune boundaries.
func encodeWords(s string) string {
	const (
		prefix = "=?UTF-8?B?"
		suffix = "?="
		// 75 - len(prefix) - len(suffix) = 63 base64 characters, so at
		// most 15 groups of 4 = 45 bytes of text per word.
		maxChunk = 45
	)
	s = strings.ToValidUTF8(s, "\uFFFD")
	var b strings.Builder
	for s != "" {
		chunk := cut(s, maxChunk)
		s = s[len(chunk):]
		if b.Len() > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(prefix)
		b.WriteString(base64.StdEncoding.EncodeToString([]byte(chunk)))
		b.WriteString(suffix)
	}
	return b.String()
}
