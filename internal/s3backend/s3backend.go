// Package s3backend keeps uploads in an S3-compatible bucket (see
// internal/backend): it builds the AWS SDK client from tusgate's settings
// and the SDK's default credential chain, tells a misconfiguration from an
// outage at start-up, and puts together tusgate's S3 store
// (internal/s3stream over tusd's s3store) with what the rest of tusgate
// needs beside it: assembly checks, quota usage, the janitor's inventory
// and tombstones, and the webhook outbox, all in the bucket.
package s3backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/tusgate/tusgate/config"
	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/s3stream"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/tlsbatch"
)

// Backend is a configured S3 client and store.
type Backend struct {
	Client *s3.Client
	// Objects is the client the store writes through: it adds the
	// configured encryption and object settings. tusgate's own objects
	// (webhook outbox, tombstones) are written through it too.
	Objects *GuardedClient
	Store   s3store.S3Store
	// Writer is the store tusd uses: Store with tusgate's write path.
	Writer   *s3stream.Store
	Bucket   string
	Endpoint string // for messages; "" means AWS's own
	TempDir  *TempDir

	// exactKeyListing: the server's ListMultipartUploads takes a prefix
	// as an exact key (MinIO; see ListMultipartUploads). Set by Check.
	exactKeyListing atomic.Bool
}

// Options configure New.
type Options struct {
	// Settings are the --s3-* flags.
	Settings config.S3
	// MaxSize is the largest upload (--max-size): uploads of unknown
	// length are planned to reach it.
	MaxSize int64
	// ObjectSHA256 computes every upload's SHA-256 as it arrives
	// (--object-sha256).
	ObjectSHA256 bool
	// TempDir is where small partial uploads are joined (--s3-temp-dir,
	// or <data-dir>/s3-tmp).
	TempDir string
	// LookupEnv reads the environment (for AWS_ENDPOINT_URL_S3 and
	// friends, which the SDK also reads).
	LookupEnv  func(string) (string, bool)
	Log        *slog.Logger
	Registerer prometheus.Registerer
}

// New builds the S3 client and store. A definite mistake in the settings
// is a *backend.MisconfigError; New does not ask S3 anything (see Check).
func New(ctx context.Context, o Options) (*Backend, error) {
	s, lookupEnv, log := o.Settings, o.LookupEnv, o.Log
	var opts []func(*awsconfig.LoadOptions) error
	if s.Region != "" {
		opts = append(opts, awsconfig.WithRegion(s.Region))
	}
	awsCfg, err := awsconfig.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, &backend.MisconfigError{Msg: fmt.Sprintf("AWS configuration: %v (check AWS_* environment variables, AWS_CA_BUNDLE and ~/.aws/config)", err)}
	}

	awsCfg.HTTPClient = tuneTransport(awsCfg.HTTPClient)
	awsCfg.Retryer = retryConflicts(awsCfg.Retryer)

	endpoint := s.Endpoint
	if endpoint == "" {
		endpoint = firstEnv(lookupEnv, "AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL")
	}
	if awsCfg.Region == "" {
		if endpoint == "" {
			return nil, &backend.MisconfigError{Msg: "no AWS region: set --s3-region (TUSGATE_S3_REGION) or AWS_REGION to the bucket's region"}
		}
		awsCfg.Region = "us-east-1"
	}

	client := s3.NewFromConfig(awsCfg, func(o *s3.Options) {
		if s.Endpoint != "" {
			o.BaseEndpoint = aws.String(s.Endpoint)
		}
		// Custom endpoints (MinIO, versitygw, R2 …) rarely have wildcard DNS
		// for virtual-hosted buckets, so they get path-style addressing.
		o.UsePathStyle = s.PathStyle || endpoint != ""
	})

	tmp, err := OpenTempDir(o.TempDir, log)
	if err != nil {
		return nil, err
	}

	prefix := strings.Trim(s.ObjectPrefix, "/")
	if prefix != "" {
		prefix += "/"
	}
	objects := newGuardedClient(client, log, objectSettings{StorageClass: s.StorageClass, SSE: s.SSE, SSEKMSKeyID: s.SSEKMSKeyID, Prefix: prefix})
	store := s3store.New(s.Bucket, objects)
	store.ObjectPrefix = strings.Trim(s.ObjectPrefix, "/")
	store.PreferredPartSize = s.PartSize
	store.MinPartSize = s.MinPartSize
	store.TemporaryDirectory = tmp.Path

	writer := &s3stream.Store{
		Inner:   store,
		Objects: objects,
		Parts:   client,
		// The SDK can stream an unseekable body only over TLS; over plain
		// HTTP it must hash the payload before sending.
		Stream:       endpoint == "" || strings.HasPrefix(strings.ToLower(endpoint), "https://"),
		Parallel:     s.ParallelParts,
		MaxSize:      o.MaxSize,
		ObjectSHA256: o.ObjectSHA256,
		Buffers:      s3stream.NewBuffers(s.BufferMemory),
		Log:          log,
	}
	if o.Registerer != nil {
		store.RegisterMetrics(o.Registerer)
		writer.Metrics = s3stream.NewMetrics(o.Registerer, writer.Buffers)
	}
	return &Backend{Client: client, Objects: objects, Store: store, Writer: writer, Bucket: s.Bucket, Endpoint: endpoint, TempDir: tmp}, nil
}

// idleConnsPerHost is how many idle connections to S3 the client keeps. The
// SDK's default, 10, is fewer than the requests a busy gateway has in
// flight (every upload streams its PATCH over a connection of its own and
// sends up to --s3-parallel-parts parts at once, and small uploads make
// several requests each): every connection beyond it was closed after its
// request, and a later request paid for a new TLS handshake, in the
// gateway and in S3. In the 64 KiB benchmark tusgate opened 935 connections
// where tusd opened 237; with 128 kept, 256 uploads at once still spent a
// tenth of tusgate's CPU on handshakes. An idle connection holds a file
// descriptor and its buffers (tens of KiB: up to about 30 MiB for 512)
// until the transport's idle timeout (90 s) or S3 closes it.
const idleConnsPerHost = 512

// tuneTransport adapts the SDK's HTTP client to a gateway: its HTTPS
// connections send each chunk of a request body in one system call rather
// than one per TLS record (see internal/tlsbatch), and it keeps up to
// idleConnsPerHost idle connections. It keeps the transport's TLS settings
// (AWS_CA_BUNDLE among them), dialer and timeouts; proxied connections,
// which the transport wraps in TLS itself, are left as they are. A client
// that is not the SDK's default kind is kept unchanged.
func tuneTransport(c aws.HTTPClient) aws.HTTPClient {
	if c == nil {
		c = awshttp.NewBuildableClient()
	}
	bc, ok := c.(*awshttp.BuildableClient)
	if !ok {
		return c
	}
	// On the dialer, not by wrapping DialContext: s3.NewFromConfig replaces
	// the transport's DialContext with that of a copy of the dialer (for
	// any defaults mode but legacy), which keeps Control.
	bc = bc.WithDialerOptions(func(d *net.Dialer) { d.Control = resetOnClose(d.Control) })
	return bc.WithTransportOptions(func(tr *http.Transport) {
		d := &tlsbatch.Dialer{Config: tr.TLSClientConfig, DialContext: tr.DialContext, HandshakeTimeout: tr.TLSHandshakeTimeout}
		tr.DialTLSContext = d.DialTLSContext
		tr.MaxIdleConnsPerHost = max(tr.MaxIdleConnsPerHost, idleConnsPerHost)
		if tr.MaxIdleConns != 0 {
			tr.MaxIdleConns = max(tr.MaxIdleConns, idleConnsPerHost)
		}
	})
}

// resetOnClose makes the dialer's sockets end with a TCP reset, not a FIN,
// when they are closed: by tusgate when a part's body is cut off, and by
// the kernel when tusgate is killed (SO_LINGER with a zero timeout, set
// after control, the dialer's own Control if any).
//
// A part streams to S3 over a connection that may end in the middle of the
// part. After a FIN at a TLS record boundary (or a close_notify, which
// tlsbatch.Conn therefore does not send), Go's crypto/tls reports a clean
// io.EOF, and versitygw v1.8.0 then stored the truncated part, zero-filled
// to its declared length: a resumed upload kept the zeros
// (TestKilledMidUploadThenResume failed about one run in ten). A reset is
// an error to every server, which then drops the part. Closing an idle
// connection this way costs S3 nothing but a log line. Connections through
// an HTTP proxy (HTTPS_PROXY) reset only the hop to the proxy.
func resetOnClose(control func(network, address string, c syscall.RawConn) error) func(network, address string, c syscall.RawConn) error {
	return func(network, address string, c syscall.RawConn) error {
		if control != nil {
			if err := control(network, address, c); err != nil {
				return err
			}
		}
		if err := setLingerZero(c); err != nil {
			return fmt.Errorf("setting SO_LINGER on the S3 connection: %w", err)
		}
		return nil
	}
}

func firstEnv(lookupEnv func(string) (string, bool), names ...string) string {
	for _, n := range names {
		if v, ok := lookupEnv(n); ok && v != "" {
			return v
		}
	}
	return ""
}

// Check asks S3 whether the bucket is usable (HeadBucket). It returns a
// *backend.MisconfigError for answers retrying cannot fix (no such bucket,
// access denied, no credentials, wrong region) and a plain error for
// outages. It implements backend.Backend's probe too.
func (b *Backend) Check(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := b.Client.HeadBucket(ctx, &s3.HeadBucketInput{Bucket: aws.String(b.Bucket)})
	if err == nil {
		b.exactKeyListing.Store(listsByExactKey(out.ResultMetadata))
		return nil
	}
	where := "AWS S3"
	if b.Endpoint != "" {
		where = b.Endpoint
	}
	if isCredentialsError(err) {
		return &backend.MisconfigError{Msg: fmt.Sprintf("no usable AWS credentials for S3: %s; set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, AWS_PROFILE, or run with an IAM role", rootCause(err))}
	}
	switch status := storeerr.HTTPStatus(err); status {
	case http.StatusNotFound:
		return &backend.MisconfigError{Msg: fmt.Sprintf("--s3-bucket %q does not exist at %s: create the bucket or fix the name", b.Bucket, where)}
	case http.StatusForbidden, http.StatusUnauthorized:
		return &backend.MisconfigError{Msg: fmt.Sprintf("%s refused access to --s3-bucket %q (HTTP %d): check the credentials (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, profile or role) and that the IAM policy allows s3:ListBucket on the bucket and object access under it (see docs/s3.md)", where, b.Bucket, status)}
	case http.StatusMovedPermanently, http.StatusBadRequest:
		return &backend.MisconfigError{Msg: fmt.Sprintf("%s rejected requests for --s3-bucket %q (HTTP %d), which usually means a wrong region: set --s3-region to the bucket's region", where, b.Bucket, status)}
	}
	return fmt.Errorf("S3 at %s is unreachable or failing: %s", where, rootCause(err))
}

func isCredentialsError(err error) bool {
	var apiErr smithy.APIError
	if errors.As(err, &apiErr) {
		return false // S3 answered: credentials were found
	}
	msg := err.Error()
	return strings.Contains(msg, "failed to retrieve credentials") ||
		strings.Contains(msg, "failed to refresh cached credentials") ||
		strings.Contains(msg, "no EC2 IMDS role found")
}

// rootCause returns the innermost error message, which is the readable one
// in the SDK's long chains of wrapping.
func rootCause(err error) string {
	for {
		next := errors.Unwrap(err)
		if next == nil {
			return err.Error()
		}
		err = next
	}
}
