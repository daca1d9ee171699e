package server

import (
	"errors"
	"net/http"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks"
	"github.com/tusgate/tusgate/internal/metadata"
	"github.com/tusgate/tusgate/internal/quota"
	"github.com/tusgate/tusgate/internal/safestore"
)

// preCreate validates the new upload's metadata strictly; tusd itself drops
// malformed pairs silently and passes the rest to S3 unchecked.
func (s *Server) preCreate(hook handler.HookEvent) (handler.HTTPResponse, handler.FileInfoChanges, error) {
	var (
		meta handler.MetaData
		err  error
	)
	// tusd checks sizes on tus 1.0 creations only, not on IETF-draft ones.
	if up := hook.Upload; !up.SizeIsDeferred {
		if up.Size < 0 {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.ErrInvalidUploadLength
		}
		if up.Size > s.cfg.MaxSize {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.ErrMaxSizeExceeded
		}
	} else if s.limits.Bytes > 0 {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_QUOTA_NEEDS_LENGTH",
			"this server limits the bytes each user may have in flight; declare the upload's length when creating it (Upload-Length)", http.StatusBadRequest)
	}
	if hook.Upload.IsFinal {
		// tusd has resolved (and so authorized) every ID.
		if err := safestore.CheckPartials(hook.Context, s.composer, hook.Upload.PartialUploads); err != nil {
			return handler.HTTPResponse{}, handler.FileInfoChanges{}, err
		}
	}
	maxSize := int(s.cfg.MaxMetadataSize)
	if isDraft(s.cfg.IETFDraft, &http.Request{Header: hook.HTTPRequest.Header}) {
		meta, err = metadata.Clean(hook.Upload.MetaData, maxSize)
	} else {
		meta, err = metadata.Parse(hook.HTTPRequest.Header.Get("Upload-Metadata"), maxSize)
	}
	if err != nil {
		return handler.HTTPResponse{}, handler.FileInfoChanges{}, handler.NewError("ERR_INVALID_METADATA", err.Error(), http.StatusBadRequest)
	}
	if !s.cfg.AuthEnabled() {
		return handler.HTTPResponse{}, handler.FileInfoChanges{MetaData: hooks.StripReserved(meta)}, nil
	}
	changes, err := hooks.BindOwner(hook.Context, meta)
	if err != nil {
		return handler.HTTPResponse{}, changes, err
	}
	folder, _, _ := strings.Cut(changes.ID, "/")
	size := hook.Upload.Size
	if hook.Upload.IsFinal {
		size = 0 // its bytes are its partial uploads', counted already
	}
	if err := quota.Check(hook.Context, s.usage, s.limits, folder, size); err != nil {
		var tusErr handler.Error
		if !errors.As(err, &tusErr) {
			answer := safestore.StorageError(err)
			kind := s.countStorageError(answer.ErrorCode == safestore.ErrStorageFailed.ErrorCode)
			s.log.ErrorContext(hook.Context, "quota check failed", "kind", kind, "error", err.Error())
			return handler.HTTPResponse{}, changes, answer
		}
		return handler.HTTPResponse{}, changes, err
	}
	return handler.HTTPResponse{}, changes, nil
}

// countStorageError counts a storage error answered to a client and
// returns its kind.
func (s *Server) countStorageError(permanent bool) string {
	kind := "transient"
	if permanent {
		kind = "permanent"
	}
	s.storageErrors.WithLabelValues(kind).Inc()
	return kind
}
