package s3stream

import (
	"context"
	"errors"

	"github.com/aws/aws-sdk-go-v2/service/s3"
)

// lostS3 performs an operation and then reports an error, as when the
// response is lost (timeout, reset after S3 committed).
type lostS3 struct {
	*fakeS3
	lose func(op string, part int32) bool
}

var errLost = errors.New("response lost after S3 committed")

func (l *lostS3) UploadPart(ctx context.Context, in *s3.UploadPartInput, opts ...func(*s3.Options)) (*s3.UploadPartOutput, error) {
	out, err := l.fakeS3.UploadPart(ctx, in, opts...)
	if err == nil && l.lose != nil && l.lose("UploadPart", *in.PartNumber) {
		return nil, errLost
	}
	return out, err
}

func (l *lostS3) PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error) {
	out, err := l.fakeS3.PutObject(ctx, in, opts...)
	if err == nil && l.lose != nil && l.lose("PutObject", 0) {
		return nil, errLost
	}
	return out, err
}

func (l *lostS3) DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error) {
	out, err := l.fakeS3.DeleteObject(ctx, in, opts...)
	if err == nil && l.lose != nil && l.lose("DeleteObject", 0) {
		return nil, errLost
	}
	return out, err
}

func (l *lostS3) CompleteMultipartUpload(ctx context.Context, in *s3.CompleteMultipartUploadInput, opts ...func(*s3.Options)) (*s3.CompleteMultipartUploadOutput, error) {
	out, err := l.fakeS3.CompleteMultipartUpload(ctx, in, opts...)
	if err == nil && l.lose != nil && l.lose("CompleteMultipartUpload", 0) {
		return nil, errLost
	}
	return out, err
}
