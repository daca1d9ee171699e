package expiry

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"regexp"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"

	"github.com/tusgate/tusgate/internal/layout"

	"github.com/tusgate/tusgate/internal/storeerr"
)

// S3API is the part of *s3.Client that S3 uses.
type S3API interface {
	ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error)
	ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, opts ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	HeadObject(ctx context.Context, in *s3.HeadObjectInput, opts ...func(*s3.Options)) (*s3.HeadObjectOutput, error)
	PutObject(ctx context.Context, in *s3.PutObjectInput, opts ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, opts ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	DeleteObjects(ctx context.Context, in *s3.DeleteObjectsInput, opts ...func(*s3.Options)) (*s3.DeleteObjectsOutput, error)
	AbortMultipartUpload(ctx context.Context, in *s3.AbortMultipartUploadInput, opts ...func(*s3.Options)) (*s3.AbortMultipartUploadOutput, error)
}

// S3 implements Inventory and Tombstones for tusd's s3store: upload data in
// <prefix>/<objectId> (a multipart upload until finished), its FileInfo in
// <prefix>/<objectId>.info, an incomplete tail part in
// <prefix>/<objectId>.part. Tombstones are <prefix>/.tusgate/expired/<objectId>
// (the upload ID without "+multipartId", so that Get works for any ID form),
// holding the expiry time.
type S3 struct {
	Client S3API
	Bucket string
	Prefix string // as tusd's ObjectPrefix (surrounding "/" are ignored)
}

// root is the key prefix of uploads: "<prefix>/", or "" without prefix.
func (s *S3) root() string {
	p := strings.Trim(s.Prefix, "/")
	if p == "" {
		return ""
	}
	return p + "/"
}

// objectID returns the object ID of key, and false for keys outside the
// prefix or in a "." folder (tusgate's own files).
func (s *S3) objectID(key string) (string, bool) {
	id, ok := strings.CutPrefix(key, s.root())
	return id, ok && validRel(id)
}

func (s *S3) tombstoneRoot() string { return s.root() + layout.InternalFolder + "/expired/" }

// Unfinished implements Inventory: every in-progress multipart upload under
// the prefix that has a .info naming it.
func (s *S3) Unfinished(ctx context.Context, fn func(Upload) error) error {
	var errs errList
	err := s.multipartUploads(ctx, func(mu types.MultipartUpload, objectID string) error {
		u, ok, err := s.unfinished(ctx, mu, objectID)
		if err != nil {
			errs.add(err)
			return nil
		}
		if !ok {
			return nil
		}
		return fn(u)
	})
	return errors.Join(err, errs.err())
}

// unfinished reads what the janitor needs to know about one multipart
// upload; false if it has no .info or went away meanwhile.
func (s *S3) unfinished(ctx context.Context, mu types.MultipartUpload, objectID string) (Upload, bool, error) {
	key, mpID := aws.ToString(mu.Key), aws.ToString(mu.UploadId)
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: aws.String(key + ".info")})
	if err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			return Upload{}, false, nil // an orphan, or being created or terminated
		}
		return Upload{}, false, fmt.Errorf("reading %s.info: %w", key, err)
	}
	info, err := layout.DecodeInfo(out.Body)
	out.Body.Close()
	if err != nil {
		return Upload{}, false, fmt.Errorf("%s.info: %w", key, err)
	}
	if want := objectID + "+" + mpID; info.ID != want {
		// Not expired nor aborted: someone else's doing, for a human to look at.
		return Upload{}, false, fmt.Errorf("%s.info names upload %q, not the multipart upload %q; left alone", key, info.ID, want)
	}
	last := aws.ToTime(mu.Initiated)
	last = latest(last, aws.ToTime(out.LastModified))

	var offset int64
	in := &s3.ListPartsInput{Bucket: &s.Bucket, Key: &key, UploadId: &mpID}
	for {
		page, err := s.Client.ListParts(ctx, in)
		if err != nil {
			if storeerr.HTTPStatus(err) == http.StatusNotFound {
				return Upload{}, false, nil // finished or aborted meanwhile
			}
			return Upload{}, false, fmt.Errorf("listing parts of %s: %w", key, err)
		}
		for _, p := range page.Parts {
			offset += aws.ToInt64(p.Size)
			last = latest(last, aws.ToTime(p.LastModified))
		}
		if !aws.ToBool(page.IsTruncated) {
			break
		}
		next := aws.ToString(page.NextPartNumberMarker)
		if next == "" || next == aws.ToString(in.PartNumberMarker) {
			return Upload{}, false, fmt.Errorf("listing parts of %s: truncated answer without a new marker", key)
		}
		in.PartNumberMarker = &next
	}

	head, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: aws.String(key + ".part")})
	switch {
	case err == nil:
		offset += aws.ToInt64(head.ContentLength)
		last = latest(last, aws.ToTime(head.LastModified))
	case storeerr.HTTPStatus(err) != http.StatusNotFound:
		return Upload{}, false, fmt.Errorf("reading %s.part: %w", key, err)
	}

	info.Offset = offset
	return Upload{ID: info.ID, Info: info, LastActivity: last}, true, nil
}

// Lookup implements Inventory: the upload's multipart upload is read as
// Unfinished reads each (when it was initiated aside: its .info is written
// after that).
func (s *S3) Lookup(ctx context.Context, id string) (Upload, bool, error) {
	objectID, multipartID := layout.SplitID(id)
	if multipartID == "" || !validRel(objectID) {
		return Upload{}, false, nil
	}
	mu := types.MultipartUpload{Key: aws.String(s.root() + objectID), UploadId: aws.String(multipartID)}
	return s.unfinished(ctx, mu, objectID)
}

// multipartUploads calls fn for every in-progress multipart upload under
// the prefix, except those in "." folders.
func (s *S3) multipartUploads(ctx context.Context, fn func(mu types.MultipartUpload, objectID string) error) error {
	in := &s3.ListMultipartUploadsInput{Bucket: &s.Bucket, Prefix: aws.String(s.root())}
	for {
		page, err := s.Client.ListMultipartUploads(ctx, in)
		if err != nil && in.UploadIdMarker != nil && apiErrorCode(err) == "InvalidArgument" {
			// versitygw (1.8) rejects every upload-id marker: continue
			// after the key marker alone, which skips further multipart
			// uploads of that key (tusd makes one per key).
			in.UploadIdMarker = nil
			page, err = s.Client.ListMultipartUploads(ctx, in)
		}
		if err != nil {
			return fmt.Errorf("listing multipart uploads: %w", err)
		}
		for _, mu := range page.Uploads {
			id, ok := s.objectID(aws.ToString(mu.Key))
			if !ok || aws.ToString(mu.UploadId) == "" {
				continue
			}
			if err := fn(mu, id); err != nil {
				return err
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return nil
		}
		key, upload := aws.ToString(page.NextKeyMarker), aws.ToString(page.NextUploadIdMarker)
		if key == "" || (key == aws.ToString(in.KeyMarker) && upload == aws.ToString(in.UploadIdMarker)) {
			return errors.New("listing multipart uploads: truncated answer without new markers")
		}
		in.KeyMarker, in.UploadIdMarker = &key, &upload
	}
}

// uploadObjectID matches the object IDs tusgate creates: an owner folder
// (26 base32 characters) and 32 hex digits, or 32 hex digits alone
// without authentication. Orphans are only looked for among them.
var uploadObjectID = regexp.MustCompile(`^([a-z2-7]{26}/)?[0-9a-f]{32}$`)

// Orphans implements Inventory: multipart uploads under the prefix whose
// keys are tusgate's, initiated before before, without .info.
func (s *S3) Orphans(ctx context.Context, before time.Time, fn func(Orphan) error) error {
	var errs errList
	err := s.multipartUploads(ctx, func(mu types.MultipartUpload, objectID string) error {
		if !uploadObjectID.MatchString(objectID) {
			return nil // not tusgate's: the bucket may be shared
		}
		since := aws.ToTime(mu.Initiated)
		if since.IsZero() || !since.Before(before) {
			return nil
		}
		key := aws.ToString(mu.Key)
		_, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: aws.String(key + ".info")})
		switch {
		case err == nil:
			return nil
		case storeerr.HTTPStatus(err) != http.StatusNotFound:
			errs.add(fmt.Errorf("reading %s.info: %w", key, err))
			return nil
		}
		return fn(Orphan{Key: key, MultipartID: aws.ToString(mu.UploadId), Since: since})
	})
	return errors.Join(err, errs.err())
}

// FinishedInfos implements Inventory: every <key>.info under the prefix
// next to an object <key>, with the upload ID read from the .info.
//
// S3 lists keys in order, so <key> comes before <key>.info, and every key
// in between starts with <key>: a stack of the keys that are prefixes of
// the current one finds the pairs in bounded memory. A server listing out
// of order makes us miss pairs, which only keeps .info objects longer.
func (s *S3) FinishedInfos(ctx context.Context, before time.Time, fn func(id string) error) error {
	var (
		errs  errList
		stack []listed
		root  = s.root()
	)
	in := &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: aws.String(root)}
	for {
		page, err := s.Client.ListObjectsV2(ctx, in)
		if err != nil {
			return errors.Join(fmt.Errorf("listing objects: %w", err), errs.err())
		}
		for _, o := range page.Contents {
			rel, ok := s.objectID(aws.ToString(o.Key))
			if !ok {
				continue
			}
			for len(stack) > 0 && !strings.HasPrefix(rel, stack[len(stack)-1].rel) {
				stack = stack[:len(stack)-1]
			}
			objectID, isInfo := strings.CutSuffix(rel, ".info")
			stack = append(stack, listed{rel, aws.ToTime(o.LastModified)})
			if !isInfo {
				continue
			}
			// The object's time is when the upload finished; the .info
			// was written at creation.
			finished, ok := find(stack, objectID)
			if !ok || !finished.Before(before) {
				continue
			}
			id, err := s.readID(ctx, objectID)
			if err != nil {
				errs.add(err)
				continue
			}
			if id == "" {
				continue
			}
			if err := fn(id); err != nil {
				return errors.Join(err, errs.err())
			}
		}
		if !aws.ToBool(page.IsTruncated) {
			return errs.err()
		}
		next := aws.ToString(page.NextContinuationToken)
		if next == "" {
			return errors.Join(errors.New("listing objects: truncated answer without continuation token"), errs.err())
		}
		in.ContinuationToken = &next
	}
}

// listed is a key seen in a listing, with its LastModified.
type listed struct {
	rel string
	mod time.Time
}

// find returns the time of key s in the stack.
func find(stack []listed, s string) (time.Time, bool) {
	for i := len(stack) - 1; i >= 0; i-- {
		if stack[i].rel == s {
			return stack[i].mod, true
		}
	}
	return time.Time{}, false
}

// readID returns the upload ID in objectID's .info, or "" if it is gone.
func (s *S3) readID(ctx context.Context, objectID string) (string, error) {
	key := s.root() + objectID + ".info"
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			return "", nil
		}
		return "", fmt.Errorf("reading %s: %w", key, err)
	}
	defer out.Body.Close()
	info, err := layout.DecodeInfo(out.Body)
	if err != nil {
		return "", fmt.Errorf("%s: %w", key, err)
	}
	if got, _ := layout.SplitID(info.ID); got != objectID {
		return "", fmt.Errorf("%s names upload %q; left alone", key, info.ID)
	}
	return info.ID, nil
}

// Remove implements Inventory. It aborts the multipart upload first: if the
// upload was completed meanwhile (the multipart upload is gone and the
// object exists), it leaves everything in place and returns an error.
func (s *S3) Remove(ctx context.Context, u Upload) error {
	objectID, mpID := layout.SplitID(u.ID)
	if !validRel(objectID) || mpID == "" {
		return fmt.Errorf("not an s3store upload ID: %q", u.ID)
	}
	key := s.root() + objectID
	_, err := s.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.Bucket, Key: &key, UploadId: &mpID})
	if err != nil {
		if storeerr.HTTPStatus(err) != http.StatusNotFound {
			return fmt.Errorf("aborting multipart upload of %s: %w", key, err)
		}
		_, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: &key})
		if err == nil {
			return fmt.Errorf("upload %s was finished meanwhile; left alone", u.ID)
		}
		if storeerr.HTTPStatus(err) != http.StatusNotFound {
			return fmt.Errorf("reading %s: %w", key, err)
		}
	}
	// The .info goes last: while it exists the upload does, so a request
	// that finds it gone finds nothing else of it either.
	if err := s.deleteKeys(ctx, []string{key, key + ".part"}); err != nil {
		return err
	}
	return s.deleteKeys(ctx, []string{key + ".info"})
}

// deleteKeys deletes up to 1000 keys; missing keys are not errors.
func (s *S3) deleteKeys(ctx context.Context, keys []string) error {
	objs := make([]types.ObjectIdentifier, len(keys))
	for i := range keys {
		objs[i] = types.ObjectIdentifier{Key: &keys[i]}
	}
	out, err := s.Client.DeleteObjects(ctx, &s3.DeleteObjectsInput{
		Bucket: &s.Bucket,
		Delete: &types.Delete{Objects: objs, Quiet: aws.Bool(true)},
	})
	if err != nil {
		return fmt.Errorf("deleting %s: %w", strings.Join(keys, ", "), err)
	}
	var errs []error
	for _, e := range out.Errors {
		if aws.ToString(e.Code) != "NoSuchKey" {
			errs = append(errs, fmt.Errorf("deleting %s: %s: %s", aws.ToString(e.Key), aws.ToString(e.Code), aws.ToString(e.Message)))
		}
	}
	return errors.Join(errs...)
}

// RemoveOrphan implements Inventory: it aborts the multipart upload.
func (s *S3) RemoveOrphan(ctx context.Context, o Orphan) error {
	_, err := s.Client.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: &s.Bucket, Key: &o.Key, UploadId: &o.MultipartID})
	if err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
		return fmt.Errorf("aborting multipart upload of %s: %w", o.Key, err)
	}
	return nil
}

// RemoveInfo implements Inventory. It refuses if the upload's object does
// not exist (the upload is not finished).
func (s *S3) RemoveInfo(ctx context.Context, id string) error {
	objectID, _ := layout.SplitID(id)
	if !validRel(objectID) {
		return fmt.Errorf("not an s3store upload ID: %q", id)
	}
	key := s.root() + objectID
	if _, err := s.Client.HeadObject(ctx, &s3.HeadObjectInput{Bucket: &s.Bucket, Key: &key}); err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			return fmt.Errorf("upload %s is not finished; its .info is kept", id)
		}
		return fmt.Errorf("reading %s: %w", key, err)
	}
	if _, err := s.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.Bucket, Key: aws.String(key + ".info")}); err != nil {
		return fmt.Errorf("deleting %s.info: %w", key, err)
	}
	return nil
}

// tombstoneKey returns the key of id's tombstone, and false for IDs that
// cannot be uploads.
func (s *S3) tombstoneKey(id string) (string, bool) {
	objectID, _ := layout.SplitID(id)
	return s.tombstoneRoot() + objectID, validRel(objectID)
}

// Put implements Tombstones.
func (s *S3) Put(ctx context.Context, id string, expired time.Time) error {
	key, ok := s.tombstoneKey(id)
	if !ok {
		return fmt.Errorf("no tombstone for invalid upload ID %q", id)
	}
	body := []byte(expired.UTC().Format(time.RFC3339Nano))
	_, err := s.Client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.Bucket, Key: &key, Body: bytes.NewReader(body),
		ContentLength: aws.Int64(int64(len(body))), ContentType: aws.String("text/plain"),
	})
	if err != nil {
		return fmt.Errorf("writing tombstone %s: %w", key, err)
	}
	return nil
}

// Get implements Tombstones. IDs that cannot be uploads have no tombstone.
func (s *S3) Get(ctx context.Context, id string) (time.Time, bool, error) {
	key, ok := s.tombstoneKey(id)
	if !ok {
		return time.Time{}, false, nil
	}
	out, err := s.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: &s.Bucket, Key: &key})
	if err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			return time.Time{}, false, nil
		}
		return time.Time{}, false, fmt.Errorf("reading tombstone %s: %w", key, err)
	}
	defer out.Body.Close()
	b, err := io.ReadAll(io.LimitReader(out.Body, 256))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("reading tombstone %s: %w", key, err)
	}
	t, err := time.Parse(time.RFC3339Nano, strings.TrimSpace(string(b)))
	if err != nil {
		return time.Time{}, false, fmt.Errorf("tombstone %s: %w", key, err)
	}
	return t, true, nil
}

// Sweep implements Tombstones, going by the objects' LastModified.
func (s *S3) Sweep(ctx context.Context, before time.Time) (int, error) {
	n := 0
	in := &s3.ListObjectsV2Input{Bucket: &s.Bucket, Prefix: aws.String(s.tombstoneRoot())}
	for {
		page, err := s.Client.ListObjectsV2(ctx, in)
		if err != nil {
			return n, fmt.Errorf("listing tombstones: %w", err)
		}
		var old []string
		for _, o := range page.Contents {
			if aws.ToTime(o.LastModified).Before(before) {
				old = append(old, aws.ToString(o.Key))
			}
		}
		if len(old) > 0 {
			if err := s.deleteKeys(ctx, old); err != nil {
				return n, err
			}
			n += len(old)
		}
		if !aws.ToBool(page.IsTruncated) {
			return n, nil
		}
		next := aws.ToString(page.NextContinuationToken)
		if next == "" {
			return n, errors.New("listing tombstones: truncated answer without continuation token")
		}
		in.ContinuationToken = &next
	}
}

// apiErrorCode returns the S3 error code of err, or "".
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}

var (
	_ Inventory  = (*S3)(nil)
	_ Tombstones = (*S3)(nil)
)
