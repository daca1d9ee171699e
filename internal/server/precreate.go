package server

import (
	"context"
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
	return handler.HTTPResponse{}, changes, nil
}

// admit creates the upload info (create) if its owner's quota allows it,
// as one step per owner (quota.Gate). The ID preCreate gave the upload
// starts with the owner's folder.
func (s *Server) admit(ctx context.Context, info handler.FileInfo, create func() error) error {
	folder, _, _ := strings.Cut(info.ID, "/")
	size := info.Size
	if info.IsFinal || info.SizeIsDeferred {
		size = 0 // a final upload's bytes are its partial uploads', counted already
	}
	err := s.quota.Admit(ctx, folder, size, create)
	if he := (handler.Error{}); errors.As(err, &he) && he.ErrorCode == quota.ErrBusy.ErrorCode {
		s.log.WarnContext(ctx, "a user's upload creations waited too long for each other; answered 503 (slow storage listing?)", "owner_folder", folder)
	}
	return err
}

// countStorageError counts a storage error answered to a client.
func (s *Server) countStorageError(permanent bool) {
	kind := "transient"
	if permanent {
		kind = "permanent"
	}
	s.storageErrors.WithLabelValues(kind).Inc()
}
