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

func TestContiguousRun(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []types.Part
		want []int32
	}{
		{"none", nil, nil},
		{"contiguous", parts([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{3, 1}), []int32{1, 2, 3}},
		{"gap", parts([2]int64{1, 5}, [2]int64{2, 5}, [2]int64{4, 5}), []int32{1, 2}},
		{"missing first", parts([2]int64{2, 5}, [2]int64{3, 5}), nil},
		{"blanked part ends the run", parts([2]int64{1, 5}, [2]int64{2, 0}, [2]int64{3, 5}), []int32{1}},
	} {
		if got := numbers(contiguousRun(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("%s: %v, want %v", tc.name, got, tc.want)
		}
	}
}
