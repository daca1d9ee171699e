package webhook

import (
	"bytes"
	"context"
	"crypto/md5"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/storeerr"
)

// S3API is the part of *s3.Client that S3Outbox uses.
type S3API interface {
	PutObject(ctx context.Context, in *s3.PutObjectInput, optFns ...func(*s3.Options)) (*s3.PutObjectOutput, error)
	GetObject(ctx context.Context, in *s3.GetObjectInput, optFns ...func(*s3.Options)) (*s3.GetObjectOutput, error)
	DeleteObject(ctx context.Context, in *s3.DeleteObjectInput, optFns ...func(*s3.Options)) (*s3.DeleteObjectOutput, error)
	ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, optFns ...func(*s3.Options)) (*s3.ListObjectsV2Output, error)
}

// S3Outbox is an Outbox in an S3 bucket, shared by all instances using the
// same Bucket and Prefix: records are the objects <Prefix>queue/<id>.json,
// dead letters <Prefix>dead/<id>.json. A claim is written into the record
// (Record.ClaimedUntil).
//
// Claims use conditional writes: Claim reads a record and writes it back
// claimed with If-Match set to the ETag it read, so of two instances
// claiming at once only one wins (the other gets 412 and skips the record);
// Put writes with If-None-Match: * so that it keeps a record already
// queued. versitygw (v1.8.0) and AWS S3 honour both. On a server that
// ignores them two instances may both deliver a record, which at-least-once
// delivery allows, and a re-Put restarts the record's retries.
//
// A GET can answer with an ETag that belongs to another version of the
// object than the body: versitygw (v1.8.0) does so while the object is
// being replaced, and a claim with that ETag would overwrite the claim
// being written. S3Outbox therefore skips a record whose ETag is not the
// MD5 of its body on servers whose ETags are MD5s, which it learns from
// the answers to its own writes. Before its first write it reads such a
// record a second time and claims it only if both answers agree, which
// narrows the window for a duplicate but does not close it.
//
// Claim lists the whole queue and reads every record whose listed ETag it
// has not seen yet or that may have become due, until it has max records;
// it remembers the ETag and due time of the records it read, so that a
// backlog of records waiting for their next attempt costs one listing per
// Claim, not one GET per record. Use a pointer; an S3Outbox must not be
// copied after first use.
type S3Outbox struct {
	Client S3API
	Bucket string
	Prefix string

	mu    sync.Mutex
	seen  map[string]s3Seen // record ID → its state when last read or written
	etags etagKind          // learnt from the answers to our writes
}

// etagKind says whether a server's ETags are the MD5s of the objects.
type etagKind int

const (
	etagsUnknown etagKind = iota
	etagsMD5
	etagsOther // SSE-KMS, for one
)

// s3Seen is what an S3Outbox last knew of a record.
type s3Seen struct {
	etag      string
	notBefore time.Time // not claimable before
}

// key returns the object key of record id in area (queueDir or deadDir).
func (o *S3Outbox) key(area, id string) string {
	return o.Prefix + area + "/" + id + ".json"
}

// remember notes the state of record id; an empty etag forgets it.
func (o *S3Outbox) remember(id, etag string, notBefore time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if etag == "" {
		delete(o.seen, id)
		return
	}
	if o.seen == nil {
		o.seen = map[string]s3Seen{}
	}
	o.seen[id] = s3Seen{etag, notBefore}
}

// recall returns what o knows of record id.
func (o *S3Outbox) recall(id string) (s3Seen, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	s, ok := o.seen[id]
	return s, ok
}

// Put implements Outbox; records already queued are kept as they are.
func (o *S3Outbox) Put(ctx context.Context, recs ...Record) error {
	bodies := make([][]byte, len(recs))
	for i, rec := range recs {
		b, err := encodeRecord(rec, time.Time{})
		if err != nil {
			return err
		}
		bodies[i] = b
	}
	errs := make([]error, len(recs))
	var wg sync.WaitGroup
	for i, rec := range recs {
		wg.Go(func() {
			out, err := o.put(ctx, o.key(queueDir, rec.ID), bodies[i], &s3.PutObjectInput{IfNoneMatch: aws.String("*")})
			switch {
			case conditionFailed(err):
				// Already queued: keep it.
			case err != nil:
				errs[i] = err
			default:
				o.remember(rec.ID, aws.ToString(out.ETag), rec.NextAttempt)
			}
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

// put writes body to key with the conditions of in.
func (o *S3Outbox) put(ctx context.Context, key string, body []byte, in *s3.PutObjectInput) (*s3.PutObjectOutput, error) {
	in.Bucket = aws.String(o.Bucket)
	in.Key = aws.String(key)
	in.Body = bytes.NewReader(body)
	in.ContentLength = aws.Int64(int64(len(body)))
	in.ContentType = aws.String("application/json")
	out, err := o.Client.PutObject(ctx, in)
	if err == nil && out.ETag != nil {
		kind := etagsOther
		if isMD5(*out.ETag, body) {
			kind = etagsMD5
		}
		o.mu.Lock()
		o.etags = kind
		o.mu.Unlock()
	}
	return out, err
}

// etagKind returns what o learnt of the server's ETags from its writes.
func (o *S3Outbox) etagKind() etagKind {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.etags
}

// Claim implements Outbox, in the order of record IDs.
func (o *S3Outbox) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Record, error) {
	if max <= 0 {
		return nil, nil
	}
	prefix := o.Prefix + queueDir + "/"
	pages := s3.NewListObjectsV2Paginator(o.Client, &s3.ListObjectsV2Input{
		Bucket: aws.String(o.Bucket),
		Prefix: aws.String(prefix),
	})
	var out []Record
	listed := map[string]bool{}
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return out, err
		}
		for _, obj := range page.Contents {
			if len(out) >= max {
				return out, nil
			}
			id, ok := strings.CutSuffix(strings.TrimPrefix(aws.ToString(obj.Key), prefix), ".json")
			if !ok || !validID(id, maxRecordIDLen) {
				continue // not ours
			}
			listed[id] = true
			if s, ok := o.recall(id); ok && s.etag == aws.ToString(obj.ETag) && s.notBefore.After(now) {
				continue // unchanged since we saw it, and not due
			}
			rec, ok, err := o.claim(ctx, id, now, lease)
			if err != nil {
				return out, err
			}
			if ok {
				out = append(out, rec)
			}
		}
	}
	// The whole queue was listed: forget records that have left it.
	o.mu.Lock()
	for id := range o.seen {
		if !listed[id] {
			delete(o.seen, id)
		}
	}
	o.mu.Unlock()
	return out, nil
}

// claim reads record id and claims it if it is due and not claimed.
func (o *S3Outbox) claim(ctx context.Context, id string, now time.Time, lease time.Duration) (Record, bool, error) {
	key := o.key(queueDir, id)
	b, etag, err := o.get(ctx, key)
	if notFound(err) {
		o.remember(id, "", time.Time{}) // deleted since the listing
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	if !isMD5(etag, b) {
		// Either the ETag belongs to another version than the body
		// (versitygw answers so while the object is being replaced, and
		// with that ETag our conditional write would overwrite the claim
		// being written), or the server's ETags are not MD5s (SSE-KMS).
		switch o.etagKind() {
		case etagsMD5:
			return Record{}, false, nil // being replaced; the next Claim sees it
		case etagsUnknown:
			// No write of ours told yet: only the latter is stable.
			b2, etag2, err := o.get(ctx, key)
			if err != nil || etag2 != etag || !bytes.Equal(b2, b) {
				return Record{}, false, nil
			}
		}
	}
	rec, err := decodeRecord(b, id)
	if err != nil {
		return Record{}, false, o.bury(ctx, id, b)
	}
	if nb := notBefore(rec); nb.After(now) {
		o.remember(id, etag, nb)
		return Record{}, false, nil
	}
	rec.ClaimedUntil = now.Add(lease)
	body, err := encodeRecord(rec, rec.ClaimedUntil)
	if err != nil {
		return Record{}, false, err
	}
	put, err := o.put(ctx, key, body, &s3.PutObjectInput{IfMatch: aws.String(etag)})
	if conditionFailed(err) || notFound(err) {
		// Changed since we read it: claimed by another instance,
		// rescheduled or deleted.
		o.remember(id, "", time.Time{})
		return Record{}, false, nil
	}
	if err != nil {
		return Record{}, false, err
	}
	o.remember(id, aws.ToString(put.ETag), rec.ClaimedUntil)
	return rec, true, nil
}

// get reads key and returns its body and ETag.
func (o *S3Outbox) get(ctx context.Context, key string) ([]byte, string, error) {
	got, err := o.Client.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(key)})
	if err != nil {
		return nil, "", err
	}
	defer got.Body.Close()
	b, err := io.ReadAll(got.Body)
	return b, aws.ToString(got.ETag), err
}

// isMD5 reports whether etag is the quoted hex MD5 of body, as S3 gives
// for objects written in one PUT without KMS encryption.
func isMD5(etag string, body []byte) bool {
	sum := md5.Sum(body)
	return strings.Trim(etag, `"`) == hex.EncodeToString(sum[:])
}

// Reschedule implements Outbox. If the record changed since this S3Outbox
// claimed it (its lease ended and another instance claimed, rescheduled or
// deleted it), Reschedule leaves it alone.
func (o *S3Outbox) Reschedule(ctx context.Context, rec Record) error {
	body, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	in := &s3.PutObjectInput{}
	if s, ok := o.recall(rec.ID); ok {
		in.IfMatch = aws.String(s.etag)
	}
	out, err := o.put(ctx, o.key(queueDir, rec.ID), body, in)
	if conditionFailed(err) || notFound(err) {
		o.remember(rec.ID, "", time.Time{})
		return nil
	}
	if err != nil {
		return err
	}
	o.remember(rec.ID, aws.ToString(out.ETag), rec.NextAttempt)
	return nil
}

// Delete implements Outbox.
func (o *S3Outbox) Delete(ctx context.Context, id string) error {
	if err := checkRecordID(id); err != nil {
		return err
	}
	o.remember(id, "", time.Time{})
	return o.delete(ctx, o.key(queueDir, id))
}

// delete removes key; a missing key is no error.
func (o *S3Outbox) delete(ctx context.Context, key string) error {
	_, err := o.Client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(o.Bucket), Key: aws.String(key)})
	if notFound(err) {
		return nil
	}
	return err
}

// Bury implements Outbox: it writes <Prefix>dead/<id>.json, then deletes
// the queued record.
func (o *S3Outbox) Bury(ctx context.Context, rec Record) error {
	body, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	return o.bury(ctx, rec.ID, body)
}

// bury stores body as the dead letter id and deletes the queued record.
func (o *S3Outbox) bury(ctx context.Context, id string, body []byte) error {
	o.remember(id, "", time.Time{})
	if _, err := o.put(ctx, o.key(deadDir, id), body, &s3.PutObjectInput{}); err != nil {
		return err
	}
	return o.delete(ctx, o.key(queueDir, id))
}

// conditionFailed reports whether a conditional write lost: 412, or 409
// when a concurrent conditional write was in progress.
func conditionFailed(err error) bool {
	s := storeerr.HTTPStatus(err)
	return s == http.StatusPreconditionFailed || s == http.StatusConflict
}

// notFound reports whether err is a 404.
func notFound(err error) bool { return storeerr.HTTPStatus(err) == http.StatusNotFound }
