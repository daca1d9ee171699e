package s3backend

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/webhook"
)

// fullObject decides whether CreateMultipartUpload asks S3 for a
// FULL_OBJECT CRC32: a checksum of the finished object's bytes that S3
// validates at CompleteMultipartUpload (internal/s3stream sends the value,
// combined from the parts' CRC32s) and keeps with the object.
//
// CRC32 because every part already carries one: tusgate's aws-chunked
// trailer on streamed parts, the x-amz-checksum-crc32 header on buffered
// ones, the SDK's default elsewhere. So S3 has each part's CRC32 to combine,
// and nothing is computed per byte that was not computed before.
//
// It is not asked for:
//   - with AWS_REQUEST_CHECKSUM_CALCULATION=when_required, where parts
//     carry no checksum (S3 would refuse them, or compute its own);
//   - once S3 refused the request (InvalidArgument, InvalidRequest,
//     NotImplemented) and the same CreateMultipartUpload without it
//     succeeded: an S3 without full-object checksums. Parts keep their
//     CRC32s, which S3 checks, as before. That is logged once (Warn) and
//     reported by Note, for /readyz on the metrics listener.
type fullObject struct {
	log *slog.Logger

	mu   sync.Mutex
	off  bool   // not asked for
	note string // why not, or what S3 did not confirm
}

func newFullObject(client *s3.Client, log *slog.Logger) *fullObject {
	f := &fullObject{log: log}
	if client.Options().RequestChecksumCalculation == aws.RequestChecksumCalculationWhenRequired {
		f.off = true
		f.note = "finished objects get no full-object checksum: AWS_REQUEST_CHECKSUM_CALCULATION=when_required (parts carry no checksum)"
		log.Info("S3 request checksums are off (AWS_REQUEST_CHECKSUM_CALCULATION=when_required): finished objects get no full-object checksum")
	}
	return f
}

// asking reports whether CreateMultipartUpload asks for the checksum.
func (f *fullObject) asking() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return !f.off
}

// Note says, for /readyz's details, why finished objects lack a
// full-object checksum; "" while they get one.
func (f *fullObject) Note() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.note
}

// refused records that S3 refused the request with err (and accepted the
// upload without it): from now on it is not asked for.
func (f *fullObject) refused(ctx context.Context, err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return
	}
	f.off = true
	f.note = "finished objects get no full-object checksum: S3 refused FULL_OBJECT CRC32 at CreateMultipartUpload (" + rootCause(err) + "); each part keeps its CRC32"
	f.log.WarnContext(ctx, "S3 refused a full-object CRC32 checksum for multipart uploads; finished objects get none from now on, each part keeps its CRC32 (until restart)",
		"error", err.Error())
}

// unconfirmed records that S3 accepted the request but did not echo it:
// it may have ignored it. Completions go by what S3's part listing reports
// (internal/s3stream), so nothing breaks; the operator learns once.
func (f *fullObject) unconfirmed(ctx context.Context, out *s3.CreateMultipartUploadOutput) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.note != "" {
		return
	}
	f.note = fmt.Sprintf("S3 did not confirm FULL_OBJECT CRC32 at CreateMultipartUpload (it answered algorithm %q, type %q): finished objects may get no full-object checksum", out.ChecksumAlgorithm, out.ChecksumType)
	f.log.WarnContext(ctx, "S3 did not confirm the full-object CRC32 checksum tusgate asked for; finished objects may get none",
		"algorithm", string(out.ChecksumAlgorithm), "type", string(out.ChecksumType))
}

// plainKey marks a context whose multipart uploads ask for no checksum.
type plainKey struct{}

// WithoutChecksum returns ctx in which CreateMultipartUpload asks for no
// full-object checksum: for multipart uploads whose parts tusgate does not
// send (direct uploads: browsers send a part's SHA-256 or nothing, and S3
// refuses parts whose checksum is not the upload's algorithm).
func WithoutChecksum(ctx context.Context) context.Context {
	return context.WithValue(ctx, plainKey{}, true)
}

// createMultipartUpload creates a multipart upload asking for a FULL_OBJECT
// CRC32, unless that is off; on a refusal of the checksum it creates it
// without and turns the checksum off.
func (c *GuardedClient) createMultipartUpload(ctx context.Context, in *s3.CreateMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CreateMultipartUploadOutput, error) {
	if plain, _ := ctx.Value(plainKey{}).(bool); plain || !c.sums.asking() {
		return c.Client.CreateMultipartUpload(ctx, in, opts...)
	}
	asked := *in
	asked.ChecksumAlgorithm, asked.ChecksumType = types.ChecksumAlgorithmCrc32, types.ChecksumTypeFullObject
	out, err := c.Client.CreateMultipartUpload(ctx, &asked, opts...)
	switch {
	case err == nil:
		if out.ChecksumAlgorithm != types.ChecksumAlgorithmCrc32 || out.ChecksumType != types.ChecksumTypeFullObject {
			c.sums.unconfirmed(ctx, out)
		}
		return out, nil
	case !refusesChecksums(err):
		return nil, err
	}
	out, plainErr := c.Client.CreateMultipartUpload(ctx, in, opts...)
	if plainErr != nil {
		// Not the checksum, then: S3 refuses this upload either way.
		return nil, plainErr
	}
	c.sums.refused(ctx, err)
	return out, nil
}

// refusesChecksums reports whether err may be an S3 refusing the checksum
// headers of a CreateMultipartUpload. It may be something else in the
// request too: the same request without them tells.
func refusesChecksums(err error) bool {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		switch ae.ErrorCode() {
		case "InvalidArgument", "InvalidRequest", "NotImplemented", "InvalidChecksum":
			return true
		}
	}
	return storeerr.HTTPStatus(err) == http.StatusNotImplemented
}

// objectChecksum is the checksum a HeadObject with ChecksumMode ENABLED
// reports, or nil: CRC32 first (what tusgate asks for), then the others
// S3 may keep (versitygw gives multipart objects a FULL_OBJECT CRC64NVME
// of its own, AWS a COMPOSITE CRC32 to those created without one).
func objectChecksum(out *s3.HeadObjectOutput) *webhook.Checksum {
	for _, c := range []struct {
		algo  string
		value *string
	}{
		{"crc32", out.ChecksumCRC32},
		{"crc32c", out.ChecksumCRC32C},
		{"crc64nvme", out.ChecksumCRC64NVME},
		{"sha256", out.ChecksumSHA256},
		{"sha1", out.ChecksumSHA1},
	} {
		v := aws.ToString(c.value)
		if v == "" {
			continue
		}
		typ := string(out.ChecksumType)
		if typ == "" && strings.Contains(v, "-") {
			typ = string(types.ChecksumTypeComposite) // "<checksum of checksums>-<parts>"
		}
		return &webhook.Checksum{Algorithm: c.algo, Value: v, Type: typ}
	}
	return nil
}

// headObject is a HeadObject of the finished object key that asks for its
// checksum. An S3 that refuses the question (400 or 501: a HEAD answer has
// no error code) is asked again without it, so that the events that need
// the object's ETag never wait for a checksum S3 cannot give.
func (b *Backend) headObject(ctx context.Context, key string) (*s3.HeadObjectOutput, error) {
	in := &s3.HeadObjectInput{Bucket: aws.String(b.Bucket), Key: aws.String(key), ChecksumMode: types.ChecksumModeEnabled}
	out, err := b.Client.HeadObject(ctx, in)
	if status := storeerr.HTTPStatus(err); status == http.StatusBadRequest || status == http.StatusNotImplemented {
		in.ChecksumMode = ""
		return b.Client.HeadObject(ctx, in)
	}
	return out, err
}

// ObjectChecksum is the full-object checksum of the finished upload id, as
// S3 reports it; ok is false when S3 keeps none (or a composite one, which
// no local file's checksum can be compared with). For the HEAD answers of
// finished uploads (internal/server).
func (b *Backend) ObjectChecksum(ctx context.Context, id string) (sum webhook.Checksum, ok bool, err error) {
	objectID, _ := layout.SplitID(id)
	out, err := b.headObject(ctx, b.Prefix()+objectID)
	if err != nil {
		return sum, false, err
	}
	c := objectChecksum(out)
	if c == nil || c.Type != string(types.ChecksumTypeFullObject) {
		return sum, false, nil
	}
	return *c, true, nil
}

// ChecksumNote says why finished objects get no full-object checksum, or
// "" while they do (for /readyz on the metrics listener).
func (b *Backend) ChecksumNote() string { return b.Objects.sums.Note() }
