// Package resume keeps the resume records of the tusgate command-line
// client: for each (endpoint, file) the URLs of its uploads, and the
// identity of the file they were made for, so that running the same
// command again continues the same uploads, and a file that changed since
// is sent anew.
package resume

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// sampleSize is how much of a file's start and end its identity hashes.
const sampleSize = 1 << 20

// Identity tells one version of a file from another, cheaply: its path,
// size and modification time, and SHA-256s of its first and last MiB.
type Identity struct {
	Path    string `json:"path"` // absolute
	Size    int64  `json:"size"`
	ModTime int64  `json:"mtime_ns"` // Unix nanoseconds
	Head    string `json:"head_sha256"`
	Tail    string `json:"tail_sha256"`
}

// Identify returns the identity of the regular file at path.
func Identify(path string) (Identity, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return Identity{}, err
	}
	f, err := os.Open(abs)
	if err != nil {
		return Identity{}, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return Identity{}, err
	}
	if !fi.Mode().IsRegular() {
		return Identity{}, fmt.Errorf("%s is not a regular file", path)
	}
	id := Identity{Path: abs, Size: fi.Size(), ModTime: fi.ModTime().UnixNano()}
	if id.Head, err = hashRange(f, 0, min(sampleSize, id.Size)); err != nil {
		return Identity{}, err
	}
	tailStart := max(0, id.Size-sampleSize)
	if id.Tail, err = hashRange(f, tailStart, id.Size-tailStart); err != nil {
		return Identity{}, err
	}
	return id, nil
}

func hashRange(f *os.File, off, n int64) (string, error) {
	h := sha256.New()
	if _, err := io.Copy(h, io.NewSectionReader(f, off, n)); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// Changes describes how b differs from a, for a message ("" if the same).
func (a Identity) Changes(b Identity) string {
	var what []string
	if a.Path != b.Path {
		what = append(what, "path")
	}
	if a.Size != b.Size {
		what = append(what, fmt.Sprintf("size %d → %d bytes", a.Size, b.Size))
	}
	if a.ModTime != b.ModTime {
		what = append(what, "modified "+time.Unix(0, b.ModTime).Format(time.RFC3339))
	}
	if a.Head != b.Head || a.Tail != b.Tail {
		what = append(what, "content")
	}
	return strings.Join(what, ", ")
}
