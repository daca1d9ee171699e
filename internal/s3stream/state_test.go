package s3stream

import (
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func listed(spec ...[2]int64) []types.Part {
	var out []types.Part
	for _, s := range spec {
		out = append(out, types.Part{PartNumber: aws.Int32(int32(s[0])), Size: aws.Int64(s[1])})
	}
	return out
}

func TestContiguousParts(t *testing.T) {
	for _, tc := range []struct {
		name      string
		in        []types.Part
		keep      []int32
		staleWant []int32
	}{
		{"none", nil, nil, nil},
		{"contiguous", listed([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{3, 1}), []int32{1, 2, 3}, nil},
		{"unsorted", listed([2]int64{2, 5}, [2]int64{1, 5}), []int32{1, 2}, nil},
		{"gap", listed([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{4, 5}, [2]int64{5, 5}), []int32{1, 2}, []int32{4, 5}},
		{"missing first", listed([2]int64{2, 5}, [2]int64{3, 5}), nil, []int32{2, 3}},
		{"blanked part ends the run", listed([2]int64{1, 5}, [2]int64{2, 0}, [2]int64{3, 5}), []int32{1}, []int32{3}},
		{"blanked parts past the run are ignored", listed([2]int64{1, 5}, [2]int64{3, 0}, [2]int64{4, 0}), []int32{1}, nil},
		{"gap filled later, blanked tail ignored", listed([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{3, 5}, [2]int64{4, 0}), []int32{1, 2, 3}, nil},
	} {
		keep, stale := contiguousParts(tc.in)
		if !reflect.DeepEqual(partNumbersOf(keep), tc.keep) || !reflect.DeepEqual(stale, tc.staleWant) {
			t.Errorf("%s: keep %v stale %v; want %v %v", tc.name, partNumbersOf(keep), stale, tc.keep, tc.staleWant)
		}
	}
}

func partNumbersOf(ps []types.Part) []int32 {
	var out []int32
	for _, p := range ps {
		out = append(out, *p.PartNumber)
	}
	return out
}

// TestStalePartsBlanked: parts past a gap (here part 4 of an upload whose
// parts 2 and 3 are missing) do not count, and the next write blanks them
// before it adds parts, so that they never look contiguous later.
func TestStalePartsBlanked(t *testing.T) {
	e := newEnv(t, true)
	data := testData(150, 3)
	id := e.create(150, false)
	if n, err := e.patch(id, 0, reqBody(data[:64]), 64); err != nil || n != 64 {
		t.Fatalf("WriteChunk = %d, %v", n, err)
	}
	e.s3.configure(func(f *fakeS3) { f.upload(e.key(id)).parts[4] = []byte("stale bytes, not the upload's") })
	if off := e.offset(id); off != 64 {
		t.Fatalf("offset %d with a part past a gap, want 64", off)
	}
	if got := e.s3.partNumbers(e.key(id)); !reflect.DeepEqual(got, []int32{1, 4}) {
		t.Fatalf("reading the upload changed its parts: %v", got)
	}
	if n, err := e.patch(id, 64, reqBody(data[64:128]), 64); err != nil || n != 64 {
		t.Fatalf("WriteChunk = %d, %v", n, err)
	}
	if got := e.s3.partSizes(e.key(id)); !reflect.DeepEqual(got, []int64{64, 64, 0}) {
		t.Fatalf("part sizes %v after the write, want 64, 64 and part 4 blanked", got)
	}
	if n, err := e.patch(id, 128, reqBody(data[128:]), 22); err != nil || n != 22 {
		t.Fatalf("WriteChunk = %d, %v", n, err)
	}
	e.checkObject(id, data)
}
