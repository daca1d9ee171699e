package s3backend

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/credentials"
	"github.com/aws/aws-sdk-go-v2/service/s3"

	"github.com/tusgate/tusgate/internal/lockscope"
)

// fakeParts answers ListParts with parts 1..n of 5 bytes (numbers in
// blank answer with size 0) and records each request's part-number-marker.
type fakeParts struct {
	mu      sync.Mutex
	n       int
	blank   map[int]bool
	markers []string
}

func (f *fakeParts) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	marker := r.URL.Query().Get("part-number-marker")
	f.markers = append(f.markers, marker)
	from := 0
	fmt.Sscan(marker, &from)
	w.Header().Set("Content-Type", "application/xml")
	fmt.Fprint(w, `<ListPartsResult><Bucket>b</Bucket><Key>up/o/a</Key><UploadId>m</UploadId><IsTruncated>false</IsTruncated>`)
	for i := from + 1; i <= f.n; i++ {
		size := 5
		if f.blank[i] {
			size = 0
		}
		fmt.Fprintf(w, `<Part><PartNumber>%d</PartNumber><ETag>"e%d"</ETag><Size>%d</Size></Part>`, i, i, size)
	}
	fmt.Fprint(w, `</ListPartsResult>`)
}

func (f *fakeParts) lastMarker() string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.markers[len(f.markers)-1]
}

// The listing cache is used and taught only under the upload's lock, and
// TrimListed keeps provisional parts out of it: a listing without the lock
// may race with a write that blanks the parts it lists, and a provisional
// part may be blanked and written again, which a cached run would hide.
func TestListCacheOnlyUnderLock(t *testing.T) {
	f := &fakeParts{n: 4, blank: map[int]bool{}}
	srv := httptest.NewServer(f)
	t.Cleanup(srv.Close)
	client := s3.New(s3.Options{
		Region: "us-east-1", BaseEndpoint: aws.String(srv.URL), UsePathStyle: true,
		Credentials:      aws.NewCredentialsCache(credentials.NewStaticCredentialsProvider("k", "s", "")),
		RetryMaxAttempts: 1,
	})
	c := newGuardedClient(client, slog.New(slog.DiscardHandler), objectSettings{Prefix: "up/"})
	in := &s3.ListPartsInput{Bucket: aws.String("b"), Key: aws.String("up/o/a"), UploadId: aws.String("m")}
	list := func(ctx context.Context) int {
		t.Helper()
		out, err := c.ListParts(ctx, in)
		if err != nil {
			t.Fatal(err)
		}
		return len(out.Parts)
	}

	unlocked := lockscope.New(context.Background())
	if n := list(unlocked); n != 4 || f.lastMarker() != "" {
		t.Fatalf("unlocked listing: %d parts, marker %q", n, f.lastMarker())
	}
	locked := lockscope.New(context.Background())
	release := lockscope.Add(locked, "o/a+m")
	defer release()
	if n := list(locked); n != 4 || f.lastMarker() != "" {
		t.Fatalf("the unlocked listing taught the cache: %d parts, marker %q", n, f.lastMarker())
	}
	if n := list(locked); n != 4 || f.lastMarker() != "4" {
		t.Fatalf("a locked listing after a locked one: %d parts, marker %q; want the cached 4", n, f.lastMarker())
	}
	list(unlocked)
	if f.lastMarker() != "" {
		t.Fatalf("an unlocked listing used the cache: marker %q", f.lastMarker())
	}

	// Parts 3 and 4 are provisional and get blanked: trimmed, the cache
	// lists from part 2 on and sees them blank.
	c.TrimListed("up/o/a", "m", 2)
	f.mu.Lock()
	f.blank[3], f.blank[4] = true, true
	f.mu.Unlock()
	out, err := c.ListParts(locked, in)
	if err != nil {
		t.Fatal(err)
	}
	if f.lastMarker() != "2" || len(out.Parts) != 4 || *out.Parts[2].Size != 0 {
		t.Fatalf("after TrimListed: marker %q, parts %d", f.lastMarker(), len(out.Parts))
	}
}
