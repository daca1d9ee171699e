package expiry

import (
	"context"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/tus/tusd/v2/pkg/s3store"

	"github.com/tusgate/tusgate/internal/layout"
	"github.com/tusgate/tusgate/test/testenv"
)

const testBucket = "uploads"

// s3Store is tusd's s3store on a real versitygw, with 16-byte parts. wrap,
// if set, wraps the client the inventory uses.
func s3Store(t *testing.T, prefix string, wrap func(S3API) S3API) store {
	srv := testenv.StartS3(t, testenv.S3Options{})
	// versitygw waits for idle keep-alive connections when stopped (5s,
	// then testenv kills it): give the client a transport we can close.
	tr := http.DefaultTransport.(*http.Transport).Clone()
	t.Cleanup(tr.CloseIdleConnections)
	srv.Client = s3.New(srv.Client.Options(), func(o *s3.Options) { o.HTTPClient = &http.Client{Transport: tr} })
	srv.CreateBucket(t, testBucket)
	ts := s3store.New(testBucket, srv.Client)
	ts.ObjectPrefix = prefix
	ts.MinPartSize = 16
	ts.PreferredPartSize = 16
	ts.TemporaryDirectory = t.TempDir()
	inv := &S3{Client: srv.Client, Bucket: testBucket, Prefix: prefix}
	if wrap != nil {
		inv.Client = wrap(srv.Client)
	}
	root := inv.root()
	key := func(id string) string { o, _ := layout.SplitID(id); return root + o }

	createMultipart := func(t *testing.T, key string) string {
		out, err := srv.Client.CreateMultipartUpload(t.Context(), &s3.CreateMultipartUploadInput{Bucket: aws.String(testBucket), Key: aws.String(key)})
		if err != nil {
			t.Fatal(err)
		}
		return aws.ToString(out.UploadId)
	}
	var othersMade bool
	return withTusd(ts, store{
		inv:  inv,
		tomb: inv,
		orphan: func(t *testing.T) string {
			k := root + uploadName(t)
			createMultipart(t, k)
			return k
		},
		age: func(t *testing.T, d time.Duration) {
			// versitygw's posix backend reports file and directory mtimes
			// as LastModified and Initiated.
			then := time.Now().Add(-d)
			err := filepath.WalkDir(filepath.Join(srv.Dir, testBucket), func(p string, _ fs.DirEntry, err error) error {
				if err != nil {
					return err
				}
				return os.Chtimes(p, then, then)
			})
			if err != nil {
				t.Fatal(err)
			}
		},
		traces: func(t *testing.T, id string) []string {
			k := key(id)
			var tr []string
			for _, x := range srv.Keys(t, testBucket, k) {
				if x == k || x == k+".info" || x == k+".part" {
					tr = append(tr, x)
				}
			}
			for _, mu := range srv.MultipartUploads(t, testBucket) {
				if strings.HasPrefix(mu, k+" ") {
					tr = append(tr, "multipart "+mu)
				}
			}
			slices.Sort(tr)
			return tr
		},
		orphanExists: func(t *testing.T, k string) bool {
			return slices.ContainsFunc(srv.MultipartUploads(t, testBucket), func(mu string) bool { return strings.HasPrefix(mu, k+" ") })
		},
		finished: func(t *testing.T, id string) (bool, bool) {
			keys := srv.Keys(t, testBucket, key(id))
			return slices.Contains(keys, key(id)), slices.Contains(keys, key(id)+".info")
		},
		others: func(t *testing.T) []string {
			if !othersMade {
				othersMade = true
				// tusgate's own files, and a multipart upload there that
				// would be an orphan anywhere else.
				for _, k := range []string{root + ".tusgate/state", root + ownerFolder + "/.hidden/x"} {
					if _, err := srv.Client.PutObject(t.Context(), &s3.PutObjectInput{Bucket: aws.String(testBucket), Key: aws.String(k), Body: strings.NewReader("x")}); err != nil {
						t.Fatal(err)
					}
				}
				createMultipart(t, root+".tusgate/big")
				createMultipart(t, root+ownerFolder+"/.hidden/y")
				if root != "" {
					createMultipart(t, "elsewhere/"+uploadName(t))
				}
			}
			var o []string
			for _, k := range srv.Keys(t, testBucket, "") {
				if strings.Contains(k, "/.") || strings.HasPrefix(k, ".") || !strings.HasPrefix(k, root) {
					o = append(o, k)
				}
			}
			for _, mu := range srv.MultipartUploads(t, testBucket) {
				if strings.Contains(mu, "/.") || strings.HasPrefix(mu, ".") || !strings.HasPrefix(mu, root) {
					o = append(o, "multipart "+mu)
				}
			}
			// Tombstones come and go.
			return slices.DeleteFunc(o, func(k string) bool { return strings.HasPrefix(k, root+".tusgate/expired/") })
		},
		partTail: func(id string) string { return key(id) + ".part" },
	})
}

func TestS3(t *testing.T) {
	scenario(t, s3Store(t, "up", nil))
}

func TestS3NoPrefix(t *testing.T) {
	scenario(t, s3Store(t, "", nil))
}

// TestS3Paging runs the scenario with listings of one or two entries a
// page, so that every listing needs its markers.
func TestS3Paging(t *testing.T) {
	scenario(t, s3Store(t, "up", func(c S3API) S3API { return smallPages{c} }))
}

// smallPages asks for tiny pages.
type smallPages struct{ S3API }

func (c smallPages) ListMultipartUploads(ctx context.Context, in *s3.ListMultipartUploadsInput, opts ...func(*s3.Options)) (*s3.ListMultipartUploadsOutput, error) {
	in.MaxUploads = aws.Int32(1)
	return c.S3API.ListMultipartUploads(ctx, in, opts...)
}

func (c smallPages) ListParts(ctx context.Context, in *s3.ListPartsInput, opts ...func(*s3.Options)) (*s3.ListPartsOutput, error) {
	in.MaxParts = aws.Int32(1)
	return c.S3API.ListParts(ctx, in, opts...)
}

func (c smallPages) ListObjectsV2(ctx context.Context, in *s3.ListObjectsV2Input, opts ...func(*s3.Options)) (*s3.ListObjectsV2Output, error) {
	in.MaxKeys = aws.Int32(1)
	return c.S3API.ListObjectsV2(ctx, in, opts...)
}

// TestS3RemoveFinished checks that Remove leaves alone an upload that was
// finished after it was listed.
func TestS3RemoveFinished(t *testing.T) {
	s := s3Store(t, "up", nil)
	id := s.create(t, 10, "0123456789")
	s.finish(t, id)
	err := s.inv.Remove(t.Context(), Upload{ID: id})
	if err == nil || !strings.Contains(err.Error(), "finished meanwhile") {
		t.Errorf("Remove of a finished upload: %v", err)
	}
	if data, info := s.finished(t, id); !data || !info {
		t.Errorf("finished upload: data %v, .info %v; want both kept", data, info)
	}
}

func TestS3TombstoneIDs(t *testing.T) {
	tombstoneIDs(t, s3Store(t, "up", nil).tomb, ownerFolder+"/0123456789abcdef+mp.id-1", ownerFolder+"/0123456789abcdef")
}
