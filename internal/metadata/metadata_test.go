package metadata

import (
	"encoding/base64"
	"errors"
	"maps"
	"mime"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/tus/tusd/v2/pkg/handler"
)

func b64(s string) string { return base64.StdEncoding.EncodeToString([]byte(s)) }

func TestParse(t *testing.T) {
	tests := []struct {
		name    string
		header  string
		maxSize int
		want    handler.MetaData
		wantErr string
	}{
		{name: "empty", header: "", want: handler.MetaData{}},
		{name: "whitespace", header: " \t ", want: handler.MetaData{}},
		{
			name:   "tus-js-client",
			header: "filename ZXhhbXBsZS5tcDQ=,filetype dmlkZW8vbXA0",
			want:   handler.MetaData{"filename": "example.mp4", "filetype": "video/mp4"},
		},
		{
			name:   "spaces and tabs around pairs",
			header: " filename ZXhhbXBsZS5tcDQ= ,\tfiletype dmlkZW8vbXA0\t",
			want:   handler.MetaData{"filename": "example.mp4", "filetype": "video/mp4"},
		},
		{
			name:   "key without value",
			header: "is_confidential,name " + b64("x"),
			want:   handler.MetaData{"is_confidential": "", "name": "x"},
		},
		{
			name:   "key case preserved",
			header: "FileName " + b64("a.txt") + ",X-Custom_1~ " + b64("v"),
			want:   handler.MetaData{"FileName": "a.txt", "X-Custom_1~": "v"},
		},
		{
			name:   "keys differing only in case are distinct",
			header: "name " + b64("a") + ",Name " + b64("b"),
			want:   handler.MetaData{"name": "a", "Name": "b"},
		},
		{
			name:   "all tchar key",
			header: "!#$%&'*+-.^_`|~09AZaz " + b64("v"),
			want:   handler.MetaData{"!#$%&'*+-.^_`|~09AZaz": "v"},
		},
		{
			name:   "unpadded base64 accepted",
			header: "a YQ,b YWI,c YWJj",
			want:   handler.MetaData{"a": "a", "b": "ab", "c": "abc"},
		},
		{
			name:   "unicode filename",
			header: "filename R3LDvMOfZSDwn5OBLnR4dA==",
			want:   handler.MetaData{"filename": "Grüße 📁.txt"},
		},
		{
			name:   "unix path filename",
			header: "filename " + b64("../../etc/passwd"),
			want:   handler.MetaData{"filename": "passwd"},
		},
		{
			name:   "windows path filename",
			header: "filename " + b64(`C:\Users\x\a.txt`),
			want:   handler.MetaData{"filename": "a.txt"},
		},
		{
			name:   "filename that sanitizes to nothing is removed",
			header: "filename " + b64("dir/..") + ",other " + b64("x"),
			want:   handler.MetaData{"other": "x"},
		},
		{
			name:   "empty filename is removed",
			header: "filename",
			want:   handler.MetaData{},
		},
		{
			name:   "empty filetype is removed",
			header: "filetype,filename " + b64("a.bin"),
			want:   handler.MetaData{"filename": "a.bin"},
		},
		{
			name:   "filetype canonicalised",
			header: "filetype " + b64("Text/HTML; Charset=UTF-8"),
			want:   handler.MetaData{"filetype": "text/html; charset=UTF-8"},
		},
		{
			name:   "filetype with quoted parameter",
			header: "filetype " + b64(`video/mp4; codecs="avc1.42E01E, mp4a.40.2"`),
			want:   handler.MetaData{"filetype": `video/mp4; codecs="avc1.42E01E, mp4a.40.2"`},
		},
		{
			name:    "header at the size limit",
			header:  "a YQ==",
			maxSize: 6,
			want:    handler.MetaData{"a": "a"},
		},

		// Errors.
		{
			name:    "oversized header",
			header:  "filename " + b64(strings.Repeat("x", 100)),
			maxSize: 64,
			wantErr: "Upload-Metadata is 145 bytes; the limit is 64 bytes",
		},
		{
			name:    "trailing comma",
			header:  "a YQ==,",
			wantErr: `Upload-Metadata: entry 2 is empty; remove the extra ","`,
		},
		{
			name:    "empty middle entry",
			header:  "a YQ==, ,b YQ==",
			wantErr: `Upload-Metadata: entry 2 is empty; remove the extra ","`,
		},
		{
			name:    "three parts",
			header:  "key YQ== YQ==",
			wantErr: `Upload-Metadata: the entry for key "key" has more than one space; the format is "key base64value"`,
		},
		{
			name:    "two spaces",
			header:  "key  YQ==",
			wantErr: `Upload-Metadata: the entry for key "key" has more than one space; the format is "key base64value"`,
		},
		{
			name:    "duplicate key",
			header:  "name YQ==,name YWI=",
			wantErr: `Upload-Metadata: key "name" appears more than once; send each key only once`,
		},
		{
			name:    "bad base64",
			header:  "name !!!!",
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "url-safe base64",
			header:  "name " + base64.URLEncoding.EncodeToString([]byte{0xfb, 0xff}),
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "wrong padding",
			header:  "name YQ=",
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "only padding",
			header:  "name ==",
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "impossible length",
			header:  "name YWJjZ",
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "newline inside base64",
			header:  "name YW\nJj",
			wantErr: `Upload-Metadata: the value of key "name" is not valid base64; use standard base64 (RFC 4648 section 4, alphabet A-Z a-z 0-9 + /)`,
		},
		{
			name:    "key with non-token char",
			header:  "file@name " + b64("x"),
			wantErr: "Upload-Metadata: key \"file@name\" contains '@', which is not allowed; keys may only contain letters, digits and !#$%&'*+-.^_`|~",
		},
		{
			name:    "key with non-ASCII char",
			header:  "größe " + b64("x"),
			wantErr: "Upload-Metadata: key \"größe\" contains 'ö', which is not allowed; keys may only contain letters, digits and !#$%&'*+-.^_`|~",
		},
		{
			name:    "key with tab separator",
			header:  "name\tYQ==",
			wantErr: "Upload-Metadata: key \"name\\tYQ==\" contains '\\t', which is not allowed; keys may only contain letters, digits and !#$%&'*+-.^_`|~",
		},
		{
			name:    "key too long",
			header:  strings.Repeat("k", 129) + " YQ==",
			wantErr: `Upload-Metadata: key "` + strings.Repeat("k", 100) + `"… is 129 bytes; the limit is 128 bytes`,
		},
		{
			name:    "filetype with newline",
			header:  "filetype " + b64("video/mp4\n"),
			wantErr: `Upload-Metadata: the value of key "filetype" contains the control character U+000A; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "NUL in value",
			header:  "name " + b64("a\x00b"),
			wantErr: `Upload-Metadata: the value of key "name" contains the control character U+0000; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "tab in value",
			header:  "name " + b64("a\tb"),
			wantErr: `Upload-Metadata: the value of key "name" contains the control character U+0009; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "DEL in value",
			header:  "name " + b64("a\x7f"),
			wantErr: `Upload-Metadata: the value of key "name" contains the control character U+007F; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "C1 control in value",
			header:  "name " + b64("a\u0085"),
			wantErr: `Upload-Metadata: the value of key "name" contains the control character U+0085; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "invalid UTF-8 value",
			header:  "name " + b64("a\xffb"),
			wantErr: `Upload-Metadata: the value of key "name" is not valid UTF-8 text`,
		},
		{
			name:    "invalid filetype",
			header:  "filetype " + b64("not a type"),
			wantErr: `Upload-Metadata: filetype "not a type" is not a valid media type (for example "video/mp4")`,
		},
		{
			name:    "filetype without subtype",
			header:  "filetype " + b64("video"),
			wantErr: `Upload-Metadata: filetype "video" is not a valid media type (for example "video/mp4")`,
		},
		{
			name:    "filetype with bad parameter",
			header:  "filetype " + b64("video/mp4; a"),
			wantErr: `Upload-Metadata: filetype "video/mp4; a" is not a valid media type (for example "video/mp4")`,
		},
		{
			name:    "long invalid filetype is cut in the message",
			header:  "filetype " + b64(strings.Repeat("ä", 60)),
			wantErr: `Upload-Metadata: filetype "` + strings.Repeat("ä", 50) + `" is not a valid media type (for example "video/mp4")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.header, tt.maxSize)
			checkResult(t, got, err, tt.want, tt.wantErr)
		})
	}
}

func checkResult(t *testing.T, got handler.MetaData, err error, want handler.MetaData, wantErr string) {
	t.Helper()
	if wantErr != "" {
		if err == nil {
			t.Fatalf("got %q, want error %q", got, wantErr)
		}
		var me *Error
		if !errors.As(err, &me) {
			t.Fatalf("error %v is %T, want *Error", err, err)
		}
		if err.Error() != wantErr {
			t.Fatalf("error\n got: %s\nwant: %s", err, wantErr)
		}
		return
	}
	if err != nil {
		t.Fatalf("unexpected error: %v", err)
	}
	if got == nil {
		t.Fatal("got nil map, want non-nil")
	}
	if !maps.Equal(got, want) {
		t.Fatalf("got %q, want %q", got, want)
	}
}

func TestClean(t *testing.T) {
	tests := []struct {
		name    string
		meta    handler.MetaData
		maxSize int
		want    handler.MetaData
		wantErr string
	}{
		{name: "nil", meta: nil, want: handler.MetaData{}},
		{
			name: "derived from IETF headers",
			meta: handler.MetaData{"filetype": "Image/PNG", "filename": `C:\tmp\photo.png`},
			want: handler.MetaData{"filetype": "image/png", "filename": "photo.png"},
		},
		{
			name: "empty filetype and filename removed",
			meta: handler.MetaData{"filetype": "", "filename": " ", "x": ""},
			want: handler.MetaData{"x": ""},
		},
		{
			name:    "at size limit",
			meta:    handler.MetaData{"ab": "cd"},
			maxSize: 4,
			want:    handler.MetaData{"ab": "cd"},
		},
		{
			name:    "over size limit",
			meta:    handler.MetaData{"ab": "cd", "e": "f"},
			maxSize: 5,
			wantErr: "Upload-Metadata is 6 bytes (keys plus values); the limit is 5 bytes",
		},
		{
			name:    "control char",
			meta:    handler.MetaData{"filetype": "text/plain\r\nX-Evil: 1"},
			wantErr: `Upload-Metadata: the value of key "filetype" contains the control character U+000D; remove line breaks, tabs and other control characters`,
		},
		{
			name:    "bad key",
			meta:    handler.MetaData{"a b": "x"},
			wantErr: "Upload-Metadata: key \"a b\" contains ' ', which is not allowed; keys may only contain letters, digits and !#$%&'*+-.^_`|~",
		},
		{
			name:    "empty key",
			meta:    handler.MetaData{"": "x"},
			wantErr: `Upload-Metadata: an entry has an empty key; the format is "key base64value"`,
		},
		{
			name:    "invalid filetype",
			meta:    handler.MetaData{"filetype": "/mp4"},
			wantErr: `Upload-Metadata: filetype "/mp4" is not a valid media type (for example "video/mp4")`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var orig handler.MetaData
			if tt.meta != nil {
				orig = maps.Clone(tt.meta)
			}
			got, err := Clean(tt.meta, tt.maxSize)
			checkResult(t, got, err, tt.want, tt.wantErr)
			if !maps.Equal(tt.meta, orig) {
				t.Errorf("Clean modified its input: %q, was %q", tt.meta, orig)
			}
		})
	}
}

func TestSanitizeFilename(t *testing.T) {
	tests := []struct {
		in, want string
	}{
		{"example.mp4", "example.mp4"},
		{"Grüße 📁.txt", "Grüße 📁.txt"},
		{"../../etc/passwd", "passwd"},
		{`C:\Users\x\a.txt`, "a.txt"},
		{`dir/sub\mixed/file.txt`, "file.txt"},
		{"dir/", ""},
		{"", ""},
		{".", ""},
		{"..", ""},
		{"...", "..."},
		{"a/..", ""},
		{".\x00.", ""},
		{"  spaced name.txt  ", "spaced name.txt"},
		{"a\x00b\nc\td\x7fe\u009f.txt", "abcde.txt"},
		{"bad\xff\xfeutf8.txt", "badutf8.txt"},
		{"\xe2\x82", ""},
		{"x\u200bz", "x\u200bz"}, // format characters (Cf) are not control characters
		{strings.Repeat("a", 255), strings.Repeat("a", 255)},
		// 300 bytes: 254 ASCII + 2-byte rune that straddles byte 255.
		{strings.Repeat("a", 254) + "é" + strings.Repeat("b", 44), strings.Repeat("a", 254)},
		// 300 bytes of 4-byte runes: 63 runes = 252 bytes fit.
		{strings.Repeat("📁", 75), strings.Repeat("📁", 63)},
		// A cut that leaves a trailing space is trimmed again.
		{strings.Repeat("a", 254) + " " + strings.Repeat("b", 45), strings.Repeat("a", 254)},
	}
	for _, tt := range tests {
		got := SanitizeFilename(tt.in)
		if got != tt.want {
			t.Errorf("SanitizeFilename(%q) = %q, want %q", tt.in, got, tt.want)
		}
		if len(got) > 255 || !utf8.ValidString(got) {
			t.Errorf("SanitizeFilename(%q) = %q: too long or invalid UTF-8", tt.in, got)
		}
	}
}

func TestForS3(t *testing.T) {
	big := func(n int) string { return strings.Repeat("v", n) }
	tests := []struct {
		name string
		in   map[string]string
		want map[string]string
	}{
		{name: "nil", in: nil, want: map[string]string{}},
		{
			name: "printable ASCII kept, keys lower-cased",
			in:   map[string]string{"FileName": "example.mp4", "filetype": "video/mp4", "Empty": "", "sym": ` !"~`},
			want: map[string]string{"filename": "example.mp4", "filetype": "video/mp4", "empty": "", "sym": ` !"~`},
		},
		{
			name: "non-ASCII encoded as RFC 2047 word",
			in:   map[string]string{"filename": "Grüße 📁.txt"},
			want: map[string]string{"filename": "=?UTF-8?B?R3LDvMOfZSDwn5OBLnR4dA==?="},
		},
		{
			name: "tab and newline encoded",
			in:   map[string]string{"a": "x\ty", "b": "x\n"},
			want: map[string]string{"a": "=?UTF-8?B?eAl5?=", "b": "=?UTF-8?B?eAo=?="},
		},
		{
			name: "invalid UTF-8 becomes U+FFFD",
			in:   map[string]string{"a": "x\xff"},
			want: map[string]string{"a": "=?UTF-8?B?eO+/vQ==?="},
		},
		{
			name: "long value split into words of at most 75 characters on rune boundaries",
			in:   map[string]string{"filename": "日本語のファイル名はとても長いです。日本語のファイル名はとても長いです.txt"},
			want: map[string]string{"filename": "=?UTF-8?B?5pel5pys6Kqe44Gu44OV44Kh44Kk44Or5ZCN44Gv44Go44Gm44KC6ZW344GE?=" +
				" =?UTF-8?B?44Gn44GZ44CC5pel5pys6Kqe44Gu44OV44Kh44Kk44Or5ZCN44Gv44Go44Gm?=" +
				" =?UTF-8?B?44KC6ZW344GE44Gn44GZLnR4dA==?="},
		},
		{
			name: "keys S3 would reject are dropped",
			in:   map[string]string{"bad key": "x", "": "x", "größe": "x", "a\nb": "x", "ok": "x"},
			want: map[string]string{"ok": "x"},
		},
		{
			name: "case collision: first in sorted order wins",
			in:   map[string]string{"name": "lower", "Name": "upper"},
			want: map[string]string{"name": "upper"},
		},
		{
			name: "over 2048 bytes drops entries that do not fit",
			in:   map[string]string{"k1": big(1000), "k2": big(1000), "k3": big(100), "k4": big(10)},
			want: map[string]string{"k1": big(1000), "k2": big(1000), "k4": big(10)},
		},
		{
			name: "exactly 2048 bytes",
			in:   map[string]string{"a": big(1023), "b": big(1023)},
			want: map[string]string{"a": big(1023), "b": big(1023)},
		},
		{
			name: "single entry too large",
			in:   map[string]string{"a": big(2048), "b": "c"},
			want: map[string]string{"b": "c"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ForS3(tt.in)
			if got == nil {
				t.Fatal("got nil map")
			}
			if !maps.Equal(got, tt.want) {
				t.Fatalf("got %q, want %q", got, tt.want)
			}
			checkS3(t, got)
		})
	}
}

func TestForS3RoundTrip(t *testing.T) {
	var dec mime.WordDecoder
	for _, v := range []string{"Grüße 📁.txt", "a\tb", strings.Repeat("日本", 40) + ".txt", strings.Repeat("x", 44) + "é"} {
		enc := ForS3(map[string]string{"k": v})["k"]
		got, err := dec.DecodeHeader(enc)
		if err != nil || got != v {
			t.Errorf("decoding %q = %q, %v; want %q", enc, got, err, v)
		}
	}
}

// checkS3 asserts the invariants of a ForS3 result.
func checkS3(t *testing.T, m map[string]string) {
	t.Helper()
	total := 0
	for k, v := range m {
		total += len(k) + len(v)
		if !isToken(k) || k != strings.ToLower(k) {
			t.Errorf("S3 key %q is not a lower-case token", k)
		}
		if !isPrintableASCII(v) {
			t.Errorf("S3 value %q for key %q is not printable ASCII", v, k)
		}
		for w := range strings.SplitSeq(v, " ") {
			if strings.HasPrefix(w, "=?UTF-8?B?") && len(w) > 75 {
				t.Errorf("encoded word %q is longer than 75 characters", w)
			}
		}
	}
	if total > maxS3Size {
		t.Errorf("S3 metadata is %d bytes, limit %d", total, maxS3Size)
	}
}

func TestErrorType(t *testing.T) {
	_, err := Parse("a,", 0)
	var me *Error
	if !errors.As(err, &me) || me.Msg != err.Error() {
		t.Fatalf("Parse error %#v is not an *Error with Msg == Error()", err)
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"",
		"filename ZXhhbXBsZS5tcDQ=,filetype dmlkZW8vbXA0",
		"filename R3LDvMOfZSDwn5OBLnR4dA==",
		"filename " + b64("../../etc/passwd"),
		"filename " + b64(`C:\Users\x\a.txt`),
		"filetype " + b64("video/mp4\n"),
		"filetype " + b64(`text/plain; charset="utf-8"; x*=utf-8''%E2%82%AC`),
		"filetype,filename",
		"a YQ==,a YQ==",
		"a YQ",
		"a  YQ==",
		"a,",
		"k@y YQ==",
		"name " + b64(strings.Repeat("ü", 1500)),
		"x " + b64(strings.Repeat("a", 2000)) + ",y " + b64("b"),
	}
	for _, s := range seeds {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, header string) {
		meta, err := Parse(header, 8192)
		if err != nil {
			var me *Error
			if !errors.As(err, &me) {
				t.Fatalf("error %v is %T, want *Error", err, err)
			}
			if meta != nil {
				t.Fatalf("got %q together with error %v", meta, err)
			}
			return
		}
		if meta == nil {
			t.Fatal("nil map without error")
		}
		for k, v := range meta {
			if !isToken(k) {
				t.Errorf("key %q is not a token", k)
			}
			if !utf8.ValidString(v) {
				t.Errorf("value %q of %q is not valid UTF-8", v, k)
			}
			if strings.IndexFunc(v, unicode.IsControl) >= 0 {
				t.Errorf("value %q of %q has a control character", v, k)
			}
		}
		if ft, ok := meta["filetype"]; ok && ft == "" {
			t.Error("empty filetype kept")
		}
		if fn, ok := meta["filename"]; ok && fn != SanitizeFilename(fn) {
			t.Errorf("filename %q is not sanitized", fn)
		}
		again, err := Clean(meta, 0)
		if err != nil {
			t.Fatalf("Clean of Parse result %q: %v", meta, err)
		}
		if !maps.Equal(again, meta) {
			t.Errorf("Clean is not idempotent: %q -> %q", meta, again)
		}
		checkS3(t, ForS3(meta))
	})
}
