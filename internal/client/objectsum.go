package client

import (
	"context"
	"encoding/base64"
	"net/http"
	"strings"
)

// The headers in which tusgate names a finished upload's object checksums
// on HEAD (docs/integrity.md): the full-object checksum S3 validated, as
// "<algorithm> <base64>", and the upload's SHA-256 (--object-sha256), as
// base64.
const (
	objectChecksumHeader = "Upload-Object-Checksum"
	objectSHA256Header   = "Upload-Object-SHA256"
)

// objectChecksums asks the server, with one HEAD of the finished upload at
// url, for the checksums of the object it stored, by algorithm ("crc32",
// "sha256"). Best effort: the file is stored either way, so a failed HEAD
// or a server that names none gives none. Values that are not base64, or
// algorithms that are not a short lower-case word, are left out: they are
// printed to the user.
func (c *Client) objectChecksums(ctx context.Context, url string) map[string]string {
	resp, err := c.send(ctx, http.MethodHead, url, nil, nil, 0)
	if err != nil {
		return nil
	}
	defer drain(resp)
	if resp.StatusCode != http.StatusOK {
		return nil
	}
	sums := map[string]string{}
	if alg, v, ok := strings.Cut(resp.Header.Get(objectChecksumHeader), " "); ok && isAlgorithm(alg) && isDigest(v, 0) {
		sums[alg] = v
	}
	if v := resp.Header.Get(objectSHA256Header); isDigest(v, 32) {
		sums["sha256"] = v
	}
	if len(sums) == 0 {
		return nil
	}
	return sums
}

// isAlgorithm tells whether s is a checksum algorithm's name as the tus
// checksum extension writes them (crc32, sha256, crc64nvme).
func isAlgorithm(s string) bool {
	if s == "" || len(s) > 16 {
		return false
	}
	for _, r := range s {
		if (r < 'a' || r > 'z') && (r < '0' || r > '9') {
			return false
		}
	}
	return true
}

// isDigest tells whether v is a base64 digest of n bytes (0: 1 to 64).
func isDigest(v string, n int) bool {
	b, err := base64.StdEncoding.DecodeString(v)
	if err != nil || len(b) == 0 || len(b) > 64 {
		return false
	}
	return n == 0 || len(b) == n
}
