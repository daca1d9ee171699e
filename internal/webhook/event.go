// Package webhook sends signed JSON webhooks for upload lifecycle events,
// delivered at least once, even across a SIGKILL of the process.
//
// # Outbox
//
// Dispatcher.Enqueue writes one Record per target URL to an Outbox (S3,
// Redis or a local directory) and returns only once the outbox has stored
// them durably, so the HTTP request that caused the event is answered only
// after that. Dispatcher.Run claims due records, POSTs them, deletes the
// delivered ones and reschedules the others with exponential back-off;
// records that still fail once they are older than Options.MaxAge are buried
// in the outbox's dead-letter area for an operator to inspect.
//
// A claim is a lease (Options.Lease): a record claimed by an instance that
// dies becomes claimable again when the lease ends, so a receiver may see
// the same event twice. Receivers must deduplicate by Event.ID, which is
// stable across retries (and, with StableEventID, across instances that
// detect the same event).
//
// # Signatures
//
// Every delivery carries the headers Tusgate-Event-Id, Tusgate-Event-Type,
// Tusgate-Timestamp (unix seconds of the attempt) and Tusgate-Signature
// ("v1=" + hex HMAC-SHA256 of "<timestamp>.<body>", see Sign). Receivers
// check them with Verify, which also rejects replays of old deliveries.
// Deliveries never carry Authorization or Cookie headers.
package webhook

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Event types.
const (
	TypeCreated    = "upload.created"
	TypeFinished   = "upload.finished"
	TypeTerminated = "upload.terminated"
	TypeExpired    = "upload.expired"
	// TypePreFinish is a synchronous approval request, sent with Call, never
	// through the outbox.
	TypePreFinish = "upload.pre-finish"
)

// Event is the JSON body of a webhook.
type Event struct {
	// ID is unique and stable across retries; [A-Za-z0-9_-]{1,100}.
	ID     string    `json:"id"`
	Type   string    `json:"type"`
	Time   time.Time `json:"time"` // when it happened
	Upload Upload    `json:"upload"`
}

// Upload describes the upload an Event is about.
type Upload struct {
	ID             string            `json:"id"`
	Owner          *Owner            `json:"owner,omitempty"`
	Size           int64             `json:"size"`
	SizeIsDeferred bool              `json:"size_is_deferred,omitempty"`
	Offset         int64             `json:"offset"`
	IsPartial      bool              `json:"is_partial,omitempty"`
	IsFinal        bool              `json:"is_final,omitempty"`
	PartialUploads []string          `json:"partial_uploads,omitempty"`
	MetaData       map[string]string `json:"metadata"` // marshalled as {} when nil
	Storage        Storage           `json:"storage"`
	Expires        *time.Time        `json:"expires,omitempty"`
}

// MarshalJSON marshals u with a nil MetaData written as {}, not null, so
// that receivers can always treat "metadata" as an object.
func (u Upload) MarshalJSON() ([]byte, error) {
	type plain Upload // without this method
	if u.MetaData == nil {
		u.MetaData = map[string]string{}
	}
	return json.Marshal(plain(u))
}

// Owner identifies who created an upload: the issuer and subject of the
// token that authorised the creation.
type Owner struct {
	Issuer  string `json:"issuer"`
	Subject string `json:"subject"`
}

// Storage says where an upload's bytes are.
type Storage struct {
	Type   string `json:"type"` // "s3" or "disk"
	Bucket string `json:"bucket,omitempty"`
	Key    string `json:"key,omitempty"` // S3 object key, or path relative to the data dir
	ETag   string `json:"etag,omitempty"`
	// Checksum is the checksum S3 keeps with the finished object (in
	// upload.finished events), if any.
	Checksum *Checksum `json:"checksum,omitempty"`
	// SHA256 is the SHA-256 of the upload's bytes in standard base64, once
	// they are all stored, for uploads that keep one (--object-sha256, or
	// a Repr-Digest at creation).
	SHA256 string `json:"sha256,omitempty"`
}

// Checksum is a checksum S3 keeps with an object and reports to HeadObject
// with ChecksumMode ENABLED.
type Checksum struct {
	// Algorithm is S3's, in lower case: crc32 (what tusgate asks for),
	// crc32c, crc64nvme, sha256 or sha1.
	Algorithm string `json:"algorithm"`
	// Value is the checksum as S3 gives it: its bytes (big-endian) in
	// standard base64; a COMPOSITE one ends in "-<number of parts>".
	Value string `json:"value"`
	// Type is FULL_OBJECT (of the object's bytes, comparable with a local
	// file's) or COMPOSITE (of the parts' checksums); "" if S3 did not say.
	Type string `json:"type"`
}

// idEncoding renders event IDs: lower-case base32 without padding, so that
// 16 bytes become 26 characters of [a-z2-7].
var idEncoding = base32.StdEncoding.WithPadding(base32.NoPadding)

// eventID renders 16 bytes as an event ID.
func eventID(b []byte) string {
	return "evt_" + strings.ToLower(idEncoding.EncodeToString(b[:16]))
}

// NewEventID returns "evt_" + 26 lower-case base32 characters of crypto
// randomness (128 bits).
func NewEventID() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails, see crypto/rand.Read
	return eventID(b[:])
}

// StableEventID returns "evt_" + 26 lower-case base32 characters of
// SHA-256(kind + "\n" + key), so that the same event found twice (say, an
// expiry noticed by two instances) gets one ID and receivers see it as a
// duplicate.
func StableEventID(kind, key string) string {
	sum := sha256.Sum256([]byte(kind + "\n" + key))
	return eventID(sum[:])
}

// maxEventIDLen bounds Event.ID.
const maxEventIDLen = 100

// recordID returns the ID of the record carrying event eventID to url.
func recordID(eventID, url string) string {
	sum := sha256.Sum256([]byte(url))
	return eventID + "-" + hex.EncodeToString(sum[:4])
}

// validID reports whether id is 1 to max characters of [A-Za-z0-9_-]: safe
// as an S3 key segment, a Redis hash field and a file name.
func validID(id string, max int) bool {
	if id == "" || len(id) > max {
		return false
	}
	for _, c := range []byte(id) {
		switch {
		case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '_', c == '-':
		default:
			return false
		}
	}
	return true
}
