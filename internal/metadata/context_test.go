package metadata

import (
	"context"
	"mime"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"
)

func TestFilenameWithControlCharactersIsSanitisedNotRefused(t *testing.T) {
	// "a\nb.txt" and "c:\\dir\\x\ty.txt", base64-encoded
	got, err := Parse("filename YQpiLnR4dA==", 4096)
	if err != nil || got["filename"] != "ab.txt" {
		t.Fatalf("got %v, %v", got, err)
	}
}

func TestContentDisposition(t *testing.T) {
	for name, want := range map[string]string{
		"plain.txt":   `attachment; filename=plain.txt`,
		`a "b".txt`:   `attachment; filename="a \"b\".txt"`,
		"Grüße 📁.txt": `attachment; filename*=utf-8''Gr%C3%BC%C3%9Fe%20%F0%9F%93%81.txt`,
		"":            ``,
	} {
		cd := ContentDisposition(handler.MetaData{"filename": name})
		if cd != want {
			t.Errorf("%q: %q, want %q", name, cd, want)
			continue
		}
		if name == "" {
			continue
		}
		if _, params, err := mime.ParseMediaType(cd); err != nil || params["filename"] != name {
			t.Errorf("%q does not parse back: %v %v", cd, params, err)
		}
	}
}

func TestUploadInContext(t *testing.T) {
	ctx := WithUpload(context.Background(), handler.MetaData{"filename": "x"})
	if FromContext(ctx)["filename"] != "x" || FromContext(context.Background()) != nil {
		t.Fatal("metadata not carried")
	}
}
