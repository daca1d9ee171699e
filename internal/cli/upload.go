package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"maps"
	"slices"
	"strings"
	"time"

	"golang.org/x/time/rate"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/client"
	"github.com/tusgate/tusgate/internal/client/backoff"
	"github.com/tusgate/tusgate/internal/client/progress"
	"github.com/tusgate/tusgate/internal/client/resume"
	"github.com/tusgate/tusgate/internal/devicelogin"
)

// DefaultEndpoint is where upload sends files without --endpoint or
// TUSGATE_ENDPOINT: a tusgate on this machine with default settings.
const DefaultEndpoint = "http://127.0.0.1:8080/files/"

const uploadUsage = `Usage: tusgate upload [flags] FILE...

Sends files to a tusgate (or any tus 1.0 server), resumably: run the same
command again after an interruption and each upload continues where the
server left off. "-" reads standard input (sent with a deferred length; it
resumes only within one run). Prints each upload's URL on standard output,
one line per file in the order given, followed by the stored object's
checksums when the server names them (crc32=<base64> sha256=<base64>);
progress goes to standard error.

Exit codes: 0 every file stored, 1 a file failed, 2 bad usage,
130 interrupted.

Flags:
`

type uploadFlags struct {
	endpoint, token, name string
	parallel, streams     int
	retries               int
	chunkSize, limitRate  string
	json, quiet, noResume bool
}

func upload(ctx context.Context, args []string, env Env) int {
	var f uploadFlags
	fs := flag.NewFlagSet("tusgate upload", flag.ContinueOnError)
	fs.StringVar(&f.endpoint, "endpoint", orDefault(env.Getenv("TUSGATE_ENDPOINT"), DefaultEndpoint), "tus creation `URL` (or TUSGATE_ENDPOINT)")
	fs.StringVar(&f.token, "token", "", "access `token` (or TUSGATE_TOKEN; default: the one tusgate login stored)")
	fs.IntVar(&f.parallel, "parallel", 4, "files sent at once")
	fs.IntVar(&f.streams, "streams", 1, "parallel streams per file (tus concatenation), for big files on long links")
	fs.StringVar(&f.chunkSize, "chunk-size", "64MiB", "largest PATCH body")
	fs.IntVar(&f.retries, "retries", backoff.DefaultAttempts, "failures in a row, without progress, before a file is given up")
	fs.StringVar(&f.limitRate, "limit-rate", "0", "cap on the upload rate of all files together, bytes per second (e.g. 10MiB; 0: none)")
	fs.BoolVar(&f.json, "json", false, "progress as JSON lines (default when standard error is not a terminal)")
	fs.BoolVar(&f.quiet, "quiet", false, "no progress output; errors only")
	fs.BoolVar(&f.noResume, "no-resume", false, "neither read nor write resume records")
	fs.StringVar(&f.name, "name", "stdin", "file name of standard input (-) in the upload's metadata")
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), uploadUsage)
		fs.PrintDefaults()
	}
	fs.SetOutput(env.Stderr)
	files, err := parseInterspersed(fs, args)
	if errors.Is(err, flag.ErrHelp) {
		return ExitOK
	}
	if err != nil {
		return ExitUsage
	}
	opts, stdinCount, problem := f.check(files)
	if problem == "" && stdinCount > 1 {
		problem = `"-" (standard input) can be given once`
	}
	if problem != "" {
		fmt.Fprintln(env.Stderr, "tusgate upload:", problem)
		return ExitUsage
	}

	auth, err := chooseAuth(f.token, env)
	if err != nil {
		fmt.Fprintln(env.Stderr, "tusgate upload:", err)
		return ExitFailed
	}
	opts.Auth = auth
	opts.UserAgent = "tusgate/" + env.Version
	if !f.noResume {
		dir, err := resume.DefaultDir(env.Getenv)
		if err != nil {
			fmt.Fprintln(env.Stderr, "tusgate upload:", err)
			return ExitFailed
		}
		opts.Records = resume.NewStore(dir)
	}
	jsonOut := f.json || !isTerminal(env.Stderr)
	switch {
	case f.quiet:
		opts.Sink = quietSink{w: env.Stderr}
	case jsonOut:
		opts.Sink = progress.NewJSON(env.Stderr, time.Second)
	default:
		opts.Sink = progress.NewBars(env.Stderr)
	}
	c, err := client.New(opts)
	if err != nil {
		fmt.Fprintln(env.Stderr, "tusgate upload:", err)
		return ExitUsage
	}

	out := newOrderedPrinter(env.Stdout, len(files))
	failed := 0
	c.Upload(ctx, client.Input{Files: files, Stream: env.Stdin, StreamName: f.name, Parallel: f.parallel},
		func(i int, r client.Result) {
			if r.Err != nil {
				failed++
			}
			out.done(i, r)
		})
	opts.Sink.Close()
	switch {
	case ctx.Err() != nil:
		if !jsonOut {
			msg := "interrupted; run the same command again to resume"
			switch {
			case stdinCount == len(files):
				msg = "interrupted; standard input cannot resume: a new run sends it anew"
			case stdinCount > 0:
				msg += " (standard input is sent anew)"
			}
			fmt.Fprintln(env.Stderr, "tusgate upload:", msg)
		}
		return ExitInterrupted
	case failed > 0:
		if !jsonOut || f.quiet {
			fmt.Fprintf(env.Stderr, "tusgate upload: %d of %d files not stored\n", failed, len(files))
		}
		return ExitFailed
	}
	return ExitOK
}

// check validates the flags and turns them into client options.
func (f *uploadFlags) check(files []string) (opts client.Options, stdinCount int, problem string) {
	var problems []string
	add := func(format string, a ...any) { problems = append(problems, fmt.Sprintf(format, a...)) }
	if len(files) == 0 {
		add("name at least one FILE (or - for standard input)")
	}
	for _, f := range files {
		if f == "-" {
			stdinCount++
		}
	}
	if f.parallel < 1 {
		add("--parallel %d must be at least 1", f.parallel)
	}
	if f.streams < 1 || f.streams > 64 {
		add("--streams %d must be between 1 and 64", f.streams)
	}
	if f.retries < 1 {
		add("--retries %d must be at least 1", f.retries)
	}
	chunk, err := config.ParseSize(f.chunkSize)
	if err != nil || chunk < 1 {
		add("--chunk-size %q must be a size such as 64MiB", f.chunkSize)
	}
	limit, err := config.ParseSize(f.limitRate)
	if err != nil {
		add("--limit-rate %q must be a size per second such as 10MiB, or 0", f.limitRate)
	}
	opts = client.Options{
		Endpoint:  f.endpoint,
		ChunkSize: chunk,
		Streams:   f.streams,
		Retry:     backoff.Policy{Attempts: f.retries},
	}
	if limit > 0 {
		opts.Limiter = rate.NewLimiter(rate.Limit(limit), int(min(limit, 64<<10)))
	}
	return opts, stdinCount, strings.Join(problems, "; ")
}

// chooseAuth picks the token: --token, else TUSGATE_TOKEN, else the login's
// stored tokens (refreshed as needed), else none.
func chooseAuth(token string, env Env) (client.Auth, error) {
	if token == "" {
		token = env.Getenv("TUSGATE_TOKEN")
	}
	if token != "" {
		return staticToken(token), nil
	}
	path, err := devicelogin.DefaultPath()
	if err != nil {
		return nil, nil
	}
	src, err := devicelogin.NewSource(path, nil)
	if errors.Is(err, devicelogin.ErrNotLoggedIn) {
		return nil, nil // a server without authentication
	}
	if err != nil {
		return nil, err
	}
	return src, nil
}

// staticToken is a token given on the command line: it cannot be
// refreshed.
type staticToken string

func (s staticToken) Token(context.Context) (string, error) { return string(s), nil }

func (s staticToken) Refresh(context.Context, string) (string, error) {
	return "", errors.New("a token from --token or TUSGATE_TOKEN cannot be refreshed")
}

// parseInterspersed parses flags anywhere among the arguments (until "--")
// and returns the others.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var rest []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		left := fs.Args()
		if used := len(args) - len(left); used > 0 && args[used-1] == "--" {
			return append(rest, left...), nil
		}
		if len(left) == 0 {
			return rest, nil
		}
		rest = append(rest, left[0])
		args = left[1:]
	}
}

func orDefault(v, def string) string {
	if v == "" {
		return def
	}
	return v
}

// orderedPrinter prints each stored file's URL, followed by the stored
// object's checksums the server named (" crc32=<base64> sha256=<base64>"),
// in the order the files were given, as soon as the files before it are
// done.
type orderedPrinter struct {
	w       io.Writer
	results []*client.Result
	next    int
}

func newOrderedPrinter(w io.Writer, n int) *orderedPrinter {
	return &orderedPrinter{w: w, results: make([]*client.Result, n)}
}

func (p *orderedPrinter) done(i int, r client.Result) {
	p.results[i] = &r
	for p.next < len(p.results) && p.results[p.next] != nil {
		if r := p.results[p.next]; r.Err == nil {
			line := r.URL
			for _, alg := range slices.Sorted(maps.Keys(r.Checksums)) {
				line += " " + alg + "=" + r.Checksums[alg]
			}
			fmt.Fprintln(p.w, line)
		}
		p.next++
	}
}

// quietSink reports only failures and notices, one line each.
type quietSink struct{ w io.Writer }

func (quietSink) Start(*progress.Tracker)                       {}
func (s quietSink) Notice(t *progress.Tracker, m string)        { fmt.Fprintf(s.w, "%s: %s\n", t.File, m) }
func (quietSink) Retry(*progress.Tracker, error, time.Duration) {}
func (quietSink) Done(*progress.Tracker)                        {}
func (s quietSink) Fail(t *progress.Tracker, err error)         { fmt.Fprintf(s.w, "%s: %v\n", t.File, err) }
func (quietSink) Close()                                        {}
