package safestore

import (
	"context"
	"errors"
	"net/http"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/storeerr"
	"github.com/tusgate/tusgate/internal/tuserror"
)

// ErrStorageUnavailable answers requests while the storage backend fails.
// tus clients retry 5xx on PATCH and POST; the HEAD guard turns it into 423
// for HEAD, the only status tus-js-client retries there without starting over.
var ErrStorageUnavailable = handler.Error{
	ErrorCode: "ERR_STORAGE_UNAVAILABLE",
	Message:   "the storage backend is temporarily unavailable; retry later",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusServiceUnavailable,
		Body:       "ERR_STORAGE_UNAVAILABLE: the storage backend is temporarily unavailable; retry later\n",
		Header: handler.HTTPHeader{
			"Content-Type": "text/plain; charset=utf-8",
			"Retry-After":  tuserror.RetryAfter,
		},
	},
}

// ErrStorageFailed answers requests that the storage backend refused for a
// reason retrying cannot clear (storeerr.IsPermanent: a missing bucket, a
// KMS key the gateway may not use, a request S3 will never accept, an
// internal inconsistency). It carries no Retry-After, so that clients stop
// rather than retry forever, and tells the user to contact the operator;
// the cause is in the log. It is a 500 on HEAD too (see PermanentHeader):
// resuming cannot help.
var ErrStorageFailed = handler.Error{
	ErrorCode: "ERR_STORAGE_FAILED",
	Message:   "the storage backend refused this request for a reason retrying cannot fix; contact the operator of this server",
	HTTPResponse: handler.HTTPResponse{
		StatusCode: http.StatusInternalServerError,
		Body:       "ERR_STORAGE_FAILED: the storage backend refused this request for a reason retrying cannot fix; contact the operator of this server\n",
		Header: handler.HTTPHeader{
			"Content-Type":  "text/plain; charset=utf-8",
			PermanentHeader: "1",
		},
	},
}

// PermanentHeader marks ErrStorageFailed answers for the server's guard,
// which turns other 5xx answers to HEAD into 423 (HEAD answers have no body
// to tell them apart by). The guard removes it before the answer leaves.
const PermanentHeader = "Tusgate-Permanent-Failure"

// fail maps a backend error to what the client should see
// (ErrStorageFailed if it is permanent, else ErrStorageUnavailable),
// and logs and counts it. tus errors pass unchanged: they are answers
// already, and an error fail has mapped is one of them, so each error is
// logged once.
func (s *store) fail(ctx context.Context, op, id string, err error) error {
	if err == nil {
		return nil
	}
	var tusErr handler.Error
	if errors.As(err, &tusErr) {
		return err
	}
	permanent := storeerr.IsPermanent(err)
	answer, kind := ErrStorageUnavailable, "transient"
	if permanent {
		answer, kind = ErrStorageFailed, "permanent"
	}
	s.opt.Log.ErrorContext(ctx, "storage backend failed", "kind", kind, "op", op, "id", id, "error", err.Error())
	if s.opt.OnStorageError != nil {
		s.opt.OnStorageError(permanent)
	}
	return answer
}
