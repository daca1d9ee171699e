package resume

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestIdentify(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "big.bin")
	data := bytes.Repeat([]byte("0123456789abcdef"), 3<<16) // 3 MiB
	writeFile(t, p, data)
	mtime := time.Unix(1_700_000_000, 123)
	if err := os.Chtimes(p, mtime, mtime); err != nil {
		t.Fatal(err)
	}

	// A relative path names the same file as its absolute form.
	wd, _ := os.Getwd()
	t.Cleanup(func() { _ = os.Chdir(wd) })
	if err := os.Chdir(dir); err != nil {
		t.Fatal(err)
	}
	a, err := Identify("big.bin")
	if err != nil {
		t.Fatal(err)
	}
	if a.Path != p || a.Size != int64(len(data)) || a.ModTime != mtime.UnixNano() || a.Head == "" || a.Tail == "" {
		t.Fatalf("identity %+v", a)
	}
	b, err := Identify(p)
	if err != nil || b != a {
		t.Fatalf("same file, different identity: %+v vs %+v (%v)", a, b, err)
	}
	if c := a.Changes(b); c != "" {
		t.Fatalf("Changes of the same identity: %q", c)
	}

	// A byte changed in the last MiB with the mtime put back: the tail hash tells.
	data[len(data)-10] ^= 1
	writeFile(t, p, data)
	_ = os.Chtimes(p, mtime, mtime)
	c, _ := Identify(p)
	if c.Tail == a.Tail || c.Head != a.Head || a.Changes(c) != "content" {
		t.Fatalf("tail change: %+v, changes %q", c, a.Changes(c))
	}
	// Appended bytes: size, mtime and tail.
	writeFile(t, p, append(data, 'x'))
	d, _ := Identify(p)
	if ch := c.Changes(d); !strings.Contains(ch, "size 3145728 → 3145729 bytes") || !strings.Contains(ch, "modified") {
		t.Fatalf("changes after append: %q", ch)
	}

	// Small and empty files.
	writeFile(t, p, []byte("hi"))
	s, err := Identify(p)
	if err != nil || s.Head != s.Tail || s.Size != 2 {
		t.Fatalf("small file identity %+v %v", s, err)
	}
	writeFile(t, p, nil)
	if e, err := Identify(p); err != nil || e.Size != 0 {
		t.Fatalf("empty file identity %+v %v", e, err)
	}
	if _, err := Identify(dir); err == nil {
		t.Fatal("a directory has an identity")
	}
}

func TestStore(t *testing.T) {
	s := NewStore(filepath.Join(t.TempDir(), "state", "tusgate", "uploads"))
	id := Identity{Path: "/data/a.bin", Size: 100, ModTime: 1, Head: "h", Tail: "t"}
	const ep = "http://127.0.0.1:8080/files/"

	if recs, err := s.Load(ep, id.Path); err != nil || len(recs) != 0 {
		t.Fatalf("empty store: %v %v", recs, err)
	}
	for i := 2; i >= 0; i-- {
		if err := s.Save(Record{Endpoint: ep, File: id, Kind: Partial, Part: i, Parts: 3, Start: int64(i) * 34, End: min(100, int64(i+1)*34), URL: "u" + string(rune('0'+i))}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Save(Record{Endpoint: ep, File: id, Kind: Final, End: 100, URL: "final"}); err != nil {
		t.Fatal(err)
	}
	// Saving again replaces.
	if err := s.Save(Record{Endpoint: ep, File: id, Kind: Partial, Part: 1, Parts: 3, Start: 34, End: 68, URL: "u1b"}); err != nil {
		t.Fatal(err)
	}
	recs, err := s.Load(ep, id.Path)
	if err != nil {
		t.Fatal(err)
	}
	var urls []string
	for _, r := range recs {
		urls = append(urls, r.URL)
	}
	if strings.Join(urls, ",") != "u0,u1b,u2,final" {
		t.Fatalf("loaded %v", urls)
	}

	// Another endpoint, or another file, has records of its own.
	if recs, _ := s.Load("https://other/files/", id.Path); len(recs) != 0 {
		t.Fatalf("other endpoint sees %v", recs)
	}
	if recs, _ := s.Load(ep, "/data/b.bin"); len(recs) != 0 {
		t.Fatalf("other file sees %v", recs)
	}

	// Records are private: folders 0700, files 0600.
	folder := s.folder(ep, id.Path)
	if fi, err := os.Stat(folder); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("record folder mode %v %v", fi.Mode(), err)
	}
	files, _ := filepath.Glob(filepath.Join(folder, "*"))
	for _, f := range files {
		if fi, _ := os.Stat(f); fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v", f, fi.Mode())
		}
	}
	if len(files) != 4 {
		t.Fatalf("files %v (a temp file left?)", files)
	}

	// A damaged record is skipped.
	writeFile(t, filepath.Join(folder, "upload.json"), []byte("{not json"))
	if recs, err := s.Load(ep, id.Path); err != nil || len(recs) != 4 {
		t.Fatalf("with a damaged record: %d records, %v", len(recs), err)
	}

	if err := s.Clear(ep, id.Path); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.Load(ep, id.Path); len(recs) != 0 {
		t.Fatalf("after Clear: %v", recs)
	}
}

func TestDefaultDir(t *testing.T) {
	env := map[string]string{"XDG_STATE_HOME": "/x/state", "HOME": "/home/u"}
	get := func(k string) string { return env[k] }
	if d, _ := DefaultDir(get); d != filepath.Join("/x/state", "tusgate", "uploads") {
		t.Fatalf("with XDG_STATE_HOME: %s", d)
	}
	env["XDG_STATE_HOME"] = "relative/ignored" // the XDG spec: relative paths are invalid
	if d, _ := DefaultDir(get); d != filepath.Join("/home/u", ".local", "state", "tusgate", "uploads") {
		t.Fatalf("without XDG_STATE_HOME: %s", d)
	}
}
