package webhook

import (
	"context"
	"encoding/json"
	"fmt"
	"time"
)

// Record is one event on its way to one URL.
type Record struct {
	// ID is Event.ID + "-" + the first 8 hex characters of SHA-256(URL).
	ID          string    `json:"id"`
	URL         string    `json:"url"`
	Event       Event     `json:"event"`
	Attempts    int       `json:"attempts"`
	NextAttempt time.Time `json:"next_attempt"`
	LastError   string    `json:"last_error,omitempty"`
	Created     time.Time `json:"created"`
	// ClaimedUntil is when the current claim ends; zero when not claimed.
	ClaimedUntil time.Time `json:"claimed_until,omitzero"`
}

// Outbox stores records durably. Implementations must be safe for
// concurrent use.
type Outbox interface {
	// Put stores records durably before returning. A record whose ID is
	// already stored is replaced only if it is not currently claimed, so
	// that re-putting a stable event does not reset a retry in progress;
	// implementations may simply keep the existing one.
	Put(ctx context.Context, recs ...Record) error
	// Claim returns up to max records with NextAttempt <= now that nobody
	// has claimed (ClaimedUntil <= now), marking them claimed until
	// now+lease so that other Claims, of this or other instances, skip them
	// meanwhile.
	Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Record, error)
	// Reschedule stores rec's Attempts, NextAttempt and LastError and
	// releases its claim.
	Reschedule(ctx context.Context, rec Record) error
	// Delete removes a delivered record; deleting a missing record is not
	// an error.
	Delete(ctx context.Context, id string) error
	// Bury moves a record that will not be retried any more out of the
	// queue into a dead-letter area where operators can inspect it.
	Bury(ctx context.Context, rec Record) error
}

// maxRecordIDLen bounds Record.ID: an event ID, "-" and 8 hex characters.
const maxRecordIDLen = maxEventIDLen + 9

// checkRecordID rejects IDs that are not safe as keys and file names.
func checkRecordID(id string) error {
	if !validID(id, maxRecordIDLen) {
		return fmt.Errorf("webhook: invalid record ID %q: want 1 to %d characters of [A-Za-z0-9_-]", id, maxRecordIDLen)
	}
	return nil
}

// encodeRecord returns the stored form of rec with the given claim (zero
// for none).
func encodeRecord(rec Record, claimedUntil time.Time) ([]byte, error) {
	if err := checkRecordID(rec.ID); err != nil {
		return nil, err
	}
	rec.ClaimedUntil = claimedUntil
	return json.Marshal(rec)
}

// decodeRecord parses the record stored under id. Outboxes move records
// that fail to parse to their dead-letter area as they are, rather than let
// them fail every Claim.
func decodeRecord(b []byte, id string) (Record, error) {
	var rec Record
	if err := json.Unmarshal(b, &rec); err != nil {
		return rec, fmt.Errorf("webhook: record %s: %w", id, err)
	}
	if rec.ID != id {
		return rec, fmt.Errorf("webhook: record %s holds ID %q", id, rec.ID)
	}
	return rec, nil
}

// notBefore is when rec can be claimed next.
func notBefore(rec Record) time.Time {
	if rec.ClaimedUntil.After(rec.NextAttempt) {
		return rec.ClaimedUntil
	}
	return rec.NextAttempt
}
