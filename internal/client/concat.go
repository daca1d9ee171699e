package client

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/tusgate/tusgate/internal/client/progress"
	"github.com/tusgate/tusgate/internal/client/resume"
)

// byteRange is [start, end) of a file.
type byteRange struct{ start, end int64 }

// splitRanges cuts size bytes into n ranges of nearly equal size.
func splitRanges(size int64, n int) []byteRange {
	per := (size + int64(n) - 1) / int64(n)
	out := make([]byteRange, 0, n)
	for start := int64(0); start < size; start += per {
		out = append(out, byteRange{start, min(start+per, size)})
	}
	return out
}

// sendParts sends the file in streams partial uploads at once (tus
// concatenation), each with its own resume record, then joins them with a
// final upload and removes the partials.
func (c *Client) sendParts(ctx context.Context, t *progress.Tracker, f *os.File, id resume.Identity, recs []resume.Record, streams int) (string, error) {
	ranges := splitRanges(id.Size, streams)
	earlier := map[int]resume.Record{}
	var final *resume.Record
	for _, r := range recs {
		switch r.Kind {
		case resume.Partial:
			earlier[r.Part] = r
		case resume.Final:
			final = &r
		}
	}

	// The earlier run's final upload, if the server has it whole: the file
	// is stored (its partials may be gone already, removed after it was
	// made).
	if final != nil {
		if st, err := c.head(ctx, final.URL); err == nil && st.offset == id.Size && (st.length < 0 || st.length == id.Size) {
			for _, r := range earlier {
				c.remove(ctx, r.URL)
			}
			t.SetURL(final.URL)
			newStreamPos(t).set(id.Size)
			return final.URL, nil
		}
	}

	ups := make([]*upload, len(ranges))
	offsets := make([]int64, len(ranges))
	reset := func() {
		for _, u := range ups {
			if u != nil {
				u.pos.set(0)
			}
		}
	}
	for i, rg := range ranges {
		u := &upload{src: fileRange{f: f, id: id, start: rg.start, end: rg.end}, length: rg.end - rg.start, pos: newStreamPos(t), tracker: t}
		ups[i] = u
		if r, ok := earlier[i]; ok && r.Start == rg.start && r.End == rg.end && r.Parts == len(ranges) {
			u.url = r.URL
			st, err := c.offset(ctx, t, u.url)
			if err != nil {
				reset()
				return "", err
			}
			if st.length >= 0 && st.length != u.length {
				reset()
				return "", fmt.Errorf("%w (its length is %d, the part's %d)", errGone, st.length, u.length)
			}
			offsets[i] = st.offset
			u.pos.set(st.offset)
			continue
		}
		url, err := c.createRetrying(ctx, t, creation{length: u.length, concat: "partial"})
		if err != nil {
			reset()
			return "", err
		}
		u.url = url
		c.saveRecord(t, resume.Record{File: id, Kind: resume.Partial, Part: i, Parts: len(ranges), Start: rg.start, End: rg.end, URL: url})
	}

	t.Begin(time.Now())
	c.sink.Start(t)
	if err := c.transferAll(ctx, ups, offsets); err != nil {
		if errors.Is(err, errGone) {
			reset()
		}
		return "", err
	}
	if err := unchanged(f, id); err != nil { // while the last chunks were sent
		return "", err
	}

	urls := make([]string, len(ups))
	for i, u := range ups {
		urls[i] = u.url
	}
	url, err := c.createRetrying(ctx, t, creation{concat: concatFinal(urls), metadata: fileMetadata(id.Path)})
	if err != nil {
		return "", err
	}
	c.saveRecord(t, resume.Record{File: id, Kind: resume.Final, End: id.Size, URL: url})
	t.SetURL(url)
	c.removePartials(ctx, ups)
	return url, nil
}

// transferAll sends the uploads at once; the first failure stops the rest.
func (c *Client) transferAll(ctx context.Context, ups []*upload, offsets []int64) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg    sync.WaitGroup
		once  sync.Once
		first error
	)
	for i, u := range ups {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := c.transfer(ctx, u, offsets[i]); err != nil {
				once.Do(func() { first = err; cancel() })
			}
		}()
	}
	wg.Wait()
	return first
}

// removePartials deletes the partial uploads once the final one holds
// their bytes; the server would otherwise keep both.
func (c *Client) removePartials(ctx context.Context, ups []*upload) {
	for _, u := range ups {
		c.remove(ctx, u.url)
	}
}
