package direct

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"sync"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/internal/storeerr"
)

// Kinds of record.
const (
	kindMultipart = "multipart"
	kindPut       = "put"
)

// record is what tusgate keeps about a direct upload while it is
// unfinished: who owns it (the key's folder, and the owner metadata), which
// multipart upload it is, and what its creator declared. Records never
// change once written, so instances may cache them.
type record struct {
	Version  int    `json:"v"`
	Kind     string `json:"kind"` // kindMultipart or kindPut
	Key      string `json:"key"`
	UploadID string `json:"upload_id,omitempty"`
	// Size is the declared size, or -1.
	Size int64 `json:"size"`
	// Meta is the validated metadata, with tusgate-owner and
	// tusgate-issuer.
	Meta    map[string]string `json:"metadata"`
	Created time.Time         `json:"created"`
	// Expires is when a single PUT's URL expires.
	Expires time.Time `json:"expires,omitzero"`
}

// recordLimit bounds what readRecord reads.
const recordLimit = 64 << 10

// recordRoot is the key prefix of all records.
func (s *Service) recordRoot() string { return s.o.Prefix + layout.InternalFolder + "/direct/" }

// recordKey is the key of the record of the upload with key <prefix><rel>.
func (s *Service) recordKey(rel string) string { return s.recordRoot() + rel }

// writeRecord stores rec for the upload at rel.
func (s *Service) writeRecord(ctx context.Context, rel string, rec *record) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	_, err = s.o.Writer.PutObject(ctx, &s3.PutObjectInput{
		Bucket: aws.String(s.o.Bucket), Key: aws.String(s.recordKey(rel)),
		Body: bytes.NewReader(b), ContentLength: aws.Int64(int64(len(b))), ContentType: aws.String("application/json"),
	})
	if err != nil {
		return fmt.Errorf("writing the record of %s: %w", rel, err)
	}
	s.records.put(rel, rec)
	return nil
}

// readRecord returns the record of the upload at rel, or nil if there is
// none.
func (s *Service) readRecord(ctx context.Context, rel string) (*record, error) {
	if rec := s.records.get(rel); rec != nil {
		return rec, nil
	}
	out, err := s.o.S3.GetObject(ctx, &s3.GetObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(s.recordKey(rel))})
	if err != nil {
		if storeerr.HTTPStatus(err) == http.StatusNotFound {
			return nil, nil
		}
		return nil, fmt.Errorf("reading the record of %s: %w", rel, err)
	}
	defer out.Body.Close()
	rec, err := decodeRecord(out.Body)
	if err != nil {
		return nil, fmt.Errorf("the record of %s: %w", rel, err)
	}
	s.records.put(rel, rec)
	return rec, nil
}

func decodeRecord(r io.Reader) (*record, error) {
	var rec record
	if err := json.NewDecoder(io.LimitReader(r, recordLimit)).Decode(&rec); err != nil {
		return nil, err
	}
	if rec.Version != 1 || (rec.Kind != kindMultipart && rec.Kind != kindPut) {
		return nil, fmt.Errorf("unknown record version %d or kind %q", rec.Version, rec.Kind)
	}
	return &rec, nil
}

// deleteRecord removes the record of the upload at rel.
func (s *Service) deleteRecord(ctx context.Context, rel string) error {
	s.records.drop(rel)
	_, err := s.o.S3.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: aws.String(s.o.Bucket), Key: aws.String(s.recordKey(rel))})
	if err != nil && storeerr.HTTPStatus(err) != http.StatusNotFound {
		return fmt.Errorf("deleting the record of %s: %w", rel, err)
	}
	return nil
}

// recordCache keeps recently used records. A cached record may outlive
// its upload (completed or aborted on another instance): a URL signed from
// it then fails at S3 (NoSuchUpload), and every other route asks S3
// anyway.
type recordCache struct {
	mu  sync.Mutex
	max int
	m   map[string]*record
}

func newRecordCache(max int) *recordCache {
	return &recordCache{max: max, m: make(map[string]*record)}
}

func (c *recordCache) get(rel string) *record {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[rel]
}

func (c *recordCache) put(rel string, rec *record) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.m) >= c.max {
		for k := range c.m { // an arbitrary entry: Go's map order is random
			delete(c.m, k)
			break
		}
	}
	c.m[rel] = rec
}

func (c *recordCache) drop(rel string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, rel)
}
