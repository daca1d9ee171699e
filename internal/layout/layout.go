// Package layout names where tusgate keeps things: the parts of an upload's
// ID, tusd's .info records, and tusgate's own folder beside the uploads.
// The stores, the janitor, the quota counters and the webhook outboxes all
// read the same objects and files; this package is the one place that says
// how they are named and read.
package layout

import (
	"encoding/json"
	"fmt"
	"io"
	"net/url"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"
)

// InternalFolder holds tusgate's own objects and files (webhook outbox,
// tombstones, assembly markers) next to the uploads, in the bucket (under
// the object prefix) and in the data directory. No upload ID can have a
// segment that starts with ".", so clients can never reach it.
const InternalFolder = ".tusgate"

// IsInternal reports whether key (an object key or a slash-separated path)
// lies in an InternalFolder.
func IsInternal(key string) bool {
	return strings.HasPrefix(key, InternalFolder+"/") || strings.Contains(key, "/"+InternalFolder+"/")
}

// WaitingDir is the folder, relative to where uploads are kept (the object
// prefix, or the data directory), of the records of the final uploads that
// wait for the partial upload partialID (the tus concatenation-unfinished
// extension): WaitingDir(partialID) + WaitingName(finalID), one empty
// object or file each. A partial upload's ID may hold "/", a record's name
// does not.
func WaitingDir(partialID string) string {
	return InternalFolder + "/concat/" + partialID + "/"
}

// WaitingName is the name of the record of final upload finalID in a
// WaitingDir: the ID, path-escaped into one segment.
func WaitingName(finalID string) string { return url.PathEscape(finalID) }

// WaitingFinal is the final upload ID a WaitingName names, and false for a
// name that is not a record's.
func WaitingFinal(name string) (string, bool) {
	id, err := url.PathUnescape(name)
	return id, err == nil && id != "" && !strings.ContainsRune(name, '/')
}

// SplitID splits the ID of an upload in S3 into the object ID (the key of
// its object, below the prefix) and the multipart upload ID, which tusd's
// s3store joins with "+". An ID without "+" is all object ID.
func SplitID(id string) (objectID, multipartID string) {
	i := strings.LastIndex(id, "+")
	if i < 0 {
		return id, ""
	}
	return id[:i], id[i+1:]
}

// InfoLimit bounds the size of a .info record that DecodeInfo reads: tusd's
// records are a few KiB (metadata is limited by --max-metadata-size).
const InfoLimit = 1 << 20

// DecodeInfo reads one of tusd's .info records (an upload's FileInfo as
// JSON), at most InfoLimit bytes of it.
func DecodeInfo(r io.Reader) (handler.FileInfo, error) {
	var info handler.FileInfo
	if err := json.NewDecoder(io.LimitReader(r, InfoLimit)).Decode(&info); err != nil {
		return handler.FileInfo{}, fmt.Errorf("decoding an upload's .info: %w", err)
	}
	return info, nil
}
