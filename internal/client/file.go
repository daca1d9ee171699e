package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"mime"
	"os"
	"path/filepath"
	"time"

	"github.com/tusgate/tusgate/internal/client/progress"
	"github.com/tusgate/tusgate/internal/client/resume"
)

// fileRange is the bytes [start, end) of an open file, whose identity
// when the upload began is id.
type fileRange struct {
	f          *os.File
	id         resume.Identity
	start, end int64
}

func (r fileRange) chunk(off, max int64) (func() io.Reader, int64, bool, error) {
	size := r.end - r.start
	if off < 0 || off > size {
		return nil, 0, false, permanent("the server's offset %d is outside the upload's %d bytes", off, size)
	}
	if err := unchanged(r.f, r.id); err != nil {
		return nil, 0, false, err
	}
	n := min(max, size-off)
	at := r.start + off
	return func() io.Reader { return io.NewSectionReader(r.f, at, n) }, n, off+n == size, nil
}

// unchanged fails if the open file's size or modification time is no
// longer id's: its upload would hold some old bytes and some new.
func unchanged(f *os.File, id resume.Identity) error {
	fi, err := f.Stat()
	if err != nil {
		return permanent("%w", err)
	}
	now := id
	now.Size, now.ModTime = fi.Size(), fi.ModTime().UnixNano()
	if ch := id.Changes(now); ch != "" {
		return permanent("the file changed while it was sent (%s); run the same command again to send it anew", ch)
	}
	return nil
}

// fileMetadata is the Upload-Metadata of a file: its name and, when its
// extension tells, its media type.
func fileMetadata(path string) map[string]string {
	md := map[string]string{"filename": filepath.Base(path)}
	if t := mime.TypeByExtension(filepath.Ext(path)); t != "" {
		if mt, _, err := mime.ParseMediaType(t); err == nil {
			md["filetype"] = mt
		}
	}
	return md
}

// uploadFile sends the file at path, resuming the uploads of an earlier
// run for the same endpoint and the same file, and returns its URL.
func (c *Client) uploadFile(ctx context.Context, t *progress.Tracker, path string) (string, error) {
	id, err := resume.Identify(path)
	if err != nil {
		return "", err
	}
	t.SetSize(id.Size)
	if c.caps.MaxSize > 0 && id.Size > c.caps.MaxSize {
		return "", fmt.Errorf("the file's %d bytes are more than the server takes (Tus-Max-Size %d)", id.Size, c.caps.MaxSize)
	}
	f, err := os.Open(id.Path)
	if err != nil {
		return "", err
	}
	defer f.Close()

	recs := c.loadRecords(ctx, t, id)
	for {
		url, err := c.sendFile(ctx, t, f, id, recs)
		if errors.Is(err, errGone) && len(recs) > 0 {
			c.sink.Notice(t, "the server no longer has the upload of an earlier run; starting a new one")
			c.clearRecords(t, id)
			recs = nil
			continue
		}
		if err == nil {
			c.clearRecords(t, id)
		}
		return url, err
	}
}

// loadRecords returns the resume records of the file, or none if there
// are none or the file changed since they were written (then the server's
// uploads are removed too, and the user is told).
func (c *Client) loadRecords(ctx context.Context, t *progress.Tracker, id resume.Identity) []resume.Record {
	if c.opts.Records == nil {
		return nil
	}
	recs, err := c.opts.Records.Load(c.endpoint.String(), id.Path)
	if err != nil {
		c.sink.Notice(t, err.Error()+"; starting a new upload")
		return nil
	}
	for _, r := range recs {
		if ch := r.File.Changes(id); ch != "" {
			c.sink.Notice(t, fmt.Sprintf("the file changed since the last run (%s); starting a new upload", ch))
			for _, r := range recs {
				c.remove(ctx, r.URL)
			}
			c.clearRecords(t, id)
			return nil
		}
	}
	return recs
}

func (c *Client) saveRecord(t *progress.Tracker, r resume.Record) {
	if c.opts.Records == nil {
		return
	}
	r.Endpoint, r.Created = c.endpoint.String(), time.Now().UTC()
	if err := c.opts.Records.Save(r); err != nil {
		c.sink.Notice(t, err.Error()+"; this upload cannot resume after a restart")
	}
}

func (c *Client) clearRecords(t *progress.Tracker, id resume.Identity) {
	if c.opts.Records == nil {
		return
	}
	if err := c.opts.Records.Clear(c.endpoint.String(), id.Path); err != nil {
		c.sink.Notice(t, err.Error())
	}
}

// sendFile sends the file in one upload or, for a big file with
// --streams, in partial uploads joined by a final one.
func (c *Client) sendFile(ctx context.Context, t *progress.Tracker, f *os.File, id resume.Identity, recs []resume.Record) (string, error) {
	streams := min(c.opts.Streams, int(max(1, id.Size/minPartialSize)))
	if len(recs) > 0 { // the layout of the earlier run
		streams = max(1, recs[0].Parts)
	}
	if streams > 1 && !c.caps.Extensions["concatenation"] {
		if len(recs) > 0 {
			// Failing would fail every later run the same way: start anew.
			c.sink.Notice(t, "the server does not announce concatenation, which the earlier run's partial uploads need; starting a new upload in one stream")
			for _, r := range recs {
				c.remove(ctx, r.URL)
			}
			c.clearRecords(t, id)
			recs = nil
		} else {
			c.sink.Notice(t, "the server does not support concatenation; sending in one stream")
		}
		streams = 1
	}
	if streams == 1 {
		return c.sendWhole(ctx, t, f, id, recs)
	}
	return c.sendParts(ctx, t, f, id, recs, streams)
}

// sendWhole sends the file in one upload.
func (c *Client) sendWhole(ctx context.Context, t *progress.Tracker, f *os.File, id resume.Identity, recs []resume.Record) (string, error) {
	u := &upload{src: fileRange{f: f, id: id, end: id.Size}, length: id.Size, pos: newStreamPos(t), tracker: t}
	offset := int64(0)
	if len(recs) > 0 && recs[0].Kind == resume.Whole {
		u.url = recs[0].URL
		st, err := c.offset(ctx, t, u.url)
		if err != nil {
			return "", err
		}
		if st.length >= 0 && st.length != id.Size {
			return "", fmt.Errorf("%w (its length is %d, the file's %d)", errGone, st.length, id.Size)
		}
		offset = st.offset
		u.pos.set(offset)
	} else {
		url, err := c.createRetrying(ctx, t, creation{length: id.Size, metadata: fileMetadata(id.Path)})
		if err != nil {
			return "", err
		}
		u.url = url
		c.saveRecord(t, resume.Record{File: id, Kind: resume.Whole, Parts: 1, End: id.Size, URL: url})
	}
	t.SetURL(u.url)
	t.Begin(time.Now())
	c.sink.Start(t)
	err := c.transfer(ctx, u, offset)
	if errors.Is(err, errGone) {
		u.pos.set(0)
	}
	if err == nil {
		err = unchanged(f, id) // while its last chunk was sent
	}
	return u.url, err
}
