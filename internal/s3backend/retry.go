package s3backend

import (
	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
)

// conflictCodes are S3 answers (409) to a request that ran into another
// one on the same key, which S3 asks clients to retry: AWS's
// OperationAborted ("a conflicting conditional operation is currently in
// progress") and ConditionalRequestConflict, and versitygw's
// ExistingObjectIsDirectory, which its posix backend answers when a write
// into a folder races with a delete that removes the emptied folder (seen
// with a direct upload's record written while a webhook event was
// deleted). The SDK's standard retryer does not retry them.
var conflictCodes = []string{"OperationAborted", "ConditionalRequestConflict", "ExistingObjectIsDirectory"}

// retryConflicts returns base's retryer (the SDK's standard one if base is
// nil) retrying conflictCodes too. Requests whose body cannot be rewound
// are sent with their own attempts (s3stream's noRetries), and the SDK's
// attempt limit (AWS_MAX_ATTEMPTS) is applied on top by the client.
func retryConflicts(base func() aws.Retryer) func() aws.Retryer {
	return func() aws.Retryer {
		var r aws.Retryer
		if base != nil {
			r = base()
		} else {
			r = retry.NewStandard()
		}
		return retry.AddWithErrorCodes(r, conflictCodes...)
	}
}
