package metadata

import (
	"context"
	"mime"

	"github.com/tus/tusd/v2/pkg/handler"
)

type uploadKey struct{}

// WithUpload returns ctx carrying the validated metadata of the upload a
// store call is about. tusd's S3 store passes S3 only a lossy copy ("?"
// for every non-ASCII character); the S3 client reads the original here.
func WithUpload(ctx context.Context, meta handler.MetaData) context.Context {
	return context.WithValue(ctx, uploadKey{}, meta)
}

// FromContext returns the metadata stored by WithUpload, or nil.
func FromContext(ctx context.Context) handler.MetaData {
	m, _ := ctx.Value(uploadKey{}).(handler.MetaData)
	return m
}

// ContentDisposition returns the Content-Disposition of a finished upload:
// attachment, with the (already sanitised) file name encoded per RFC 6266
// and RFC 5987 when it is not plain ASCII. "" without a file name.
func ContentDisposition(meta handler.MetaData) string {
	name := meta["filename"]
	if name == "" {
		return ""
	}
	return mime.FormatMediaType("attachment", map[string]string{"filename": name})
}
