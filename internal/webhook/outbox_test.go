package webhook

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"
)

// backend is one Outbox configuration under test.
type backend struct {
	// fresh returns a new Outbox value of the configuration, as another
	// instance or a restarted process would have.
	fresh func() Outbox
	// shared: claims made through one value hold for the others (false
	// for DirOutbox, whose claims live in memory).
	shared bool
	// queued and dead return the stored JSON of a queued or buried record.
	queued, dead func(t *testing.T, id string) ([]byte, bool)
	// corrupt stores an unparsable queued record.
	corrupt func(t *testing.T, id string)
}

// newRecord returns a record of a fresh event, due at next.
func newRecord(event string, next time.Time) Record {
	ev := testEvent(event)
	url := "https://hooks.example/" + event
	return Record{ID: recordID(ev.ID, url), URL: url, Event: ev, NextAttempt: next, Created: testStart}
}

func claim(t *testing.T, ob Outbox, now time.Time, max int) []Record {
	t.Helper()
	recs, err := ob.Claim(t.Context(), now, max, 30*time.Second)
	if err != nil {
		t.Fatalf("Claim at +%v: %v", now.Sub(testStart), err)
	}
	for _, r := range recs {
		if !r.ClaimedUntil.Equal(now.Add(30 * time.Second)) {
			t.Errorf("claimed %s until %v, want %v", r.ID, r.ClaimedUntil, now.Add(30*time.Second))
		}
	}
	return recs
}

func ids(recs []Record) []string {
	var out []string
	for _, r := range recs {
		out = append(out, r.ID)
	}
	slices.Sort(out)
	return out
}

// sameRecord compares records by their JSON, ignoring the claim.
func sameRecord(t *testing.T, got, want Record) {
	t.Helper()
	got.ClaimedUntil, want.ClaimedUntil = time.Time{}, time.Time{}
	g, _ := json.Marshal(got)
	w, _ := json.Marshal(want)
	if string(g) != string(w) {
		t.Errorf("record\n%s\nwant\n%s", g, w)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// testOutboxContract runs the Outbox contract against b.
func testOutboxContract(t *testing.T, b backend) {
	ctx := t.Context()
	now := testStart
	ob := b.fresh()
	other := ob
	if b.shared {
		other = b.fresh()
	}

	later := newRecord("evt_later", now.Add(time.Minute))
	due := newRecord("evt_due", now)
	must(t, ob.Put(ctx, later, due))
	for _, r := range []Record{later, due} {
		if _, ok := b.queued(t, r.ID); !ok {
			t.Fatalf("%s not stored where documented", r.ID)
		}
	}

	got := claim(t, ob, now, 10)
	if !slices.Equal(ids(got), []string{due.ID}) {
		t.Fatalf("first claim: %v, want only the due record", ids(got))
	}
	sameRecord(t, got[0], due)

	if got := claim(t, other, now.Add(10*time.Second), 10); len(got) != 0 {
		t.Fatalf("claimed record claimed again: %v", ids(got))
	}

	// Putting the same record again does not reset it while claimed.
	reput := due
	reput.LastError = "re-put"
	must(t, other.Put(ctx, reput))
	if got := claim(t, other, now.Add(20*time.Second), 10); len(got) != 0 {
		t.Fatalf("re-put released the claim: %v", ids(got))
	}

	// The lease ends.
	got = claim(t, other, now.Add(31*time.Second), 10)
	if !slices.Equal(ids(got), []string{due.ID}) {
		t.Fatalf("after the lease: %v, want the due record", ids(got))
	}
	if got[0].LastError == "re-put" {
		t.Error("re-put replaced a claimed record")
	}

	r := got[0]
	r.Attempts, r.NextAttempt, r.LastError = 1, now.Add(2*time.Minute), "HTTP 500: boom"
	must(t, other.Reschedule(ctx, r))
	got = claim(t, ob, now.Add(61*time.Second), 10)
	if !slices.Equal(ids(got), []string{later.ID}) {
		t.Fatalf("at +61s: %v, want only the later record", ids(got))
	}
	got = claim(t, b.fresh(), now.Add(2*time.Minute), 10)
	if !slices.Equal(ids(got), ids([]Record{due, later})) {
		t.Fatalf("at +2m: %v, want both", ids(got))
	}
	for _, g := range got {
		if g.ID == due.ID {
			sameRecord(t, g, r)
		}
	}

	must(t, ob.Delete(ctx, later.ID))
	must(t, ob.Delete(ctx, later.ID))
	must(t, ob.Delete(ctx, "evt_never-00000000"))
	if _, ok := b.queued(t, later.ID); ok {
		t.Error("deleted record still stored")
	}

	r.Attempts, r.LastError = 2, "HTTP 500: still"
	must(t, ob.Bury(ctx, r))
	if _, ok := b.queued(t, r.ID); ok {
		t.Error("buried record still queued")
	}
	raw, ok := b.dead(t, r.ID)
	if !ok {
		t.Fatal("buried record not in the dead-letter area")
	}
	var buried Record
	must(t, json.Unmarshal(raw, &buried))
	sameRecord(t, buried, r)
	if got := claim(t, b.fresh(), now.Add(time.Hour), 10); len(got) != 0 {
		t.Fatalf("claimed after delete and bury: %v", ids(got))
	}

	// Rescheduling a record deleted meanwhile does not bring it back.
	gone := newRecord("evt_gone", now)
	must(t, ob.Put(ctx, gone))
	if got := claim(t, ob, now, 10); !slices.Equal(ids(got), []string{gone.ID}) {
		t.Fatalf("claim of a new record: %v", ids(got))
	}
	must(t, other.Delete(ctx, gone.ID))
	gone.Attempts = 1
	must(t, ob.Reschedule(ctx, gone))
	if _, ok := b.queued(t, gone.ID); ok {
		t.Error("Reschedule brought a deleted record back")
	}

	// IDs become keys and file names.
	bad := newRecord("evt_bad", now)
	bad.ID = "../../etc/passwd"
	if ob.Put(ctx, bad) == nil || ob.Delete(ctx, "a/b") == nil || ob.Bury(ctx, bad) == nil || ob.Reschedule(ctx, bad) == nil {
		t.Error("invalid record ID accepted")
	}

	// max.
	var batch []Record
	for i := range 5 {
		batch = append(batch, newRecord(fmt.Sprintf("evt_batch%d", i), now))
	}
	must(t, ob.Put(ctx, batch...))
	seen := map[string]bool{}
	for _, want := range []int{2, 2, 1, 0} {
		got := claim(t, ob, now.Add(time.Hour), 2)
		if len(got) != want {
			t.Fatalf("Claim(max 2) returned %d records, want %d", len(got), want)
		}
		for _, g := range got {
			if seen[g.ID] {
				t.Fatalf("%s claimed twice", g.ID)
			}
			seen[g.ID] = true
		}
	}

	// A record that does not parse is moved to the dead letters, not
	// returned and not left to fail every claim.
	b.corrupt(t, "evt_corrupt-00000000")
	if got := claim(t, ob, now.Add(2*time.Hour), 10); !slices.Equal(ids(got), ids(batch)) {
		t.Fatalf("with a corrupt record: %v", ids(got))
	}
	if _, ok := b.queued(t, "evt_corrupt-00000000"); ok {
		t.Error("corrupt record still queued")
	}
	if _, ok := b.dead(t, "evt_corrupt-00000000"); !ok {
		t.Error("corrupt record not in the dead letters")
	}
}

// testOutboxRestart: what one value stored, a fresh value (a restarted
// process) claims.
func testOutboxRestart(t *testing.T, b backend) {
	ctx := t.Context()
	before := b.fresh()
	rec := newRecord("evt_survivor", testStart)
	must(t, before.Put(ctx, rec))
	got := claim(t, b.fresh(), testStart, 10)
	if len(got) != 1 {
		t.Fatalf("after restart: %v", ids(got))
	}
	sameRecord(t, got[0], rec)
	if !b.shared {
		// Claims died with the process.
		if got := claim(t, b.fresh(), testStart, 10); len(got) != 1 {
			t.Fatalf("claim of a dead process held: %v", ids(got))
		}
	}
}

// testOutboxConcurrentClaims: of three instances claiming at once, one
// wins. Each instance has written before, as running instances have.
// duplicatesOK for a backend that cannot guarantee it.
func testOutboxConcurrentClaims(t *testing.T, b backend, duplicatesOK bool) {
	ctx := t.Context()
	instances := make([]Outbox, 3)
	for i := range instances {
		instances[i] = b.fresh()
		warm := newRecord(fmt.Sprintf("evt_warm%d", i), testStart)
		must(t, instances[i].Put(ctx, warm))
		must(t, instances[i].Delete(ctx, warm.ID))
	}
	const rounds = 30
	for i := range rounds {
		rec := newRecord(fmt.Sprintf("evt_race%02d", i), testStart)
		must(t, instances[i%3].Put(ctx, rec))
		now := testStart.Add(time.Duration(i) * time.Hour)
		var wg sync.WaitGroup
		wins := make([]int, len(instances))
		start := make(chan struct{})
		for j, ob := range instances {
			wg.Go(func() {
				<-start
				got, err := ob.Claim(ctx, now, 10, 30*time.Second)
				if err != nil {
					t.Errorf("Claim: %v", err)
				}
				wins[j] = len(got)
			})
		}
		close(start)
		wg.Wait()
		total := wins[0] + wins[1] + wins[2]
		if total > 1 && !duplicatesOK {
			t.Fatalf("round %d: %d claims won, want 1", i, total)
		}
		if total == 0 {
			// Every claimer may have read the record mid-write; then
			// the next Claim must get it.
			if got := claim(t, instances[0], now, 10); len(got) != 1 {
				t.Fatalf("round %d: record not claimable: %v", i, ids(got))
			}
		}
		must(t, instances[0].Delete(ctx, rec.ID))
	}
}

func dirBackend(t *testing.T) backend {
	dir := t.TempDir()
	read := func(area string) func(*testing.T, string) ([]byte, bool) {
		return func(t *testing.T, id string) ([]byte, bool) {
			b, err := os.ReadFile(filepath.Join(dir, area, id+".json"))
			return b, err == nil
		}
	}
	return backend{
		fresh:  func() Outbox { return &DirOutbox{Dir: dir} },
		queued: read(queueDir),
		dead:   read(deadDir),
		corrupt: func(t *testing.T, id string) {
			must(t, os.WriteFile(filepath.Join(dir, queueDir, id+".json"), []byte("{not json"), 0o600))
		},
	}
}

func TestDirOutbox(t *testing.T) { testOutboxContract(t, dirBackend(t)) }

func TestDirOutboxRestart(t *testing.T) { testOutboxRestart(t, dirBackend(t)) }

func TestDirOutboxLeavesNoTemporaryFiles(t *testing.T) {
	dir := t.TempDir()
	ob := &DirOutbox{Dir: dir}
	rec := newRecord("evt_tidy", testStart)
	must(t, ob.Put(t.Context(), rec))
	rec.Attempts = 1
	must(t, ob.Reschedule(t.Context(), rec))
	must(t, ob.Bury(t.Context(), rec))
	for _, area := range []string{queueDir, deadDir} {
		entries, err := os.ReadDir(filepath.Join(dir, area))
		must(t, err)
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		want := map[string][]string{queueDir: nil, deadDir: {rec.ID + ".json"}}[area]
		if !slices.Equal(names, want) {
			t.Errorf("%s holds %v, want %v", area, names, want)
		}
	}
}
