package direct

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
	"golang.org/x/sync/errgroup"

	"github.com/tusgate/tusgate/internal/expiry"
	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/webhook"
)

// Owns reports whether an event's upload ID is a direct upload's; the
// lifecycle then asks Prepare before delivering it.
func (s *Service) Owns(id string) bool { return IsDirectID(id) }

// Prepare checks, before each delivery, that what a direct upload's event
// reports has happened (events are stored before the act): a finished
// upload's object exists (its ETag and size go into the event), a
// terminated or expired upload's multipart upload is gone.
func (s *Service) Prepare(ctx context.Context, ev *webhook.Event) (webhook.Decision, string, error) {
	objectID, uploadID := layout.SplitID(ev.Upload.ID)
	key := s.o.Prefix + objectID
	switch ev.Type {
	case webhook.TypeFinished:
		head, err := s.o.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key)})
		if err == nil {
			ev.Upload.Storage.Type, ev.Upload.Storage.Bucket, ev.Upload.Storage.Key = "s3", s.o.Bucket, key
			ev.Upload.Storage.ETag = aws.ToString(head.ETag)
			ev.Upload.Size = aws.ToInt64(head.ContentLength)
			ev.Upload.Offset = ev.Upload.Size
			return webhook.Deliver, "", nil
		}
		if storeerr.HTTPStatus(err) != http.StatusNotFound {
			return webhook.Retry, "", err
		}
		age := s.clock.Now().Sub(ev.Time)
		if uploadID == "" {
			// A single PUT: its URL was signed when the event was stored.
			if age < s.o.URLExpiry+time.Minute {
				return webhook.Retry, "waiting for the browser's PUT", nil
			}
			return webhook.Drop, "the object was never uploaded", nil
		}
		gone, err := s.multipartGone(ctx, key, uploadID)
		if err != nil {
			return webhook.Retry, "", err
		}
		if !gone {
			return webhook.Retry, "the upload is not completed yet", nil
		}
		if age < time.Minute {
			return webhook.Retry, "the upload is being completed", nil
		}
		return webhook.Drop, "the upload's data is gone", nil
	case webhook.TypeTerminated, webhook.TypeExpired:
		if uploadID == "" {
			return webhook.Deliver, "", nil
		}
		gone, err := s.multipartGone(ctx, key, uploadID)
		if err != nil {
			return webhook.Retry, "", err
		}
		if !gone {
			return webhook.Retry, "the upload still exists", nil
		}
		_, err = s.o.S3.HeadObject(ctx, &s3.HeadObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key)})
		if err == nil {
			return webhook.Drop, "the upload was finished instead", nil
		}
		if storeerr.HTTPStatus(err) != http.StatusNotFound {
			return webhook.Retry, "", err
		}
	}
	return webhook.Deliver, "", nil
}

// multipartGone reports whether S3 no longer has the multipart upload.
func (s *Service) multipartGone(ctx context.Context, key, uploadID string) (bool, error) {
	_, err := s.o.S3.ListParts(ctx, &s3.ListPartsInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key), UploadId: aws.String(uploadID), MaxParts: aws.Int32(1)})
	switch {
	case err == nil:
		return false, nil
	case storeerr.HTTPStatus(err) == http.StatusNotFound:
		return true, nil
	}
	return false, err
}

// Usage counts an owner's unfinished uploads: tus uploads (Options.TusUsage)
// and direct ones, each with its declared size; a single PUT counts while
// its URL is valid.
func (s *Service) Usage() quota.Counter { return usage{s} }

type usage struct{ s *Service }

func (c usage) Usage(ctx context.Context, owner string) (quota.Usage, error) {
	s := c.s
	var u quota.Usage
	if s.o.TusUsage != nil {
		var err error
		if u, err = s.o.TusUsage.Usage(ctx, owner); err != nil {
			return u, err
		}
	}
	now := s.clock.Now()
	var rels []string
	err := s.eachRecord(ctx, owner+"/", func(rel string, _ time.Time) error {
		rels = append(rels, rel)
		return nil
	})
	if err != nil {
		return u, err
	}
	// Read side by side, as s3backend's Usage reads .info objects: the
	// owner's creations wait for this count.
	var mu sync.Mutex
	g, gctx := errgroup.WithContext(ctx)
	g.SetLimit(usageReads)
	for _, rel := range rels {
		g.Go(func() error {
			rec, err := s.readRecord(gctx, rel)
			if err != nil || rec == nil {
				return err
			}
			if rec.Kind == kindPut && now.After(rec.Expires) {
				return nil
			}
			mu.Lock()
			defer mu.Unlock()
			u.Uploads++
			u.Bytes += max(rec.Size, 0)
			return nil
		})
	}
	if err := g.Wait(); err != nil {
		return quota.Usage{}, err
	}
	return u, nil
}

// usageReads is how many records Usage reads at once.
const usageReads = 16

// eachRecord calls fn for every record under recordRoot()+sub, with the
// record's upload (its key below the prefix) and when it was written.
func (s *Service) eachRecord(ctx context.Context, sub string, fn func(rel string, written time.Time) error) error {
	root := s.recordRoot()
	p := s3.NewListObjectsV2Paginator(s.o.S3, &s3.ListObjectsV2Input{Bucket: aws.String(s.o.Bucket), Prefix: aws.String(root + sub)})
	for p.HasMorePages() {
		page, err := p.NextPage(ctx)
		if err != nil {
			return fmt.Errorf("listing direct-upload records: %w", err)
		}
		for _, o := range page.Contents {
			rel := strings.TrimPrefix(aws.ToString(o.Key), root)
			if _, name, ok := strings.Cut(rel, "/"); !ok || !nameRE.MatchString(name) {
				continue
			}
			if err := fn(rel, aws.ToTime(o.LastModified)); err != nil {
				return err
			}
		}
	}
	return nil
}

// Inventory lists direct uploads for the janitor (internal/expiry), which
// expires them after --upload-ttl without a new part, as tus uploads.
func (s *Service) Inventory() expiry.Inventory { return inventory{s} }

type inventory struct{ s *Service }

// Unfinished implements expiry.Inventory: every multipart direct upload
// with a record, active when its record or last part was written.
func (inv inventory) Unfinished(ctx context.Context, fn func(expiry.Upload) error) error {
	s := inv.s
	var errs []error
	err := s.eachRecord(ctx, "", func(rel string, written time.Time) error {
		rec, err := s.readRecord(ctx, rel)
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		if rec == nil || rec.Kind != kindMultipart {
			return nil
		}
		parts, err := s.allParts(ctx, rec.Key, rec.UploadID)
		if errors.Is(err, errNotFound) {
			return nil // gone: an orphan record
		}
		if err != nil {
			errs = append(errs, err)
			return nil
		}
		last := written
		var stored int64
		for _, p := range parts {
			stored += p.Size
			if p.LastModified.After(last) {
				last = p.LastModified
			}
		}
		info := s.info(rel, rec, rec.Size)
		info.Offset = stored
		return fn(expiry.Upload{ID: info.ID, Info: info, LastActivity: last})
	})
	return errors.Join(append(errs, err)...)
}

// Lookup implements expiry.Inventory: direct uploads have no tus URL
// whose HEAD would show when they expire, so none is looked up.
func (inventory) Lookup(context.Context, string) (expiry.Upload, bool, error) {
	return expiry.Upload{}, false, nil
}

// Orphans implements expiry.Inventory: records whose multipart upload is
// gone or whose single PUT's URL expired, and multipart uploads with a
// direct upload's key but no record (a crash between the two).
func (inv inventory) Orphans(ctx context.Context, before time.Time, fn func(expiry.Orphan) error) error {
	s := inv.s
	var errs []error
	err := s.eachRecord(ctx, "", func(rel string, written time.Time) error {
		if !written.Before(before) {
			return nil
		}
		rec, err := s.readRecord(ctx, rel)
		if err != nil || rec == nil {
			errs = append(errs, err)
			return nil
		}
		orphan := rec.Kind == kindPut && rec.Expires.Before(before)
		if rec.Kind == kindMultipart {
			if orphan, err = s.multipartGone(ctx, rec.Key, rec.UploadID); err != nil {
				errs = append(errs, err)
				return nil
			}
		}
		if !orphan {
			return nil
		}
		return fn(expiry.Orphan{Key: s.recordKey(rel), Since: written})
	})
	errs = append(errs, err)

	in := &s3.ListMultipartUploadsInput{Bucket: aws.String(s.o.Bucket), Prefix: aws.String(s.o.Prefix)}
	for {
		page, err := s.o.S3.ListMultipartUploads(ctx, in)
		if err != nil {
			errs = append(errs, fmt.Errorf("listing multipart uploads: %w", err))
			break
		}
		for _, mu := range page.Uploads {
			if err := inv.orphanUpload(ctx, mu, before, fn); err != nil {
				errs = append(errs, err)
			}
		}
		key := aws.ToString(page.NextKeyMarker)
		if !aws.ToBool(page.IsTruncated) || key == "" || key == aws.ToString(in.KeyMarker) {
			break
		}
		// Only the key marker: versitygw refuses upload-ID markers, and
		// tusgate makes one multipart upload per key.
		in.KeyMarker = aws.String(key)
	}
	return errors.Join(errs...)
}

// orphanUpload reports mu to fn if it is an old direct upload without a
// record.
func (inv inventory) orphanUpload(ctx context.Context, mu types.MultipartUpload, before time.Time, fn func(expiry.Orphan) error) error {
	s := inv.s
	key := aws.ToString(mu.Key)
	rel, ok := strings.CutPrefix(key, s.o.Prefix)
	if !ok || !IsDirectID(rel) || !aws.ToTime(mu.Initiated).Before(before) {
		return nil
	}
	rec, err := s.readRecord(ctx, rel)
	if err != nil || (rec != nil && rec.UploadID == aws.ToString(mu.UploadId)) {
		return err
	}
	return fn(expiry.Orphan{Key: key, MultipartID: aws.ToString(mu.UploadId), Since: aws.ToTime(mu.Initiated)})
}

// Remove implements expiry.Inventory: it aborts the multipart upload and
// deletes the record, unless the upload was completed meanwhile.
func (inv inventory) Remove(ctx context.Context, u expiry.Upload) error {
	s := inv.s
	rel, uploadID := layout.SplitID(u.ID)
	if !IsDirectID(rel) || uploadID == "" {
		return fmt.Errorf("not a direct upload's ID: %q", u.ID)
	}
	key := s.o.Prefix + rel
	_, err := s.o.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(key), UploadId: aws.String(uploadID)})
	switch {
	case err == nil:
		s.m.uploads.WithLabelValues("expired").Inc()
	case storeerr.HTTPStatus(err) != http.StatusNotFound:
		return fmt.Errorf("aborting the multipart upload of %s: %w", key, err)
	}
	// Not found: completed (or aborted) meanwhile; its record goes all the
	// same, and its upload.expired event is dropped (Prepare).
	return s.deleteRecord(ctx, rel)
}

// RemoveOrphan implements expiry.Inventory.
func (inv inventory) RemoveOrphan(ctx context.Context, o expiry.Orphan) error {
	s := inv.s
	if o.MultipartID != "" {
		_, err := s.o.S3.AbortMultipartUpload(ctx, &s3.AbortMultipartUploadInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(o.Key), UploadId: aws.String(o.MultipartID)})
		if err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
			return fmt.Errorf("aborting the multipart upload of %s: %w", o.Key, err)
		}
		return nil
	}
	rel, ok := strings.CutPrefix(o.Key, s.recordRoot())
	if !ok {
		return fmt.Errorf("not a direct-upload record: %q", o.Key)
	}
	return s.deleteRecord(ctx, rel)
}

// FinishedInfos implements expiry.Inventory: direct uploads keep nothing
// once finished.
func (inventory) FinishedInfos(context.Context, time.Time, func(string) error) error { return nil }

// RemoveInfo implements expiry.Inventory.
func (inventory) RemoveInfo(context.Context, string) error { return nil }

// apiErrorCode returns the S3 error code of err, or "".
func apiErrorCode(err error) string {
	var ae smithy.APIError
	if errors.As(err, &ae) {
		return ae.ErrorCode()
	}
	return ""
}
