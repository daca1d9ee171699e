package client

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"

	"github.com/tusgate/tusgate/internal/client/progress"
)

// errInterrupted ends the uploads of a run that was stopped.
var errInterrupted = errors.New("interrupted; run the same command again to resume")

// errInterruptedStream ends an interrupted standard input, which keeps no
// record: it cannot resume.
var errInterruptedStream = errors.New("interrupted; standard input cannot resume: a new run sends it anew")

func interrupted(file string) error {
	if file == "-" {
		return errInterruptedStream
	}
	return errInterrupted
}

// Result is how the upload of one file ended.
type Result struct {
	File string // as given ("-": the stream)
	URL  string // the upload's URL ("" if it was never created)
	Err  error  // nil: the file is stored
	// Checksums are the stored object's checksums the server named, by
	// algorithm ("crc32", "sha256"; base64), nil if none.
	Checksums map[string]string
}

// Input names what Upload sends.
type Input struct {
	// Files are paths; "-" stands for Stream.
	Files []string
	// Stream is read for "-", sent with a deferred length.
	Stream io.Reader
	// StreamName is the stream's file name in the upload's metadata.
	StreamName string
	// Parallel is how many files are sent at once (default 1).
	Parallel int
}

// Upload sends the files, Parallel at once, and calls done (from any
// goroutine, one call at a time) as each ends, with its index in Files.
func (c *Client) Upload(ctx context.Context, in Input, done func(i int, r Result)) {
	var mu sync.Mutex
	report := func(i int, r Result) {
		mu.Lock()
		defer mu.Unlock()
		done(i, r)
	}
	if err := c.discover(ctx); err != nil {
		for i, f := range in.Files {
			t := progress.NewTracker(f, -1)
			c.sink.Fail(t, err)
			report(i, Result{File: f, Err: err})
		}
		return
	}
	sem := make(chan struct{}, max(1, in.Parallel))
	var wg sync.WaitGroup
	for i, f := range in.Files {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
				defer func() { <-sem }()
			case <-ctx.Done():
				c.sink.Fail(progress.NewTracker(f, -1), interrupted(f))
				report(i, Result{File: f, Err: interrupted(f)})
				return
			}
			report(i, c.uploadOne(ctx, f, in))
		}()
	}
	wg.Wait()
}

func (c *Client) uploadOne(ctx context.Context, file string, in Input) Result {
	t := progress.NewTracker(file, -1)
	var (
		url string
		err error
	)
	if file == "-" {
		url, err = c.uploadStream(ctx, t, in.Stream, in.StreamName)
	} else {
		url, err = c.uploadFile(ctx, t, file)
	}
	if err != nil {
		if ctx.Err() != nil {
			err = interrupted(file)
		}
		c.sink.Fail(t, err)
		return Result{File: file, URL: url, Err: err}
	}
	t.SetURL(url)
	sums := c.objectChecksums(ctx, url)
	t.SetChecksums(sums)
	c.sink.Done(t)
	return Result{File: file, URL: url, Checksums: sums}
}

// discover reads the server's capabilities once (OPTIONS). A server that
// refuses OPTIONS gets plain tus 1.0 uploads; one that cannot be reached
// fails every file.
func (c *Client) discover(ctx context.Context) error {
	t := progress.NewTracker(c.endpoint.String(), -1)
	err := c.retry(ctx, t, func() (err error) {
		c.caps, err = c.options(ctx)
		return err
	})
	var se *StatusError
	if errors.As(err, &se) && se.Status != 401 {
		c.caps = Capabilities{}
		c.sink.Notice(t, fmt.Sprintf("the server refused OPTIONS (%s); sending plain tus 1.0 uploads, without checksums or --streams", se.Error()))
		return nil
	}
	return err
}
