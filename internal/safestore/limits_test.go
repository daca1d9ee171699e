package safestore

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/bodylen"
)

// chunked hides a reader's length and counts what was read from it.
type chunked struct {
	r    io.Reader
	read int
}

func (c *chunked) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.read += n
	return n, err
}

// write creates an upload with info, looks at it the way tusd does before a
// write (GetInfo, then DeclareLength if declare >= 0) and writes body at
// offset; length >= 0 is the body's Content-Length.
func write(t *testing.T, opt Options, info handler.FileInfo, declare int64, body io.Reader, length int64) (*fakeUpload, int64, error) {
	t.Helper()
	f, c := newStoreWith(opt)
	f.uploads[info.ID] = &fakeUpload{s: f, info: info, data: bytes.Repeat([]byte("o"), int(info.Offset))}
	ctx := context.Background()
	up, err := c.Core.GetUpload(ctx, info.ID)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := up.GetInfo(ctx); err != nil {
		t.Fatal(err)
	}
	if declare >= 0 {
		if err := c.LengthDeferrer.AsLengthDeclarableUpload(up).DeclareLength(ctx, declare); err != nil {
			t.Fatal(err)
		}
	}
	n, err := up.WriteChunk(bodylen.With(ctx, length), info.Offset, body)
	return f.uploads[info.ID], n, err
}

func code(err error) string {
	var e handler.Error
	if errors.As(err, &e) && e.HTTPResponse.StatusCode == 413 {
		return e.ErrorCode
	}
	if err != nil {
		return "other: " + err.Error()
	}
	return ""
}

func TestWritesStopAtTheSizeLimit(t *testing.T) {
	deferred := handler.FileInfo{ID: "d", SizeIsDeferred: true, Offset: 4}
	declared := handler.FileInfo{ID: "s", Size: 10, Offset: 4}
	opt := Options{MaxSize: 10}
	for _, tc := range []struct {
		name    string
		opt     Options
		info    handler.FileInfo
		declare int64
		body    string
		length  int64 // -1: chunked
		code    string
		stored  int // bytes of the body stored
		read    int // at most this many bytes read from the body
	}{
		{"deferred, fits", opt, deferred, -1, "abcdef", 6, "", 6, 6},
		{"deferred, too long", opt, deferred, -1, "abcdefg", 7, "ERR_MAX_SIZE_EXCEEDED", 0, 0},
		{"deferred, chunked, fits", opt, deferred, -1, "abcdef", -1, "", 6, 7},
		{"deferred, chunked, too long", opt, deferred, -1, "abcdefghij", -1, "ERR_MAX_SIZE_EXCEEDED", 6, 7},
		{"deferred, no --max-size", Options{}, deferred, -1, "abcdefghij", 10, "", 10, 10},
		{"declared, too long", Options{}, declared, -1, "abcdefg", 7, "ERR_UPLOAD_SIZE_EXCEEDED", 0, 0},
		{"declared, chunked, too long", Options{MaxSize: 100}, declared, -1, "abcdefg", -1, "ERR_UPLOAD_SIZE_EXCEEDED", 6, 7},
		{"declared in this request, too long", Options{MaxSize: 100}, deferred, 8, "abcdef", 6, "ERR_UPLOAD_SIZE_EXCEEDED", 0, 0},
		{"declared in this request, fits", Options{MaxSize: 100}, deferred, 10, "abcdef", 6, "", 6, 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			body := &chunked{r: strings.NewReader(tc.body)}
			up, n, err := write(t, tc.opt, tc.info, tc.declare, body, tc.length)
			if got := code(err); got != tc.code {
				t.Fatalf("error %q, want %q", got, tc.code)
			}
			if n != int64(tc.stored) || string(up.data[tc.info.Offset:]) != tc.body[:tc.stored] {
				t.Fatalf("wrote %d, stored %q; want %q", n, up.data[tc.info.Offset:], tc.body[:tc.stored])
			}
			if body.read > tc.read {
				t.Fatalf("read %d bytes of the body, want at most %d", body.read, tc.read)
			}
		})
	}
}
