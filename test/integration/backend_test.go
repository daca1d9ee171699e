package integration

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/tusgate/tusgate/test/testenv"
)

const testBucket = "uploads"

// backend is a storage configuration the same test runs against.
type backend struct {
	name    string
	args    []string
	env     []string
	dataDir string
	s3      *testenv.S3Server // nil for the disk store
}

// s3Backend starts a versitygw of its own, over HTTPS as in production (so
// tusgate streams parts), and configures tusgate for it, with 5 MiB parts
// so that tests exercise many parts with little data.
func s3Backend(t *testing.T, extra ...string) *backend {
	t.Helper()
	s3 := testenv.StartS3(t, testenv.S3Options{TLS: true})
	s3.CreateBucket(t, testBucket)
	dir := t.TempDir()
	return &backend{
		name:    "s3",
		args:    append([]string{"--s3-bucket", testBucket, "--s3-part-size", "5MiB", "--data-dir", dir}, extra...),
		env:     s3.Env(),
		dataDir: dir,
		s3:      s3,
	}
}

func diskBackend(t *testing.T) *backend {
	t.Helper()
	dir := t.TempDir()
	return &backend{name: "disk", args: []string{"--data-dir", dir}, dataDir: dir}
}

// eachBackend runs f against the S3 and the disk store.
func eachBackend(t *testing.T, f func(t *testing.T, b *backend)) {
	t.Run("s3", func(t *testing.T) { f(t, s3Backend(t)) })
	t.Run("disk", func(t *testing.T) { f(t, diskBackend(t)) })
}

func (b *backend) start(t *testing.T, extra ...string) *gate {
	t.Helper()
	return startGate(t, b.env, append(append([]string{}, b.args...), extra...)...)
}

// objectKey is the S3 key of an upload: its ID up to the last "+" (which
// separates s3store's multipart upload ID).
func objectKey(id string) string {
	if i := strings.LastIndex(id, "+"); i >= 0 {
		return id[:i]
	}
	return id
}

// stored returns the SHA-256 and size of the stored upload, read from S3 or
// from the data directory directly (not through tusgate).
func (b *backend) stored(t *testing.T, url string) (string, int64) {
	t.Helper()
	id := uploadID(url)
	if b.s3 != nil {
		return b.s3.ObjectSHA256(t, testBucket, objectKey(id))
	}
	f, err := os.Open(filepath.Join(b.dataDir, id))
	if err != nil {
		t.Fatalf("stored upload: %v", err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(h.Sum(nil)), n
}

// assertStored checks the stored upload's bytes by SHA-256.
func (b *backend) assertStored(t *testing.T, url, wantSHA string, wantSize int64) {
	t.Helper()
	sum, size := b.stored(t, url)
	if sum != wantSHA || size != wantSize {
		t.Fatalf("stored upload: sha256 %s (%d bytes), want %s (%d bytes)", sum, size, wantSHA, wantSize)
	}
}

// assertGone checks that nothing of the upload is left in storage: no
// object, no .info or .part, no multipart upload.
func (b *backend) assertGone(t *testing.T, url string) {
	t.Helper()
	id := uploadID(url)
	if b.s3 != nil {
		key := objectKey(id)
		if keys := b.s3.Keys(t, testBucket, key); len(keys) != 0 {
			t.Fatalf("objects left after termination: %v", keys)
		}
		for _, mp := range b.s3.MultipartUploads(t, testBucket) {
			if strings.HasPrefix(mp, key+" ") {
				t.Fatalf("multipart upload left after termination: %s", mp)
			}
		}
		return
	}
	for _, p := range []string{id, id + ".info"} {
		if _, err := os.Stat(filepath.Join(b.dataDir, p)); !os.IsNotExist(err) {
			t.Fatalf("%s left after termination (stat: %v)", p, err)
		}
	}
}
