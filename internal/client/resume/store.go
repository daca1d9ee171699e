package resume

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/tusgate/tusgate/internal/privatefile"
)

// Kind tells what an upload of a file is.
type Kind string

const (
	// Whole is the one upload of a file sent in one stream.
	Whole Kind = "upload"
	// Partial is one of the partial uploads (tus concatenation) of a file
	// sent in several streams.
	Partial Kind = "partial"
	// Final is the final upload concatenating a file's partial uploads.
	Final Kind = "final"
)

// Record is one upload of a file, kept until the file is stored. A file
// sent in several streams has a record per partial upload, each written
// when that upload is created, and one for the final upload.
type Record struct {
	Endpoint string    `json:"endpoint"`
	File     Identity  `json:"file"`
	Kind     Kind      `json:"kind"`
	Part     int       `json:"part,omitempty"`  // partials: 0-based index
	Parts    int       `json:"parts,omitempty"` // partials: how many
	Start    int64     `json:"start"`           // first byte of the file in this upload
	End      int64     `json:"end"`             // the byte after its last
	URL      string    `json:"url"`
	Created  time.Time `json:"created"`
}

func (r Record) fileName() string {
	if r.Kind == Partial {
		return fmt.Sprintf("partial-%04d-of-%04d.json", r.Part, r.Parts)
	}
	return string(r.Kind) + ".json"
}

// Store keeps records as small JSON files: one folder per (endpoint,
// file path), one file per upload. Records are written atomically, so a
// client killed at any moment leaves either the old record or the new.
type Store struct {
	dir string
}

// NewStore returns the store kept in dir (created when first written).
func NewStore(dir string) *Store { return &Store{dir: dir} }

// Dir is where the store keeps its records.
func (s *Store) Dir() string { return s.dir }

// DefaultDir is where records are kept: $XDG_STATE_HOME/tusgate/uploads,
// by default ~/.local/state/tusgate/uploads (macOS: ~/Library/Application
// Support/tusgate/uploads; Windows: %LocalAppData%\tusgate\uploads).
func DefaultDir(getenv func(string) string) (string, error) {
	if d := getenv("XDG_STATE_HOME"); filepath.IsAbs(d) {
		return filepath.Join(d, "tusgate", "uploads"), nil
	}
	switch runtime.GOOS {
	case "windows":
		if d := getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "tusgate", "uploads"), nil
		}
	case "darwin", "ios":
		if d, err := os.UserConfigDir(); err == nil {
			return filepath.Join(d, "tusgate", "uploads"), nil
		}
	}
	home := getenv("HOME")
	if home == "" {
		var err error
		if home, err = os.UserHomeDir(); err != nil {
			return "", errors.New("cannot find a place for resume records: set XDG_STATE_HOME or HOME")
		}
	}
	return filepath.Join(home, ".local", "state", "tusgate", "uploads"), nil
}

// folder is the record folder of a file at an endpoint.
func (s *Store) folder(endpoint, path string) string {
	sum := sha256.Sum256([]byte(endpoint + "\n" + path))
	return filepath.Join(s.dir, hex.EncodeToString(sum[:16]))
}

// Load returns the records of the file at path (absolute) for endpoint:
// the whole upload, or the partials by index and then the final. Records
// that cannot be read are skipped (and later overwritten).
func (s *Store) Load(endpoint, path string) ([]Record, error) {
	dir := s.folder(endpoint, path)
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("reading resume records: %w", err)
	}
	var recs []Record
	for _, e := range entries {
		if !strings.HasSuffix(e.Name(), ".json") {
			continue
		}
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			continue
		}
		var r Record
		if json.Unmarshal(data, &r) != nil || r.Endpoint != endpoint || r.File.Path != path || r.fileName() != e.Name() {
			continue
		}
		recs = append(recs, r)
	}
	slices.SortFunc(recs, func(a, b Record) int {
		if a.Kind != b.Kind {
			return strings.Compare(kindOrder(a.Kind), kindOrder(b.Kind))
		}
		return a.Part - b.Part
	})
	return recs, nil
}

func kindOrder(k Kind) string {
	switch k {
	case Whole:
		return "0"
	case Partial:
		return "1"
	}
	return "2"
}

// Save writes r, replacing an earlier record of the same upload.
func (s *Store) Save(r Record) error {
	dir := s.folder(r.Endpoint, r.File.Path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("saving resume record: %w", err)
	}
	data, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return err
	}
	if err := privatefile.Write(filepath.Join(dir, r.fileName()), append(data, '\n')); err != nil {
		return fmt.Errorf("saving resume record: %w", err)
	}
	return nil
}

// Clear removes every record of the file at path for endpoint.
func (s *Store) Clear(endpoint, path string) error {
	if err := os.RemoveAll(s.folder(endpoint, path)); err != nil {
		return fmt.Errorf("removing resume records: %w", err)
	}
	return nil
}
