// Package storeerr tells storage errors that retrying cannot clear
// (permanent) from those it may (transient).
//
// A transient error (an S3 5xx, throttling, a timeout, a dropped
// connection, lock trouble) answers clients 503 with Retry-After, and HEAD
// 423, so that tus clients keep retrying and resume where they were. A
// permanent error (a request S3 will never accept, a missing bucket, a KMS
// key the gateway may not use, an internal inconsistency) answers 500
// without Retry-After: retrying only repeats it, and the operator must act.
//
// Code that knows an error is permanent marks it with Permanent; code that
// maps errors to answers asks IsPermanent, which also recognises S3's
// permanent error codes. Everything else is transient: an error of unknown
// kind is retried, never dropped. HTTPStatus reads the HTTP status of the
// S3 answer an error reports, for code that decides by it (404: gone).
package storeerr

import (
	"errors"
	"regexp"
	"strconv"
	"strings"

	"github.com/aws/smithy-go"
)

// permanent marks an error as permanent; see Permanent.
type permanent struct{ err error }

func (p *permanent) Error() string { return p.err.Error() }
func (p *permanent) Unwrap() error { return p.err }

// Permanent returns err marked as permanent: retrying the request that
// failed with it cannot succeed (for example, a store found its own state
// inconsistent). The result keeps err's message and wraps it (errors.Is and
// errors.As see err). Wrapping the result again, with %w, keeps the mark.
// Permanent(nil) is nil. Marking a tus error (handler.Error) changes
// nothing: the store wrapper answers with a tus error in the chain as it is.
// Safe to call from any goroutine; the mark is a value, not state.
func Permanent(err error) error {
	if err == nil {
		return nil
	}
	return &permanent{err: err}
}

// IsPermanent reports whether retrying cannot clear err: err, or an error
// it wraps, was marked with Permanent, or err is an S3 error that is
// permanent by its code (see s3Permanent). nil, unmarked errors and
// unknown S3 errors are not permanent. In a joined error (errors.Join),
// one permanent error makes the whole permanent.
func IsPermanent(err error) bool {
	if err == nil {
		return false
	}
	var p *permanent
	if errors.As(err, &p) {
		return true
	}
	code, msg, status, ok := s3Error(err)
	return ok && s3Permanent(code, msg, status)
}

// permanentCodes are the S3 error codes that retrying cannot clear.
var permanentCodes = map[string]bool{
	"InvalidArgument":     true, // a header or value this S3 does not accept
	"InvalidRequest":      true, // e.g. a checksum or encryption setting it does not support
	"EntityTooLarge":      true, // a part or object over S3's limits
	"EntityTooSmall":      true, // a part under S3's minimum part size
	"NoSuchBucket":        true,
	"InvalidBucketName":   true,
	"InvalidStorageClass": true, // --s3-storage-class this S3 does not offer
	"NotImplemented":      true, // a feature this S3 does not have
	// KMS keys (SSE-KMS) that cannot be used. KMS's transient errors
	// (KMS.KeyUnavailableException, KMS.DependencyTimeoutException,
	// KMS.KMSInternalException, KMS.ThrottlingException,
	// KMS.LimitExceededException) are not listed.
	"KMS.DisabledException":          true,
	"KMS.KMSInvalidStateException":   true,
	"KMS.NotFoundException":          true,
	"KMS.InvalidKeyUsageException":   true,
	"KMS.AccessDeniedException":      true,
	"KMS.IncorrectKeyException":      true,
	"KMS.InvalidCiphertextException": true,
}

// s3Permanent classifies an S3 error answer by its code, message and HTTP
// status. A 5xx (but 501 Not Implemented), 408 or 429 is transient whatever
// its code. AccessDenied is permanent only when it concerns a KMS key
// (S3's message then names KMS, as in "not authorized to perform:
// kms:GenerateDataKey"): other denials can be passing (credentials being
// rotated, a policy being propagated).
func s3Permanent(code, msg string, status int) bool {
	switch {
	case status == 501:
		return true
	case status >= 500, status == 408, status == 429:
		return false
	case permanentCodes[code]:
		return true
	case code == "AccessDenied":
		return strings.Contains(strings.ToLower(msg), "kms")
	}
	return false
}

// HTTPStatus returns the HTTP status of the S3 answer that err reports, or 0
// when it reports none (nil, a connection error, an error not from S3). It
// finds the AWS SDK's response error in err's chain or, for an SDK error
// that was formatted into another error's text rather than wrapped (see
// sdkError), reads the status from the text.
func HTTPStatus(err error) int {
	if err == nil {
		return 0
	}
	_, _, status, _ := s3Error(err)
	return status
}

// statusCoder is implemented by the AWS SDK's HTTP response errors
// (awshttp.ResponseError and smithy-go's, which it embeds).
type statusCoder interface{ HTTPStatusCode() int }

// s3Error returns the code, message and HTTP status of an S3 error answer
// in err's chain; ok is false when there is none.
func s3Error(err error) (code, msg string, status int, ok bool) {
	var sc statusCoder
	if errors.As(err, &sc) {
		status, ok = sc.HTTPStatusCode(), true
	}
	var api smithy.APIError
	if errors.As(err, &api) {
		return api.ErrorCode(), api.ErrorMessage(), status, true
	}
	if ok {
		return "", "", status, true
	}
	return flattened(err.Error())
}

// sdkError matches the text of an AWS SDK error answer. tusd's s3store
// formats some SDK errors with %s instead of wrapping them (e.g. "s3store:
// unable to create multipart upload:\n<error>", the request where a KMS key
// is first used), so their code survives only in the text:
//
//	operation error S3: CreateMultipartUpload, https response error StatusCode: 403, RequestID: …, HostID: …, api error AccessDenied: <message>
//
// (Errors S3's API models, such as NoSuchBucket, read "NoSuchBucket:
// <message>" without "api error".)
var sdkError = regexp.MustCompile(`operation error S3: \w+, https? response error StatusCode: (\d+), RequestID: [^,]*, HostID: [^,]*, (?:api error )?([\w.]+): (.*)`)

// flattened reads code, message and status from an SDK error's text.
func flattened(text string) (code, msg string, status int, ok bool) {
	m := sdkError.FindStringSubmatch(strings.ReplaceAll(text, "\n", " "))
	if m == nil {
		return "", "", 0, false
	}
	status, _ = strconv.Atoi(m[1])
	return m[2], m[3], status, true
}
