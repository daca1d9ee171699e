package webhook

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// DirOutbox is an Outbox in a local directory, for a single instance (the
// disk store): records are the files <Dir>/queue/<id>.json, dead letters
// <Dir>/dead/<id>.json. Every change is written to a temporary file in the
// same directory, synced, renamed into place, and the directory synced, so
// it survives a crash of the process or the machine once the call returned.
//
// Claims are kept in memory only: after a restart every due record is
// claimable at once. Two processes must not share a Dir. Use a pointer;
// a DirOutbox must not be copied after first use.
type DirOutbox struct {
	Dir string

	mu     sync.Mutex
	ready  bool                 // queue and dead exist
	claims map[string]time.Time // record ID → end of its claim
}

const (
	queueDir = "queue"
	deadDir  = "dead"
)

// Put implements Outbox; records already queued are kept as they are.
func (o *DirOutbox) Put(ctx context.Context, recs ...Record) error {
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.init(); err != nil {
		return err
	}
	queue := filepath.Join(o.Dir, queueDir)
	wrote := false
	for _, rec := range recs {
		if err := ctx.Err(); err != nil {
			return err
		}
		b, err := encodeRecord(rec, time.Time{})
		if err != nil {
			return err
		}
		name := rec.ID + ".json"
		if _, err := os.Lstat(filepath.Join(queue, name)); err == nil {
			continue
		} else if !errors.Is(err, fs.ErrNotExist) {
			return err
		}
		if err := replaceFile(queue, name, b); err != nil {
			return err
		}
		wrote = true
	}
	if wrote {
		return syncDir(queue)
	}
	return nil
}

// Claim implements Outbox. It reads every queued record until it has max.
func (o *DirOutbox) Claim(ctx context.Context, now time.Time, max int, lease time.Duration) ([]Record, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for id, until := range o.claims {
		if !until.After(now) {
			delete(o.claims, id)
		}
	}
	if err := o.init(); err != nil {
		return nil, err
	}
	queue := filepath.Join(o.Dir, queueDir)
	entries, err := os.ReadDir(queue)
	if err != nil {
		return nil, err
	}
	var out []Record
	for _, e := range entries {
		if len(out) >= max {
			break
		}
		if err := ctx.Err(); err != nil {
			return out, err
		}
		id, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || !e.Type().IsRegular() || !validID(id, maxRecordIDLen) {
			continue // temporary files, strays
		}
		if _, claimed := o.claims[id]; claimed {
			continue
		}
		b, err := os.ReadFile(filepath.Join(queue, e.Name()))
		if errors.Is(err, fs.ErrNotExist) {
			continue // removed by hand
		}
		if err != nil {
			return out, err
		}
		rec, err := decodeRecord(b, id)
		if err != nil {
			if err := o.bury(id, b); err != nil {
				return out, err
			}
			continue
		}
		if rec.NextAttempt.After(now) {
			continue
		}
		rec.ClaimedUntil = now.Add(lease)
		if o.claims == nil {
			o.claims = map[string]time.Time{}
		}
		o.claims[id] = rec.ClaimedUntil
		out = append(out, rec)
	}
	return out, nil
}

// Reschedule implements Outbox. A record deleted meanwhile stays deleted.
func (o *DirOutbox) Reschedule(ctx context.Context, rec Record) error {
	b, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.claims, rec.ID)
	queue := filepath.Join(o.Dir, queueDir)
	name := rec.ID + ".json"
	if _, err := os.Lstat(filepath.Join(queue, name)); errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err := replaceFile(queue, name, b); err != nil {
		return err
	}
	return syncDir(queue)
}

// Delete implements Outbox.
func (o *DirOutbox) Delete(ctx context.Context, id string) error {
	if err := checkRecordID(id); err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	delete(o.claims, id)
	queue := filepath.Join(o.Dir, queueDir)
	err := os.Remove(filepath.Join(queue, id+".json"))
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	return syncDir(queue)
}

// Bury implements Outbox: it writes <Dir>/dead/<id>.json, then removes the
// queued record.
func (o *DirOutbox) Bury(ctx context.Context, rec Record) error {
	b, err := encodeRecord(rec, time.Time{})
	if err != nil {
		return err
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	if err := o.init(); err != nil {
		return err
	}
	return o.bury(rec.ID, b)
}

// bury stores b as the dead letter id and removes the queued record;
// o.mu must be held.
func (o *DirOutbox) bury(id string, b []byte) error {
	delete(o.claims, id)
	dead := filepath.Join(o.Dir, deadDir)
	if err := replaceFile(dead, id+".json", b); err != nil {
		return err
	}
	if err := syncDir(dead); err != nil {
		return err
	}
	queue := filepath.Join(o.Dir, queueDir)
	if err := os.Remove(filepath.Join(queue, id+".json")); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return syncDir(queue)
}

// init creates the queue and dead directories durably; o.mu must be held.
func (o *DirOutbox) init() error {
	if o.ready {
		return nil
	}
	if o.Dir == "" {
		return errors.New("webhook: DirOutbox.Dir is empty")
	}
	for _, d := range []string{queueDir, deadDir} {
		if err := os.MkdirAll(filepath.Join(o.Dir, d), 0o700); err != nil {
			return err
		}
	}
	if err := syncDir(o.Dir); err != nil {
		return err
	}
	o.ready = true
	return nil
}

// replaceFile atomically replaces dir/name with b: a synced temporary file
// in dir is renamed over it. The caller syncs dir afterwards.
func replaceFile(dir, name string, b []byte) (err error) {
	f, err := os.CreateTemp(dir, ".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			_ = f.Close()
			_ = os.Remove(f.Name())
		}
	}()
	if _, err := f.Write(b); err != nil {
		return err
	}
	if err := f.Sync(); err != nil {
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	return os.Rename(f.Name(), filepath.Join(dir, name))
}

// syncDir makes the entries of dir (creations, renames, removals) durable.
func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}
