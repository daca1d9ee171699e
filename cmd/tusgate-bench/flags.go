package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"strings"
	"time"

	"github.com/tusgate/tusgate/config"
)

// sizeFlag is a flag.Value for byte sizes with units (64KiB, 1GiB).
type sizeFlag struct{ p *int64 }

func (f sizeFlag) String() string {
	if f.p == nil {
		return ""
	}
	return config.FormatSize(*f.p)
}

func (f sizeFlag) Set(s string) error {
	n, err := config.ParseSize(s)
	if err != nil {
		return err
	}
	*f.p = n
	return nil
}

// options are the command-line settings of a run.
type options struct {
	endpoint, token, tokenURL, tokenUser string
	uploads, concurrency                 int
	size, chunk                          int64
	withData                             bool
	checksum                             string
	pid, s3pid                           int
	metricsURL                           string
	s3Direct, gateDirect                 bool
	s3Bucket                             string
	partSize                             int64
	partConcurrency                      int
	headParts, heads                     int
	headPartSize                         int64
	insecure, jsonOut, keep              bool
	label, scenario                      string
	timeout                              time.Duration
	seed                                 uint64
}

func parseFlags(args []string, stderr io.Writer) (*options, error) {
	o := &options{size: 64 << 20, partSize: 50 << 20, headPartSize: 5 << 20}
	fs := flag.NewFlagSet("tusgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.StringVar(&o.endpoint, "endpoint", "", "tus creation URL, e.g. http://127.0.0.1:8080/files/")
	fs.StringVar(&o.token, "token", "", "bearer token sent with every tus request")
	fs.StringVar(&o.tokenURL, "token-url", "", "get a token from tusgate's development issuer (--dev): POST username=… to this URL, e.g. http://127.0.0.1:8080/dev/oidc/token")
	fs.StringVar(&o.tokenUser, "token-user", "bench", "user name for --token-url")
	fs.IntVar(&o.uploads, "uploads", 1, "number of uploads")
	fs.Var(sizeFlag{&o.size}, "size", "bytes per upload (64KiB, 1GiB, …)")
	fs.IntVar(&o.concurrency, "concurrency", 1, "uploads in flight at once (HEADs in flight with --head-parts)")
	fs.Var(sizeFlag{&o.chunk}, "chunk", "bytes per PATCH; 0 sends each upload in one PATCH")
	fs.BoolVar(&o.withData, "creation-with-upload", false, "send the first chunk (all of it with --chunk 0) in the creation POST")
	fs.StringVar(&o.checksum, "checksum", "", "send Upload-Checksum with this algorithm (sha256, crc32, ...) on every PATCH (tus checksum extension; the client hashes each body before sending it)")
	fs.IntVar(&o.pid, "pid", 0, "local server process: CPU from /proc/PID/stat, peak RSS from /proc/PID/status VmHWM (reset at the start via clear_refs)")
	fs.StringVar(&o.metricsURL, "metrics", "", "server's Prometheus endpoint: CPU from process_cpu_seconds_total, peak RSS sampled from process_resident_memory_bytes (instead of --pid)")
	fs.IntVar(&o.s3pid, "s3-pid", 0, "local S3 server process (e.g. versitygw), measured like --pid and reported separately")
	fs.BoolVar(&o.s3Direct, "s3-direct", false, "upload straight to S3 with CreateMultipartUpload/UploadPart/CompleteMultipartUpload (default AWS credential chain, AWS_ENDPOINT_URL_S3, AWS_CA_BUNDLE)")
	fs.BoolVar(&o.gateDirect, "gate-direct", false, "upload through tusgate's direct-upload routes (--direct-uploads) at --endpoint's origin: tusgate signs each part, the parts go straight to S3 (AWS_CA_BUNDLE is trusted); --part-size and --part-concurrency apply")
	fs.StringVar(&o.s3Bucket, "s3-bucket", "", "bucket for --s3-direct")
	fs.Var(sizeFlag{&o.partSize}, "part-size", "part size for --s3-direct (tusd's default preferred part size)")
	fs.IntVar(&o.partConcurrency, "part-concurrency", 5, "parts of one upload in flight at once with --s3-direct (the SDK transfer manager's default)")
	fs.IntVar(&o.headParts, "head-parts", 0, "HEAD mode: fill one upload with this many parts of --head-part-size (the server must use that part size), then time --heads HEADs")
	fs.Var(sizeFlag{&o.headPartSize}, "head-part-size", "part size of the server in HEAD mode")
	fs.IntVar(&o.heads, "heads", 1000, "HEAD requests in HEAD mode")
	fs.BoolVar(&o.insecure, "insecure-tls", false, "do not verify TLS certificates (tus endpoint and S3)")
	fs.StringVar(&o.label, "label", "", "name of the target in the output (default: the endpoint's host, or s3-direct)")
	fs.StringVar(&o.scenario, "scenario", "", "name of the scenario in the output (default: from the settings, e.g. 8x128MiB c8)")
	fs.BoolVar(&o.jsonOut, "json", false, "print the result as a JSON object on stdout (the summary line goes to stderr)")
	fs.BoolVar(&o.keep, "keep", false, "do not delete the uploads after the run")
	fs.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up on the measured part after this long")
	fs.Uint64Var(&o.seed, "seed", 1, "seed of the generated data")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	var problems []string
	switch {
	case o.s3Direct && o.s3Bucket == "":
		problems = append(problems, "--s3-direct needs --s3-bucket")
	case o.s3Direct && o.headParts > 0:
		problems = append(problems, "--s3-direct and --head-parts exclude each other")
	case o.gateDirect && (o.s3Direct || o.headParts > 0):
		problems = append(problems, "--gate-direct excludes --s3-direct and --head-parts")
	case o.gateDirect && o.s3Bucket == "" && !o.keep:
		problems = append(problems, "--gate-direct needs --s3-bucket (tusgate's bucket, to delete the objects after the run) or --keep")
	case !o.s3Direct && o.endpoint == "":
		problems = append(problems, "--endpoint is required (or --s3-direct)")
	}
	if o.uploads < 1 || o.concurrency < 1 || o.partConcurrency < 1 || o.heads < 1 {
		problems = append(problems, "--uploads, --concurrency, --part-concurrency and --heads must be at least 1")
	}
	if o.size < 1 || o.partSize < 1 || o.headPartSize < 1 || o.chunk < 0 {
		problems = append(problems, "--size, --part-size and --head-part-size must be positive, --chunk not negative")
	}
	if o.pid != 0 && o.metricsURL != "" {
		problems = append(problems, "--pid and --metrics exclude each other")
	}
	if o.token != "" && o.tokenURL != "" {
		problems = append(problems, "--token and --token-url exclude each other")
	}
	if o.endpoint != "" {
		if u, err := url.Parse(o.endpoint); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			problems = append(problems, fmt.Sprintf("--endpoint %q is not an http(s) URL", o.endpoint))
		}
	}
	if len(problems) > 0 {
		return nil, errors.New(strings.Join(problems, "; "))
	}
	if o.label == "" {
		if o.s3Direct {
			o.label = "s3-direct"
		} else {
			u, _ := url.Parse(o.endpoint)
			o.label = u.Host
		}
	}
	if o.scenario == "" {
		o.scenario = defaultScenario(o)
	}
	return o, nil
}

// defaultScenario names a run's settings, e.g. "8x128MiB c8 chunk 16MiB".
func defaultScenario(o *options) string {
	if o.headParts > 0 {
		return fmt.Sprintf("HEAD, %d parts of %s", o.headParts, config.FormatSize(o.headPartSize))
	}
	s := fmt.Sprintf("%dx%s c%d", o.uploads, config.FormatSize(o.size), o.concurrency)
	if o.chunk > 0 && o.chunk < o.size {
		s += " chunk " + config.FormatSize(o.chunk)
	}
	if o.withData {
		s += " creation-with-upload"
	}
	return s
}
