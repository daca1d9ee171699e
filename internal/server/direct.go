package server

import (
	"context"
	"net/http"
	"net/url"
	"time"

	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tusgate/tusgate/internal/backend"
	"github.com/tusgate/tusgate/internal/direct"
	"github.com/tusgate/tusgate/internal/s3backend"
)

// setupDirect builds the direct-upload service (--direct-uploads) on the S3
// backend, and makes quotas count its uploads too.
func (s *Server) setupDirect(b backend.Backend, reg prometheus.Registerer) error {
	cfg := s.cfg
	sb, ok := b.(*s3backend.Backend)
	if !cfg.DirectUploads || !ok {
		return nil
	}
	svc, err := direct.New(direct.Options{
		S3: directS3{sb.Client, sb}, Writer: directWriter{sb.Objects}, Presign: s3.NewPresignClient(sb.Client),
		Bucket: sb.Bucket, Prefix: sb.Prefix(),
		URLExpiry: cfg.DirectURLExpiry, MaxSize: cfg.MaxSize, MaxMetadataSize: int(cfg.MaxMetadataSize),
		Limits: s.limits, TusUsage: b.Usage(), Quota: s.quota,
		StorageClass: cfg.S3.StorageClass, SSE: cfg.S3.SSE, SSEKMSKeyID: cfg.S3.SSEKMSKeyID,
		PreFinish: cfg.Lifecycle.PreFinishURL != "",
		Log:       s.log, Registerer: reg,
	})
	if err != nil {
		return err
	}
	s.direct = svc
	s.quota.Counter = svc.Usage()
	if u, err := url.Parse(sb.Endpoint); err == nil && u.Scheme == "http" && u.Host != "" {
		// The example pages' CSP allows HTTPS; a plain-HTTP S3 needs naming.
		s.directOrigin = "http://" + u.Host
	}
	s.checkBucketCORS(sb)
	return nil
}

// directWriter creates direct uploads' multipart uploads as the S3
// backend does (metadata, storage class, encryption), but without its
// full-object CRC32: the parts come from browsers.
type directWriter struct{ *s3backend.GuardedClient }

func (w directWriter) CreateMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	return w.GuardedClient.CreateMultipartUpload(s3backend.WithoutChecksum(ctx), in, opts...)
}

// directRoutes serves /s3/ with the same CORS and authentication as the
// upload routes.
func (s *Server) directRoutes(mux *http.ServeMux, authenticate func(http.Handler) http.Handler) {
	if s.direct == nil {
		return
	}
	s.direct.UseLifecycle(s.lifecycle)
	mux.Handle("/s3/", chain(s.direct.Handler(),
		func(h http.Handler) http.Handler { return cors(s.cfg.CORSOrigins, s.cfg.BehindProxy, h) },
		authenticate,
	))
}

// checkBucketCORS warns when the bucket's CORS rules keep browsers from
// uploading straight to it. It runs before tusgate listens, and gives up
// after a few seconds (S3 may not answer yet: readiness reports that).
func (s *Server) checkBucketCORS(sb *s3backend.Backend) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	problems, ok := direct.CheckCORS(ctx, sb.Client, sb.Bucket, s.cfg.CORSOrigins)
	for _, p := range problems {
		if ok {
			s.log.Warn("direct uploads: "+p, "bucket", sb.Bucket)
		} else {
			s.log.Info("direct uploads: "+p, "bucket", sb.Bucket)
		}
	}
	if ok && len(problems) == 0 {
		s.log.Info("direct uploads: the bucket's CORS rules let browsers upload", "bucket", sb.Bucket, "origins", s.cfg.CORSOrigins)
	}
}

// directS3 is the direct uploads' S3 client: the backend's, listing
// multipart uploads as the backend does (also on MinIO).
type directS3 struct {
	*s3.Client
	b *s3backend.Backend
}

func (c directS3) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	return c.b.ListMultipartUploads(ctx, in, opts...)
}
