package s3stream

import (
	"context"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
	"github.com/aws/smithy-go"
)

// complete completes the multipart upload of key from parts, with the
// checksums its creation asked for (see withChecksums). It lists the parts
// first: S3's listing is the one record of each part's checksum that
// survives restarts and other instances.
func (s *Store) complete(ctx context.Context, key, multipartID string, parts []types.CompletedPart) error {
	listing, err := s.listParts(ctx, key, multipartID)
	if err != nil {
		return fmt.Errorf("s3stream: listing the parts of %s to complete it: %w", key, err)
	}
	in := &s3.CompleteMultipartUploadInput{
		Bucket:          aws.String(s.Inner.Bucket),
		Key:             aws.String(key),
		UploadId:        aws.String(multipartID),
		MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
	}
	if err := withChecksums(in, listing); err != nil {
		return fmt.Errorf("s3stream: completing %s: %w", key, err)
	}
	_, err = s.Objects.CompleteMultipartUpload(ctx, in)
	if err != nil && in.ChecksumCRC32 != nil && emptyObject(listing, parts) && checksumRefused(err) {
		// MinIO refuses the CRC32 of nothing as an empty object's
		// full-object checksum (it keeps none for an empty object); S3 and
		// versitygw take it. Without the value S3 computes it itself.
		in.ChecksumCRC32 = nil
		_, err = s.Objects.CompleteMultipartUpload(ctx, in)
	}
	if err != nil {
		return fmt.Errorf("s3stream: completing %s: %w", key, err)
	}
	return nil
}

// emptyObject tells whether the parts completed hold no byte.
func emptyObject(listing *s3.ListPartsOutput, parts []types.CompletedPart) bool {
	named := make(map[int32]bool, len(parts))
	for _, p := range parts {
		named[aws.ToInt32(p.PartNumber)] = true
	}
	for _, p := range listing.Parts {
		if named[aws.ToInt32(p.PartNumber)] && aws.ToInt64(p.Size) > 0 {
			return false
		}
	}
	return true
}

// checksumRefused tells whether S3 refused a request's checksum.
func checksumRefused(err error) bool {
	var api smithy.APIError
	if !errors.As(err, &api) {
		return false
	}
	switch api.ErrorCode() {
	case "XAmzContentChecksumMismatch", "BadDigest", "InvalidDigest":
		return true
	}
	return false
}

// listParts lists every part of a multipart upload, every page. The
// answer's other fields are its first page's.
func (s *Store) listParts(ctx context.Context, key, multipartID string) (*s3.ListPartsOutput, error) {
	in := &s3.ListPartsInput{Bucket: aws.String(s.Inner.Bucket), Key: aws.String(key), UploadId: aws.String(multipartID)}
	var all *s3.ListPartsOutput
	for {
		out, err := s.Objects.ListParts(ctx, in)
		if err != nil {
			return nil, err
		}
		if all == nil {
			all = out
		} else {
			all.Parts = append(all.Parts, out.Parts...)
		}
		if !aws.ToBool(out.IsTruncated) || out.NextPartNumberMarker == nil {
			return all, nil
		}
		in.PartNumberMarker = out.NextPartNumberMarker
	}
}

// withChecksums adds to a CompleteMultipartUpload what the upload's
// creation asked for, as its listing reports it (ChecksumAlgorithm,
// ChecksumType):
//
//   - with a checksum algorithm, every part's checksum in it, which S3
//     requires (and checks against the part's);
//   - with FULL_OBJECT CRC32 (what s3backend asks for), also the CRC32 of
//     the whole object, combined from the parts' CRC32s and sizes, and the
//     type: S3 computes the same from the parts and refuses the completion
//     if they differ, so the finished object carries a full-object CRC32
//     that S3 validated;
//   - without an algorithm (created before tusgate asked for one, on an S3
//     without full-object checksums, or with request checksums off), or
//     with one tusgate never asks for, none.
//
// A part S3 lists without its checksum goes without it (and then the
// object without a full-object value): S3 decides. Each completed part
// must be in the listing with the same ETag.
func withChecksums(in *s3.CompleteMultipartUploadInput, listing *s3.ListPartsOutput) error {
	algo := listing.ChecksumAlgorithm
	switch algo {
	case types.ChecksumAlgorithmCrc32, types.ChecksumAlgorithmCrc32c, types.ChecksumAlgorithmCrc64nvme,
		types.ChecksumAlgorithmSha1, types.ChecksumAlgorithmSha256:
	default: // none ("", or versitygw's "null"), or not one tusgate asks for
		return nil
	}
	listed := make(map[int32]types.Part, len(listing.Parts))
	for _, p := range listing.Parts {
		listed[aws.ToInt32(p.PartNumber)] = p
	}
	full := algo == types.ChecksumAlgorithmCrc32 && listing.ChecksumType == types.ChecksumTypeFullObject
	var sum crc32Combiner
	parts := in.MultipartUpload.Parts
	for i, cp := range parts {
		n := aws.ToInt32(cp.PartNumber)
		p, ok := listed[n]
		if !ok || strings.Trim(aws.ToString(p.ETag), `"`) != strings.Trim(aws.ToString(cp.ETag), `"`) {
			return fmt.Errorf("part %d (ETag %s) is not in S3's listing of the upload", n, aws.ToString(cp.ETag))
		}
		value := partChecksum(algo, p)
		if value == nil {
			full = false
			continue
		}
		setPartChecksum(&parts[i], algo, value)
		if full {
			crc, err := parseCRC32(*value)
			if err != nil {
				return fmt.Errorf("part %d: %w", n, err)
			}
			sum.add(crc, aws.ToInt64(p.Size))
		}
	}
	if full {
		in.ChecksumType = types.ChecksumTypeFullObject
		in.ChecksumCRC32 = aws.String(crc32Value(sum.sum))
	}
	return nil
}

// partChecksum is a listed part's checksum of algorithm algo, or nil.
func partChecksum(algo types.ChecksumAlgorithm, p types.Part) *string {
	switch algo {
	case types.ChecksumAlgorithmCrc32:
		return p.ChecksumCRC32
	case types.ChecksumAlgorithmCrc32c:
		return p.ChecksumCRC32C
	case types.ChecksumAlgorithmCrc64nvme:
		return p.ChecksumCRC64NVME
	case types.ChecksumAlgorithmSha1:
		return p.ChecksumSHA1
	case types.ChecksumAlgorithmSha256:
		return p.ChecksumSHA256
	}
	return nil
}

func setPartChecksum(cp *types.CompletedPart, algo types.ChecksumAlgorithm, value *string) {
	switch algo {
	case types.ChecksumAlgorithmCrc32:
		cp.ChecksumCRC32 = value
	case types.ChecksumAlgorithmCrc32c:
		cp.ChecksumCRC32C = value
	case types.ChecksumAlgorithmCrc64nvme:
		cp.ChecksumCRC64NVME = value
	case types.ChecksumAlgorithmSha1:
		cp.ChecksumSHA1 = value
	case types.ChecksumAlgorithmSha256:
		cp.ChecksumSHA256 = value
	}
}

// parseCRC32 reads a CRC32 as S3 writes it (crc32Value).
func parseCRC32(s string) (uint32, error) {
	raw, err := base64.StdEncoding.DecodeString(s)
	if err != nil || len(raw) != 4 {
		return 0, fmt.Errorf("the CRC32 %q is not 4 bytes in base64", s)
	}
	return binary.BigEndian.Uint32(raw), nil
}
