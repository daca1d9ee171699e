// Package examples holds the example front ends (Dropzone and Uppy over
// tus) and embeds their built bundle into the tusgate binary.
//
// The bundle is built by `npm run build` in this folder into dist/, which
// git ignores except for a placeholder, so that a clean clone compiles
// without Node.
package examples

import (
	"embed"
	"io/fs"
)

//go:embed all:dist
var dist embed.FS

// Pages returns the built pages and whether a build is present.
func Pages() (fs.FS, bool) {
	sub, err := fs.Sub(dist, "dist")
	if err != nil {
		return nil, false
	}
	_, err = fs.Stat(sub, "index.html")
	return sub, err == nil
}
