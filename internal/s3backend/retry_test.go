package s3backend

import (
	"os"
	"testing"

	"github.com/aws/smithy-go"

	"github.com/tusgate/tusgate/config"
)

// S3 answers some conflicts with 409 and asks for a retry: AWS's
// OperationAborted and ConditionalRequestConflict, and versitygw's
// ExistingObjectIsDirectory when a write into a folder races with the
// removal of that folder, emptied by a delete (its posix backend removes
// empty parent directories). The client retries them, and still gives up
// on answers that retrying cannot change.
func TestClientRetriesConflicts(t *testing.T) {
	t.Setenv("AWS_MAX_ATTEMPTS", "2") // the operator's limit still holds
	b, err := New(t.Context(), Options{
		Settings: config.S3{Bucket: "b", Endpoint: "https://127.0.0.1:1", PartSize: 8 << 20, MinPartSize: 5 << 20},
		MaxSize:  1 << 30, TempDir: t.TempDir(), LookupEnv: os.LookupEnv,
	})
	if err != nil {
		t.Fatal(err)
	}
	r := b.Client.Options().Retryer
	if n := r.MaxAttempts(); n != 2 {
		t.Errorf("max attempts %d, want AWS_MAX_ATTEMPTS's 2", n)
	}
	for code, want := range map[string]bool{
		"OperationAborted":           true,
		"ConditionalRequestConflict": true,
		"ExistingObjectIsDirectory":  true,
		"NoSuchKey":                  false,
		"AccessDenied":               false,
		"PreconditionFailed":         false,
	} {
		if got := r.IsErrorRetryable(&smithy.GenericAPIError{Code: code}); got != want {
			t.Errorf("%s: retryable %v, want %v", code, got, want)
		}
	}
}
