package ietfdraft

import (
	"bytes"
	"errors"
	"maps"
	"mime"
	"net/http"
	"strconv"
	"time"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/checksum"
	"github.com/tusgate/tusgate/internal/objsha"
)

// errNoComplete refuses a creation or append without a valid
// Upload-Complete, which the draft requires in both.
var errNoComplete = handler.NewError("ERR_INVALID_UPLOAD_COMPLETE",
	"send Upload-Complete: ?1 if this request carries the rest of the upload, else ?0", http.StatusBadRequest)

// errContentType refuses an append whose content is not
// application/partial-upload.
var errContentType = handler.NewError("ERR_INVALID_CONTENT_TYPE",
	"append to an upload with Content-Type: "+partialUpload, http.StatusUnsupportedMediaType)

// create serves an upload creation: POST to the base path.
func (h *Handler) create(w http.ResponseWriter, r *http.Request) {
	hd := w.Header()
	complete, ok := sfBool(r.Header, "Upload-Complete")
	if !ok {
		h.fail(w, r, errNoComplete)
		return
	}
	// The length is Upload-Length, or the content's with Upload-Complete: ?1.
	length, known := sfUint(r.Header, "Upload-Length")
	if complete && r.ContentLength >= 0 {
		if known && length != r.ContentLength {
			inconsistent(w, "Upload-Length differs from the length of the content, which completes the upload")
			return
		}
		length, known = r.ContentLength, true
	}
	if h.cfg.MaxSize > 0 && (known && length > h.cfg.MaxSize || r.ContentLength > h.cfg.MaxSize) {
		hd.Set("Upload-Limit", h.limits(nil, time.Time{}))
		h.fail(w, r, handler.ErrMaxSizeExceeded)
		return
	}
	meta, err := fileMeta(r)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	digest, err := contentDigest(r)
	var repr []byte
	if err == nil {
		repr, err = reprDigest(r)
	}
	if err != nil {
		digestFieldProblem(w, err)
		return
	}
	c, end := h.newCall(w, r)
	defer end()
	c.digest = digest

	info := handler.FileInfo{Size: length, SizeIsDeferred: !known, MetaData: meta}
	if h.cfg.PreCreate != nil {
		header := r.Header.Clone()
		header.Set("Host", r.Host)
		_, changes, err := h.cfg.PreCreate(handler.HookEvent{Context: c.ctx, Upload: info, HTTPRequest: handler.HTTPRequest{
			Method: r.Method, URI: r.RequestURI, RemoteAddr: r.RemoteAddr, Header: header,
		}})
		if err != nil {
			h.fail(w, r, err)
			return
		}
		if changes.ID != "" {
			info.ID = changes.ID
		}
		if changes.MetaData != nil {
			info.MetaData = changes.MetaData
		}
		if changes.Storage != nil {
			info.Storage = changes.Storage
		}
	}
	if repr != nil {
		// A reserved key: set after the pre-create hook, which strips
		// clients' reserved keys.
		info.MetaData = maps.Clone(info.MetaData)
		if info.MetaData == nil {
			info.MetaData = handler.MetaData{}
		}
		info.MetaData[objsha.ReprKey] = objsha.Encode(repr)
	}
	up, err := h.cfg.Composer.Core.NewUpload(c.ctx, info)
	if err == nil {
		info, err = up.GetInfo(c.ctx)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	// Announce the upload before its content is read (the interop version
	// is already set: the draft requires it on a 104, which goes only to
	// clients of a version served here).
	hd.Set("Location", h.url(r, info.ID))
	hd.Set("Upload-Limit", h.limits(nil, time.Time{}))
	w.WriteHeader(104) // Upload Resumption Supported
	h.cfg.Log.InfoContext(c.ctx, "upload created (IETF draft)", "id", info.ID, "size", info.Size, "deferred", info.SizeIsDeferred)

	unlock, err := c.lock(info.ID)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer unlock()
	h.transfer(c, up, info, complete, http.StatusCreated)
}

// offset serves an offset retrieval: HEAD (or GET) of an upload.
func (h *Handler) offset(w http.ResponseWriter, r *http.Request, id string) {
	c, end := h.newCall(w, r)
	defer end()
	// Taking the lock ends a transfer still in progress (the draft's
	// recommended handling of concurrent requests): what it stored is
	// saved, and the offset read after is one an append may start from.
	_, info, unlock, err := c.open(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer unlock()
	hd := w.Header()
	hd.Set("Cache-Control", "no-store")
	hd.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
	hd.Set("Upload-Complete", boolField(finished(info)))
	if !info.SizeIsDeferred {
		hd.Set("Upload-Length", strconv.FormatInt(info.Size, 10))
	}
	hd.Set("Upload-Limit", h.limits(&info, h.expires(c.ctx, id, info)))
	if sum, ok := objsha.Sum(info); ok && finished(info) {
		hd.Set("Repr-Digest", reprDigestValue(sum))
	}
	w.WriteHeader(http.StatusNoContent)
}

// append serves an upload append: PATCH of an upload.
func (h *Handler) append(w http.ResponseWriter, r *http.Request, id string) {
	hd := w.Header()
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != partialUpload {
		h.fail(w, r, errContentType)
		return
	}
	offset, ok := sfUint(r.Header, "Upload-Offset")
	if !ok {
		h.fail(w, r, handler.ErrInvalidOffset)
		return
	}
	complete, ok := sfBool(r.Header, "Upload-Complete")
	if !ok {
		h.fail(w, r, errNoComplete)
		return
	}
	length, hasLength := sfUint(r.Header, "Upload-Length")
	if complete && r.ContentLength >= 0 && hasLength && offset+r.ContentLength != length {
		inconsistent(w, "Upload-Length differs from Upload-Offset plus the length of the content, which completes the upload")
		return
	}
	digest, err := contentDigest(r)
	if err != nil {
		digestFieldProblem(w, err)
		return
	}

	c, end := h.newCall(w, r)
	defer end()
	c.digest = digest
	up, info, unlock, err := c.open(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer unlock()
	switch {
	case info.IsFinal:
		h.fail(w, r, handler.ErrModifyFinal) // a tus final upload
		return
	case offset != info.Offset:
		hd.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		problem(w, http.StatusConflict, problemMismatchingOffset, "Upload-Offset does not match the upload's offset",
			map[string]any{"expected-offset": info.Offset, "provided-offset": offset})
		return
	case finished(info) && complete && r.ContentLength == 0 && Version(r) != "7":
		// The answer that completed it was lost: answer it again (from
		// -09 on; -08 requires refusing any append to a complete upload).
		hd.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		hd.Set("Upload-Complete", "?1")
		w.WriteHeader(http.StatusNoContent)
		return
	case finished(info):
		problem(w, http.StatusBadRequest, problemCompletedUpload, "the upload is complete and takes no more content", nil)
		return
	}

	// Record the length as soon as it is known, so that no write goes past
	// it (safestore refuses it with 413).
	declare := int64(-1)
	switch {
	case hasLength:
		declare = length
	case complete && r.ContentLength >= 0:
		declare = offset + r.ContentLength
	}
	if declare >= 0 && !info.SizeIsDeferred && declare != info.Size {
		inconsistent(w, "the upload's length is "+strconv.FormatInt(info.Size, 10)+" bytes")
		return
	}
	if declare >= 0 && info.SizeIsDeferred {
		if h.cfg.MaxSize > 0 && declare > h.cfg.MaxSize {
			hd.Set("Upload-Limit", h.limits(nil, time.Time{}))
			h.fail(w, r, handler.ErrMaxSizeExceeded)
			return
		}
		if err := h.cfg.Composer.LengthDeferrer.AsLengthDeclarableUpload(up).DeclareLength(c.ctx, declare); err != nil {
			h.fail(w, r, err)
			return
		}
		info.Size, info.SizeIsDeferred = declare, false
	}
	h.transfer(c, up, info, complete, http.StatusNoContent)
}

// transfer stores the request's content at the upload's offset, completes
// the upload when the request says so or its length is reached, and
// answers with status.
func (h *Handler) transfer(c *call, up handler.Upload, info handler.FileInfo, complete bool, status int) {
	w, r := c.w, c.r
	hd := w.Header()
	if r.ContentLength != 0 {
		ctx := c.ctx
		if c.digest != nil {
			ctx = checksum.With(ctx, c.digest)
		}
		n, err := up.WriteChunk(ctx, info.Offset, c.readBody())
		if berr := c.body.error(); err == nil {
			err = berr
		}
		info.Offset += n
		if c.digest != nil && (errors.Is(err, checksum.ErrMismatch) || errors.Is(err, checksum.ErrUnverified)) {
			contentDigestProblem(w, info.Offset, err)
			return
		}
		if err != nil {
			h.fail(w, r, err)
			return
		}
	} else if c.digest != nil {
		// No content: its digest is that of nothing.
		v := c.digest.Wrap(bytes.NewReader(nil), 0)
		if err := v.Verify(); err != nil {
			contentDigestProblem(w, info.Offset, err)
			return
		}
	}
	if complete && info.SizeIsDeferred {
		// The content's length was not known before it ended.
		if err := h.cfg.Composer.LengthDeferrer.AsLengthDeclarableUpload(up).DeclareLength(c.ctx, info.Offset); err != nil {
			h.fail(w, r, err)
			return
		}
		info.Size, info.SizeIsDeferred = info.Offset, false
	}
	if complete && info.Offset != info.Size {
		hd.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
		inconsistent(w, "the content ended at offset "+strconv.FormatInt(info.Offset, 10)+", short of the upload's length "+strconv.FormatInt(info.Size, 10))
		return
	}
	done := finished(info)
	if done {
		if err := up.FinishUpload(c.ctx); errors.Is(err, objsha.ErrReprMismatch) || errors.Is(err, objsha.ErrReprUnverified) {
			reprDigestProblem(w, err)
			return
		} else if err != nil {
			// A refusal (4xx: the application's, which deleted the upload)
			// is the processing's answer; a 5xx leaves the upload to be
			// finished on the next request.
			var e handler.Error
			if errors.As(err, &e) && e.HTTPResponse.StatusCode < 500 {
				hd.Set("Upload-Complete", "?1")
			}
			h.fail(w, r, err)
			return
		}
		h.cfg.Log.InfoContext(c.ctx, "upload finished (IETF draft)", "id", info.ID, "size", info.Size)
		if wantsSHA256(r.Header) {
			// Known when the creation stated it or with --object-sha256;
			// finishing recorded it in the upload's info.
			if fin, err := up.GetInfo(c.ctx); err == nil {
				if sum, ok := objsha.Sum(fin); ok {
					hd.Set("Repr-Digest", reprDigestValue(sum))
				}
			}
		}
	}
	hd.Set("Upload-Offset", strconv.FormatInt(info.Offset, 10))
	hd.Set("Upload-Complete", boolField(done))
	w.WriteHeader(status)
}

// cancel serves an upload cancellation: DELETE of an upload.
func (h *Handler) cancel(w http.ResponseWriter, r *http.Request, id string) {
	if !h.cfg.Composer.UsesTerminater {
		h.fail(w, r, handler.ErrNotImplemented)
		return
	}
	c, end := h.newCall(w, r)
	defer end()
	// Taking the lock ends a transfer in progress.
	unlock, err := c.lock(id)
	if err != nil {
		h.fail(w, r, err)
		return
	}
	defer unlock()
	up, err := h.cfg.Composer.Core.GetUpload(c.ctx, id)
	if err == nil {
		err = h.cfg.Composer.Terminater.AsTerminatableUpload(up).Terminate(c.ctx)
	}
	if err != nil {
		h.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// inconsistent answers 400 with the problem type inconsistent-upload-length.
func inconsistent(w http.ResponseWriter, detail string) {
	problem(w, http.StatusBadRequest, problemInconsistentLength, "inconsistent length values for upload", map[string]any{"detail": detail})
}
