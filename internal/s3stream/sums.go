package s3stream

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"hash"
	"hash/crc32"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/smithy-go/middleware"
	smithyhttp "github.com/aws/smithy-go/transport/http"
)

// partSums are a part's SHA-256 and CRC32, computed as its buffer fills.
//
// Over plain HTTP, SigV4 signs the SHA-256 of the payload, so a part's
// request can only start once the part is complete. The AWS SDK would then
// read the whole buffer twice more before sending it (SHA-256, then its
// default CRC32 checksum), one part at a time; summing each read of the
// request body while it is still in the CPU's cache saves those passes,
// and the request can go at once, beside the parts before it.
type partSums struct {
	sha hash.Hash
	crc uint32
}

func newPartSums(pre []byte) *partSums {
	s := &partSums{sha: sha256.New()}
	s.add(pre)
	return s
}

func (s *partSums) add(p []byte) {
	s.sha.Write(p)
	s.crc = crc32.Update(s.crc, crc32.IEEETable, p)
}

// withPartSums is the call option of an UploadPart over plain HTTP whose
// body is a complete fillBody with sums s: the request carries s's SHA-256
// as its signed payload hash and s's CRC32 as its x-amz-checksum-crc32, so
// the SDK reads the body only to send it. As the SDK would, it leaves the
// CRC32 out where the operator turned request checksums off
// (AWS_REQUEST_CHECKSUM_CALCULATION=when_required).
func withPartSums(s *partSums) func(*s3.Options) {
	return func(o *s3.Options) {
		crc := o.RequestChecksumCalculation != aws.RequestChecksumCalculationWhenRequired
		o.APIOptions = append(o.APIOptions, func(st *middleware.Stack) error {
			// Before the checksum and payload hash middlewares, which leave
			// a checksum header and a payload hash that are set.
			return st.Finalize.Insert(partSumsMiddleware{s: s, crc: crc}, "ResolveEndpointV2", middleware.After)
		})
	}
}

type partSumsMiddleware struct {
	s   *partSums
	crc bool
}

func (partSumsMiddleware) ID() string { return "TusgatePartSums" }

func (m partSumsMiddleware) HandleFinalize(ctx context.Context, in middleware.FinalizeInput, next middleware.FinalizeHandler) (
	middleware.FinalizeOutput, middleware.Metadata, error,
) {
	req, ok := in.Request.(*smithyhttp.Request)
	if !ok {
		return middleware.FinalizeOutput{}, middleware.Metadata{}, fmt.Errorf("s3stream: unexpected request type %T", in.Request)
	}
	if m.crc {
		req.Header.Set("X-Amz-Checksum-Crc32", crc32Value(m.s.crc))
	}
	return next.HandleFinalize(v4.SetPayloadHash(ctx, hex.EncodeToString(m.s.sha.Sum(nil))), in)
}
