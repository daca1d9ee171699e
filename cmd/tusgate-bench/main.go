// Command tusgate-bench measures upload throughput and server cost of a tus
// server (tusgate, or stock tusd for comparison) and, as a baseline, of
// direct S3 multipart uploads to the same bucket.
//
// It carries its own minimal tus client and generates the data on the fly
// (see Generator), so a run needs no fixtures and hashes nothing on the
// client side. A run sends --uploads uploads of --size bytes each, --concurrency
// at a time, each in one PATCH or in PATCHes of --chunk bytes, and reports
// throughput, latency percentiles of the requests that carry data (PATCH,
// POST with data, UploadPart), failed uploads and — with --pid (a local
// process) or --metrics (its Prometheus endpoint) — the server's CPU seconds
// per GiB and its peak resident memory. --s3-pid measures a local S3 server
// the same way, and the machine's CPU time used by none of the measured
// processes (other programs, the kernel) is reported as other_cpu_s:
//
//	tusgate-bench --endpoint http://127.0.0.1:8080/files/ \
//	    --token-url http://127.0.0.1:8080/dev/oidc/token \
//	    --uploads 1 --size 1GiB --pid $(pidof tusgate) --label tusgate
//	tusgate-bench --s3-direct --s3-bucket B --uploads 1 --size 1GiB --label direct
//	tusgate-bench --endpoint … --head-parts 2000 --head-part-size 5MiB --heads 1000
//
// --json prints the result as one JSON object on stdout (the summary line
// then goes to stderr). "tusgate-bench report FILE…" turns such objects,
// one per line, into a Markdown table of medians and ratios. The exit code
// is 1 if an upload failed, 2 for a usage or set-up error; an interrupted
// run cleans up and then ends by SIGINT.
//
// Every upload a run creates is deleted after the measurement (tus
// termination, or DeleteObject) unless --keep is given.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/tusgate/tusgate/config"
)

// Result is the outcome of one run; --json prints it.
type Result struct {
	Label       string   `json:"label"`
	Scenario    string   `json:"scenario"`
	Mode        string   `json:"mode"` // "tus", "s3-direct", "gate-direct" or "head"
	Uploads     int      `json:"uploads"`
	Size        int64    `json:"size"`
	Concurrency int      `json:"concurrency"`
	Bytes       int64    `json:"bytes"`   // bytes of the uploads that succeeded
	Seconds     float64  `json:"seconds"` // wall time of the measured part
	MBPerS      float64  `json:"mb_per_s"`
	UploadsPerS float64  `json:"uploads_per_s,omitempty"`
	P50ms       float64  `json:"p50_ms"` // of the data requests (see Requests); HEADs in head mode
	P99ms       float64  `json:"p99_ms"`
	Errors      int      `json:"errors"` // failed uploads (failed HEADs in head mode)
	ServerCPU   *float64 `json:"server_cpu_s"`
	CPUPerGiB   *float64 `json:"cpu_s_per_gib"`
	ServerSys   *float64 `json:"server_sys_s,omitempty"`  // of ServerCPU, the kernel's (system time); with --pid only
	SysPerGiB   *float64 `json:"sys_s_per_gib,omitempty"` // ServerSys per GiB
	PeakRSSMiB  *float64 `json:"peak_rss_mib"`
	PeakRSSFrom string   `json:"peak_rss_from,omitempty"` // VmHWM or sampled
	S3CPU       *float64 `json:"s3_cpu_s,omitempty"`
	S3CPUPerGiB *float64 `json:"s3_cpu_s_per_gib,omitempty"`
	ClientCPU   float64  `json:"client_cpu_s"`
	ClientSys   float64  `json:"client_sys_s"`  // of ClientCPU, the kernel's
	MachineCPU  float64  `json:"machine_cpu_s"` // busy CPU seconds of the whole machine during the run
	OtherCPU    float64  `json:"other_cpu_s"`   // machine minus server, S3 server and client

	// Head mode only.
	RequestsPerS  float64 `json:"requests_per_s,omitempty"`
	FillSeconds   float64 `json:"fill_seconds,omitempty"`
	ServerCPUms   float64 `json:"server_cpu_ms_per_request,omitempty"`
	HeadPartCount int     `json:"head_parts,omitempty"`
	Heads         int     `json:"heads,omitempty"`

	Requests   []KindStats `json:"requests"` // every kind of request, including whole uploads
	FirstError string      `json:"first_error,omitempty"`
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "report" {
		os.Exit(reportMain(os.Args[2:], os.Stdout, os.Stderr))
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	o, err := parseFlags(args, stderr)
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "tusgate-bench:", err)
		return 2
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	b, err := newBench(ctx, o)
	if err != nil {
		fmt.Fprintln(stderr, "tusgate-bench:", err)
		return 2
	}
	res, err := b.run(ctx, stderr)
	if err != nil {
		fmt.Fprintln(stderr, "tusgate-bench:", err)
		if ctx.Err() != nil {
			return interrupted(stop)
		}
		return 2
	}
	line := summary(res)
	if o.jsonOut {
		fmt.Fprintln(stderr, line)
		enc := json.NewEncoder(stdout)
		if err := enc.Encode(res); err != nil {
			fmt.Fprintln(stderr, "tusgate-bench:", err)
			return 2
		}
	} else {
		fmt.Fprintln(stdout, line)
	}
	if ctx.Err() != nil {
		return interrupted(stop)
	}
	if res.Errors > 0 {
		return 1
	}
	return 0
}

// interrupted ends the process the way an interrupted program should, after
// the run has cleaned up: killed by SIGINT again, with the default handler,
// so that a calling shell sees the interrupt and stops too (a shell takes a
// child that exits normally after SIGINT as having handled it). It returns
// 130 in case the signal does not end the process.
func interrupted(stopNotify func()) int {
	stopNotify()
	signal.Reset(os.Interrupt)
	_ = syscall.Kill(os.Getpid(), syscall.SIGINT)
	time.Sleep(time.Second)
	return 130
}

// bench is a configured run.
type bench struct {
	o      *options
	gen    *Generator
	lat    *Latencies
	tus    *TusClient
	direct *S3Direct
	gate   *GateDirect
	// objects deletes --gate-direct's objects after the run.
	objects *S3Direct
	server  ResourceSource // nil: not measured
	s3      ResourceSource
}

func newBench(ctx context.Context, o *options) (*bench, error) {
	b := &bench{o: o, gen: NewGenerator(o.seed), lat: &Latencies{}}
	conns := o.concurrency
	if o.s3Direct {
		conns = o.concurrency * o.partConcurrency
		client, err := newS3Client(ctx, conns, o.insecure)
		if err != nil {
			return nil, err
		}
		b.direct = &S3Direct{
			Client: client, Bucket: o.s3Bucket, PartSize: o.partSize, PartConcurrency: o.partConcurrency, Lat: b.lat,
			Prefix: fmt.Sprintf("tusgate-bench/%d/", time.Now().UnixNano()),
		}
	} else {
		if o.gateDirect {
			conns = o.concurrency * o.partConcurrency
		}
		hc := newHTTPClient(conns, o.insecure)
		ep, _ := url.Parse(o.endpoint)
		b.tus = &TusClient{HC: hc, Endpoint: ep, Token: o.token, Lat: b.lat, Checksum: o.checksum}
		if o.gateDirect {
			s3hc, err := newS3HTTPClient(conns, o.insecure)
			if err != nil {
				return nil, err
			}
			client, err := newS3Client(ctx, 4, o.insecure)
			if err != nil {
				return nil, err
			}
			b.objects = &S3Direct{Client: client, Bucket: o.s3Bucket}
			b.gate = &GateDirect{HC: hc, S3: s3hc, Base: ep, PartSize: o.partSize, PartConcurrency: o.partConcurrency, Lat: b.lat}
		}
		if o.tokenURL != "" {
			tctx, cancel := context.WithTimeout(ctx, 30*time.Second)
			defer cancel()
			tok, err := fetchDevToken(tctx, hc, o.tokenURL, o.tokenUser)
			if err != nil {
				return nil, fmt.Errorf("getting a token: %w", err)
			}
			b.tus.Token = tok
		}
		if b.gate != nil {
			b.gate.Token = b.tus.Token
		}
	}
	switch {
	case o.pid != 0:
		b.server = ProcSource{PID: o.pid}
	case o.metricsURL != "":
		b.server = MetricsSource{URL: o.metricsURL, Client: newHTTPClient(1, o.insecure)}
	}
	if o.s3pid != 0 {
		b.s3 = ProcSource{PID: o.s3pid}
	}
	return b, nil
}

// monitors starts the resource monitors; stop ends them and fills res.
func (b *bench) monitors(ctx context.Context) (stop func(res *Result) error, err error) {
	var server, s3 *Monitor
	if b.server != nil {
		interval := 100 * time.Millisecond
		if _, ok := b.server.(MetricsSource); ok {
			interval = 500 * time.Millisecond
		}
		if server, err = StartMonitor(ctx, b.server, interval); err != nil {
			return nil, err
		}
	}
	if b.s3 != nil {
		if s3, err = StartMonitor(ctx, b.s3, 100*time.Millisecond); err != nil {
			return nil, err
		}
	}
	clientBefore, clientSysBefore := selfCPU()
	machineBefore := machineCPU()
	return func(res *Result) error {
		cpu, sys := selfCPU()
		res.ClientCPU, res.ClientSys = cpu-clientBefore, sys-clientSysBefore
		machineAfter := machineCPU()
		gib := float64(res.Bytes) / float64(config.GiB)
		if server != nil {
			u, err := server.Stop(ctx)
			if err != nil {
				return err
			}
			rss := float64(u.PeakRSS) / float64(config.MiB)
			res.ServerCPU, res.PeakRSSMiB, res.PeakRSSFrom = &u.CPUSeconds, &rss, u.PeakFrom
			if u.SysSeconds >= 0 {
				res.ServerSys = &u.SysSeconds
			}
			if gib > 0 && res.Mode != "head" {
				v := u.CPUSeconds / gib
				res.CPUPerGiB = &v
				if res.ServerSys != nil {
					k := *res.ServerSys / gib
					res.SysPerGiB = &k
				}
			}
		}
		if s3 != nil {
			u, err := s3.Stop(ctx)
			if err != nil {
				return err
			}
			res.S3CPU = &u.CPUSeconds
			if gib > 0 && res.Mode != "head" {
				v := u.CPUSeconds / gib
				res.S3CPUPerGiB = &v
			}
		}
		if machineBefore >= 0 && machineAfter >= 0 {
			// What no measured process used: other programs on the machine
			// and the kernel, a sign of a disturbed measurement.
			res.MachineCPU = machineAfter - machineBefore
			other := res.MachineCPU - res.ClientCPU
			for _, p := range []*float64{res.ServerCPU, res.S3CPU} {
				if p != nil {
					other -= *p
				}
			}
			res.OtherCPU = max(other, 0)
		}
		return nil
	}, nil
}

func (b *bench) run(ctx context.Context, stderr io.Writer) (*Result, error) {
	o := b.o
	res := &Result{Label: o.label, Scenario: o.scenario, Mode: "tus", Uploads: o.uploads, Size: o.size, Concurrency: o.concurrency}
	if o.s3Direct {
		res.Mode = "s3-direct"
	}
	if o.gateDirect {
		res.Mode = "gate-direct"
	}
	if o.headParts > 0 {
		return b.runHead(ctx, res, stderr)
	}

	mctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	locs := make([]string, o.uploads)
	stopMon, err := b.monitors(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	errs := forEach(o.uploads, o.concurrency, func(i int) error {
		t0 := time.Now()
		var err error
		if b.direct != nil {
			err = b.direct.Upload(mctx, b.gen, b.direct.Key(i), int64(i)*o.size, o.size)
		} else if b.gate != nil {
			locs[i], err = b.gate.Upload(mctx, b.gen, fmt.Sprintf("bench-%06d.bin", i), int64(i)*o.size, o.size)
		} else {
			locs[i], err = b.tus.upload(mctx, b.gen, fmt.Sprintf("bench-%06d.bin", i), int64(i)*o.size, o.size, o.chunk, o.withData)
		}
		if err == nil {
			b.lat.Add("upload", time.Since(t0))
		}
		return err
	})
	res.Seconds = time.Since(start).Seconds()
	ok := 0
	for _, err := range errs {
		if err == nil {
			ok++
		}
	}
	res.Errors = o.uploads - ok
	res.Bytes = int64(ok) * o.size
	if err := stopMon(res); err != nil {
		return nil, err
	}
	res.MBPerS = float64(res.Bytes) / 1e6 / res.Seconds
	res.UploadsPerS = float64(ok) / res.Seconds
	data := b.lat.Of(kindPATCH, kindPOSTData)
	if b.direct != nil {
		data = b.lat.Of(kindPart)
	}
	if b.gate != nil {
		data = b.lat.Of(kindDirectPart)
	}
	res.P50ms, res.P99ms = Percentile(data, 50), Percentile(data, 99)
	res.Requests = b.lat.Stats()
	reportErrors(res, errs, stderr)

	if !o.keep {
		b.cleanup(ctx, locs, errs, stderr)
	}
	return res, nil
}

// runHead fills one upload with --head-parts parts and times --heads HEADs.
func (b *bench) runHead(ctx context.Context, res *Result, stderr io.Writer) (*Result, error) {
	o := b.o
	res.Mode, res.Uploads, res.HeadPartCount, res.Heads = "head", 1, o.headParts, o.heads
	fill := int64(o.headParts) * o.headPartSize
	res.Size = fill + 1 // never complete, so the parts stay listed
	mctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()

	loc, _, err := b.tus.Create(mctx, res.Size, "bench-head.bin", nil, 0)
	if err != nil {
		return nil, err
	}
	if !o.keep {
		defer func() {
			dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Minute)
			defer cancel()
			if err := b.tus.Delete(dctx, loc); err != nil {
				fmt.Fprintf(stderr, "tusgate-bench: warning: deleting %s: %v\n", loc, err)
			}
		}()
	}
	t0 := time.Now()
	off, err := b.tus.Patch(mctx, loc, 0, b.gen.Section(0, fill), fill, kindFill)
	if err == nil && off != fill {
		err = fmt.Errorf("%w: filling PATCH of %d bytes answered offset %d", errOffset, fill, off)
	}
	if err != nil {
		return nil, fmt.Errorf("filling the upload: %w", err)
	}
	res.FillSeconds = time.Since(t0).Seconds()
	res.Bytes = fill

	stopMon, err := b.monitors(ctx)
	if err != nil {
		return nil, err
	}
	start := time.Now()
	errs := forEach(o.heads, o.concurrency, func(int) error {
		got, err := b.tus.Head(mctx, loc)
		if err == nil && got != fill {
			err = fmt.Errorf("%w: HEAD answered offset %d, want %d", errOffset, got, fill)
		}
		return err
	})
	res.Seconds = time.Since(start).Seconds()
	for _, err := range errs {
		if err != nil {
			res.Errors++
		}
	}
	if err := stopMon(res); err != nil {
		return nil, err
	}
	res.RequestsPerS = float64(o.heads-res.Errors) / res.Seconds
	if res.ServerCPU != nil {
		res.ServerCPUms = *res.ServerCPU * 1000 / float64(o.heads)
	}
	heads := b.lat.Of(kindHEAD)
	res.P50ms, res.P99ms = Percentile(heads, 50), Percentile(heads, 99)
	res.Requests = b.lat.Stats()
	reportErrors(res, errs, stderr)
	return res, nil
}

// forEach calls fn(0) … fn(n-1) on up to c goroutines and returns the
// errors by index.
func forEach(n, c int, fn func(i int) error) []error {
	errs := make([]error, n)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(c, n) {
		wg.Go(func() {
			for i := range next {
				errs[i] = fn(i)
			}
		})
	}
	for i := range n {
		next <- i
	}
	close(next)
	wg.Wait()
	return errs
}

// summary is the one-line, human-readable form of a result.
func summary(r *Result) string {
	var s strings.Builder
	fmt.Fprintf(&s, "%s [%s]: ", r.Label, r.Scenario)
	if r.Mode == "head" {
		fmt.Fprintf(&s, "%d HEADs on an upload of %d parts in %.2f s = %.0f/s; HEAD p50 %.2f ms p99 %.2f ms; errors %d (fill %.1f s)",
			r.Heads, r.HeadPartCount, r.Seconds, r.RequestsPerS, r.P50ms, r.P99ms, r.Errors, r.FillSeconds)
		if r.ServerCPU != nil {
			fmt.Fprintf(&s, "; server CPU %.2f ms/HEAD, peak RSS %.0f MiB", r.ServerCPUms, *r.PeakRSSMiB)
		}
	} else {
		fmt.Fprintf(&s, "%d/%d uploads, %.1f MB in %.2f s = %.1f MB/s (%.1f uploads/s); data requests p50 %.1f ms p99 %.1f ms; errors %d",
			r.Uploads-r.Errors, r.Uploads, float64(r.Bytes)/1e6, r.Seconds, r.MBPerS, r.UploadsPerS, r.P50ms, r.P99ms, r.Errors)
		if r.ServerCPU != nil {
			fmt.Fprintf(&s, "; server CPU %.2f s", *r.ServerCPU)
			if r.ServerSys != nil {
				fmt.Fprintf(&s, " (%.2f s in the kernel)", *r.ServerSys)
			}
			if r.CPUPerGiB != nil {
				fmt.Fprintf(&s, " = %.2f s/GiB", *r.CPUPerGiB)
			}
			fmt.Fprintf(&s, ", peak RSS %.0f MiB (%s)", *r.PeakRSSMiB, r.PeakRSSFrom)
		}
	}
	if r.S3CPU != nil {
		fmt.Fprintf(&s, "; S3 server CPU %.2f s", *r.S3CPU)
	}
	fmt.Fprintf(&s, "; client CPU %.2f s (%.2f s in the kernel); other processes %.2f s", r.ClientCPU, r.ClientSys, r.OtherCPU)
	return s.String()
}
