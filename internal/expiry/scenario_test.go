package expiry

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"
	"github.com/tusgate/tusgate/internal/clock"
)

// store is a real backend under test, seen through what the scenario needs.
type store struct {
	inv  Inventory
	tomb Tombstones
	// create makes an upload of size bytes (with metadata) holding data and
	// returns its tus ID.
	create func(t *testing.T, size int64, data string) string
	// write appends data at offset to an upload, as a PATCH would.
	write func(t *testing.T, id string, offset int64, data string)
	// finish completes an upload whose data is all written.
	finish func(t *testing.T, id string)
	// orphan makes an orphan and returns its Orphan.Key.
	orphan func(t *testing.T) string
	// age backdates everything stored by d, as if written d ago.
	age func(t *testing.T, d time.Duration)
	// traces lists what is stored for an upload (objects, files, multipart
	// uploads), sorted.
	traces func(t *testing.T, id string) []string
	// orphanExists reports whether the orphan is still there.
	orphanExists func(t *testing.T, key string) bool
	// finished reports whether a finished upload's data and .info exist.
	finished func(t *testing.T, id string) (data, info bool)
	// others lists everything that is not an upload and must survive.
	others func(t *testing.T) []string
	// partTail is what traces must contain for an upload with a fresh
	// incomplete tail part ("" if the store has none).
	partTail func(id string) string
}

const (
	testTTL          = time.Hour
	testOrphanMinAge = 30 * time.Minute
	testTombstoneTTL = 24 * time.Hour
)

// quietLog discards logs.
func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// scenario runs the janitor against a real store: idle, active, refused and
// finished uploads, one with a fresh tail, an orphan, and things that are
// not uploads.
func scenario(t *testing.T, s store) {
	ctx := t.Context()
	t0 := time.Now()
	clk := clock.NewFake(t0)

	idle := s.create(t, 100, "0123456789abcdef0123456789abcdef") // two S3 parts
	fresh := s.create(t, 100, "0123456789abcdef")
	active := s.create(t, 100, "")
	refused := s.create(t, 100, "0123456789abcdef")
	finished := s.create(t, 10, "0123456789")
	s.finish(t, finished)
	orphan := s.orphan(t)
	others := s.others(t)

	// One upload looked up: unfinished ones were last active about now;
	// finished and unknown ones are not unfinished uploads.
	for _, id := range []string{idle, fresh, active} {
		u, ok, err := s.inv.Lookup(ctx, id)
		if err != nil || !ok || u.ID != id || u.Info.Size != 100 || u.LastActivity.Before(t0.Add(-time.Minute)) || u.LastActivity.After(time.Now().Add(time.Minute)) {
			t.Fatalf("Lookup(%s) = %+v, %v, %v; want it, last active about %v", id, u, ok, err, t0)
		}
	}
	for _, id := range []string{finished, "nobody/nothing+x", "../up"} {
		if u, ok, err := s.inv.Lookup(ctx, id); ok || err != nil {
			t.Fatalf("Lookup(%s) = %+v, %v, %v; want not an unfinished upload", id, u, ok, err)
		}
	}

	var expired []Upload
	refuse := true
	opts := Options{
		Inventory:    s.inv,
		Tombstones:   s.tomb,
		Clock:        clk,
		Log:          quietLog(),
		TTL:          testTTL,
		OrphanMinAge: testOrphanMinAge,
		TombstoneTTL: testTombstoneTTL,
		Active: func(_ context.Context, id string) (bool, error) {
			return id == active, nil
		},
		Expired: func(_ context.Context, u Upload) error {
			expired = append(expired, u)
			if refuse && u.ID == refused {
				return errors.New("webhook queue unavailable")
			}
			return nil
		},
	}
	j, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	run := func(j *Janitor, want Report) {
		t.Helper()
		expired = nil
		got, err := j.RunOnce(ctx)
		if got != want {
			t.Fatalf("RunOnce = %+v (err %v), want %+v", got, err, want)
		}
		if (err != nil) != (want.Errors > 0) {
			t.Fatalf("RunOnce error = %v with %d errors", err, got.Errors)
		}
	}
	mustExist := func(id string) {
		t.Helper()
		if len(s.traces(t, id)) == 0 {
			t.Fatalf("upload %s was removed", id)
		}
	}

	// Everything is new: nothing to do, and the young orphan is left alone
	// (it may be an upload being created).
	run(j, Report{})
	for _, id := range []string{idle, fresh, active, refused} {
		mustExist(id)
	}
	if !s.orphanExists(t, orphan) {
		t.Fatal("young orphan removed")
	}

	// Two hours later for everything but a new tail written to fresh.
	s.age(t, 2*time.Hour)
	s.write(t, fresh, 16, "01234")
	if tail := s.partTail(fresh); tail != "" && !slices.Contains(s.traces(t, fresh), tail) {
		t.Fatalf("no %s after a short write: %v", tail, s.traces(t, fresh))
	}
	run(j, Report{Expired: 1, Orphans: 1, Errors: 1})

	if tr := s.traces(t, idle); len(tr) != 0 {
		t.Errorf("expired upload left traces: %v", tr)
	}
	if got, want := ids(expired), sorted(idle, refused); !slices.Equal(got, want) {
		t.Fatalf("Expired called for %v, want %v", got, want)
	}
	for _, u := range expired {
		if u.ID == idle {
			if u.Info.ID != idle || u.Info.Offset != 32 || u.Info.Size != 100 || u.Info.MetaData["filename"] != "report.pdf" {
				t.Errorf("Expired got Info %+v", u.Info)
			}
			if d := t0.Add(-2 * time.Hour).Sub(u.LastActivity); d < -time.Second || d > time.Second {
				t.Errorf("LastActivity = %v, want about %v", u.LastActivity, t0.Add(-2*time.Hour))
			}
		}
	}
	when, ok, err := s.tomb.Get(ctx, idle)
	if err != nil || !ok || !when.Equal(t0) {
		t.Errorf("tombstone of %s = %v, %v, %v; want %v", idle, when, ok, err, t0)
	}
	if _, ok, err := s.tomb.Get(ctx, refused); ok || err != nil {
		t.Errorf("refused upload has a tombstone (%v)", err)
	}
	mustExist(refused)
	mustExist(fresh)
	mustExist(active)
	if s.orphanExists(t, orphan) {
		t.Error("old orphan not removed")
	}
	if data, info := s.finished(t, finished); !data || !info {
		t.Errorf("finished upload: data %v, .info %v; want both kept", data, info)
	}
	if got := s.others(t); !slices.Equal(got, others) {
		t.Errorf("non-uploads changed:\n got %v\nwant %v", got, others)
	}

	// The callback works again; finished .info objects go after an hour.
	refuse = false
	opts.FinishedInfoTTL = time.Hour
	j2, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	run(j2, Report{Expired: 1, Infos: 1})
	if tr := s.traces(t, refused); len(tr) != 0 {
		t.Errorf("expired upload left traces: %v", tr)
	}
	if data, info := s.finished(t, finished); !data || info {
		t.Errorf("finished upload: data %v, .info %v; want data only", data, info)
	}
	mustExist(fresh)
	if got := s.others(t); !slices.Equal(got, others) {
		t.Errorf("non-uploads changed:\n got %v\nwant %v", got, others)
	}

	// Once idle for the TTL, fresh expires too.
	clk.Advance(2 * time.Hour)
	run(j2, Report{Expired: 1})
	if tr := s.traces(t, fresh); len(tr) != 0 {
		t.Errorf("expired upload left traces: %v", tr)
	}
	if when, ok, err := s.tomb.Get(ctx, fresh); err != nil || !ok || !when.Equal(clk.Now()) {
		t.Errorf("tombstone of %s = %v, %v, %v; want %v", fresh, when, ok, err, clk.Now())
	}
	mustExist(active)

	// A day later the tombstones go.
	clk.Advance(testTombstoneTTL + time.Minute)
	run(j2, Report{Tombstones: 3})
	for _, id := range []string{idle, refused, fresh} {
		if _, ok, err := s.tomb.Get(ctx, id); ok || err != nil {
			t.Errorf("tombstone of %s not swept (%v)", id, err)
		}
	}
	mustExist(active)
	if data, info := s.finished(t, finished); !data || info {
		t.Errorf("finished upload: data %v, .info %v; want data only", data, info)
	}
	if got := s.others(t); !slices.Equal(got, others) {
		t.Errorf("non-uploads changed:\n got %v\nwant %v", got, others)
	}
}

// ids returns the sorted IDs of us.
func ids(us []Upload) []string {
	var s []string
	for _, u := range us {
		s = append(s, u.ID)
	}
	return sorted(s...)
}

func sorted(s ...string) []string {
	s = slices.Clone(s)
	slices.Sort(s)
	return s
}

// ownerFolder and uploadName make IDs shaped like hooks.NewUploadID's.
const ownerFolder = "mfrggzdfmztwq2lknnwg23tpoa"

func uploadName(t *testing.T) string {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatal(err)
	}
	return ownerFolder + "/" + hex.EncodeToString(b[:])
}

// tombstoneIDs checks that a tombstone put for id is found under id and
// alias, and that IDs that cannot be uploads have none.
func tombstoneIDs(t *testing.T, tomb Tombstones, id, alias string) {
	ctx := t.Context()
	at := time.Date(2030, 1, 2, 3, 4, 5, 6, time.UTC)
	if err := tomb.Put(ctx, id, at); err != nil {
		t.Fatal(err)
	}
	for _, x := range []string{id, alias} {
		if got, ok, err := tomb.Get(ctx, x); err != nil || !ok || !got.Equal(at) {
			t.Errorf("Get(%q) = %v, %v, %v; want %v", x, got, ok, err, at)
		}
	}
	for _, x := range []string{"", ownerFolder, ownerFolder + "/", "../" + id, ownerFolder + "/../" + ownerFolder + "/0123456789abcdef", ".tusgate/x", "/" + id, ownerFolder + "/other"} {
		if got, ok, err := tomb.Get(ctx, x); err != nil || ok {
			t.Errorf("Get(%q) = %v, %v, %v; want none", x, got, ok, err)
		}
	}
	for _, x := range []string{"", "../x", ".tusgate/x", ownerFolder + "//x"} {
		if err := tomb.Put(ctx, x, at); err == nil {
			t.Errorf("Put(%q) accepted", x)
		}
	}
}

// withTusd fills in s's create, write and finish with tusd's own store ds,
// so that the scenario sees uploads exactly as tusd writes them.
func withTusd(ds handler.DataStore, s store) store {
	get := func(t *testing.T, id string) handler.Upload {
		up, err := ds.GetUpload(t.Context(), id)
		if err != nil {
			t.Fatal(err)
		}
		return up
	}
	s.create = func(t *testing.T, size int64, data string) string {
		up, err := ds.NewUpload(t.Context(), handler.FileInfo{
			ID: uploadName(t), Size: size, MetaData: handler.MetaData{"filename": "report.pdf"},
		})
		if err != nil {
			t.Fatal(err)
		}
		if data != "" {
			if _, err := up.WriteChunk(t.Context(), 0, strings.NewReader(data)); err != nil {
				t.Fatal(err)
			}
		}
		info, err := up.GetInfo(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		return info.ID
	}
	s.write = func(t *testing.T, id string, offset int64, data string) {
		if _, err := get(t, id).WriteChunk(t.Context(), offset, strings.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	s.finish = func(t *testing.T, id string) {
		if err := get(t, id).FinishUpload(t.Context()); err != nil {
			t.Fatal(err)
		}
	}
	return s
}
