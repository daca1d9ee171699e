package s3backend

import (
	"reflect"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func parts(spec ...[2]int64) []types.Part {
	var out []types.Part
	for _, s := range spec {
		out = append(out, types.Part{PartNumber: aws.Int32(int32(s[0])), Size: aws.Int64(s[1])})
	}
	return out
}

func numbers(ps []types.Part) []int32 {
	var out []int32
	for _, p := range ps {
		out = append(out, *p.PartNumber)
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
		{"contiguous", parts([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{3, 1}), []int32{1, 2, 3}, nil},
		{"unsorted", parts([2]int64{2, 5}, [2]int64{1, 5}), []int32{1, 2}, nil},
		{"gap", parts([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{4, 5}, [2]int64{5, 5}), []int32{1, 2}, []int32{4, 5}},
		{"missing first", parts([2]int64{2, 5}, [2]int64{3, 5}), nil, []int32{2, 3}},
		{"blanked part ends the run", parts([2]int64{1, 5}, [2]int64{2, 0}, [2]int64{3, 5}), []int32{1}, []int32{3}},
		{"blanked parts past the run are ignored", parts([2]int64{1, 5}, [2]int64{3, 0}, [2]int64{4, 0}), []int32{1}, nil},
		{"gap filled later, blanked tail ignored", parts([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{3, 5}, [2]int64{4, 0}), []int32{1, 2, 3}, nil},
	} {
		keep, stale := contiguousParts(tc.in)
		if !reflect.DeepEqual(numbers(keep), tc.keep) || !reflect.DeepEqual(stale, tc.staleWant) {
			t.Errorf("%s: keep %v stale %v; want %v %v", tc.name, numbers(keep), stale, tc.keep, tc.staleWant)
		}
	}
}
