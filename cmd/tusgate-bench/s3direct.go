package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	awsconfig "github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Direct uploads straight to S3 with the AWS SDK's plain multipart API
// (CreateMultipartUpload, UploadPart, CompleteMultipartUpload), without the
// transfer manager: the baseline a tus server in front of the same bucket
// is compared with.
type S3Direct struct {
	Client          *s3.Client
	Bucket          string
	Prefix          string // key prefix of this run's objects
	PartSize        int64
	PartConcurrency int // parts of one upload in flight at once
	Lat             *Latencies
}

// newS3Client builds a client from the SDK's default chain (credentials,
// AWS_REGION, AWS_ENDPOINT_URL_S3, AWS_CA_BUNDLE), with path-style
// addressing when an endpoint is set, as tusgate does.
func newS3Client(ctx context.Context, conns int, insecure bool) (*s3.Client, error) {
	cfg, err := awsconfig.LoadDefaultConfig(ctx)
	if err != nil {
		return nil, fmt.Errorf("AWS configuration: %w", err)
	}
	custom := os.Getenv("AWS_ENDPOINT_URL_S3") != "" || os.Getenv("AWS_ENDPOINT_URL") != ""
	if cfg.Region == "" && custom {
		cfg.Region = "us-east-1"
	}
	return s3.NewFromConfig(cfg, func(o *s3.Options) {
		o.UsePathStyle = custom
		hc, ok := o.HTTPClient.(*awshttp.BuildableClient)
		if !ok {
			hc = awshttp.NewBuildableClient()
		}
		o.HTTPClient = hc.WithTransportOptions(func(tr *http.Transport) {
			tr.MaxIdleConns = conns + 4
			tr.MaxIdleConnsPerHost = conns + 4
			if insecure {
				if tr.TLSClientConfig == nil {
					tr.TLSClientConfig = &tls.Config{}
				}
				tr.TLSClientConfig.InsecureSkipVerify = true
			}
		})
	}), nil
}

// Key returns the object key of upload i.
func (d *S3Direct) Key(i int) string { return fmt.Sprintf("%s%06d", d.Prefix, i) }

// Upload stores size bytes of the generator's stream from streamOff as
// object key, aborting the multipart upload on failure.
func (d *S3Direct) Upload(ctx context.Context, gen *Generator, key string, streamOff, size int64) error {
	cr, err := d.Client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: aws.String(d.Bucket), Key: aws.String(key), ContentType: aws.String("application/octet-stream"),
	})
	if err != nil {
		return fmt.Errorf("CreateMultipartUpload: %w", err)
	}
	nparts := int((size + d.PartSize - 1) / d.PartSize)
	if nparts == 0 {
		nparts = 1 // an empty object is one empty part
	}
	parts := make([]types.CompletedPart, nparts)
	errs := make([]error, nparts)
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(max(d.PartConcurrency, 1), nparts) {
		wg.Go(func() {
			for p := range next {
				off := int64(p) * d.PartSize
				n := min(d.PartSize, size-off)
				start := time.Now()
				out, err := d.Client.UploadPart(ctx, &s3.UploadPartInput{
					Bucket: aws.String(d.Bucket), Key: aws.String(key), UploadId: cr.UploadId,
					PartNumber: aws.Int32(int32(p + 1)), ContentLength: aws.Int64(n),
					Body: gen.Section(streamOff+off, n),
				})
				if err != nil {
					errs[p] = fmt.Errorf("UploadPart %d: %w", p+1, err)
					continue
				}
				d.Lat.Add(kindPart, time.Since(start))
				parts[p] = types.CompletedPart{PartNumber: aws.Int32(int32(p + 1)), ETag: out.ETag}
			}
		})
	}
	for p := range nparts {
		next <- p
	}
	close(next)
	wg.Wait()
	err = errors.Join(errs...)
	if err == nil {
		_, err = d.Client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: aws.String(d.Bucket), Key: aws.String(key), UploadId: cr.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
		if err != nil {
			err = fmt.Errorf("CompleteMultipartUpload: %w", err)
		}
	}
	if err != nil {
		actx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		_, _ = d.Client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{
			Bucket: aws.String(d.Bucket), Key: aws.String(key), UploadId: cr.UploadId,
		})
	}
	return err
}

// Delete removes an object of this run.
func (d *S3Direct) Delete(ctx context.Context, key string) error {
	_, err := d.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(d.Bucket), Key: aws.String(key)})
	return err
}
