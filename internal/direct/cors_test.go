package direct

import (
	"strings"
	"testing"

	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

func TestCORSProblems(t *testing.T) {
	full := types.CORSRule{AllowedOrigins: []string{"https://app.example"}, AllowedMethods: []string{"GET", "PUT"}, AllowedHeaders: []string{"*"}, ExposeHeaders: []string{"ETag"}}
	noETag := types.CORSRule{AllowedOrigins: []string{"https://*.example"}, AllowedMethods: []string{"put"}, AllowedHeaders: []string{"Content-Type"}}
	getOnly := types.CORSRule{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"GET"}}
	for _, c := range []struct {
		name    string
		rules   []types.CORSRule
		origins []string
		want    []string // substrings, one per problem
	}{
		{"allowed", []types.CORSRule{full}, []string{"https://app.example"}, nil},
		{"other origin", []types.CORSRule{full}, []string{"https://evil.example"}, []string{"do not allow PUT from origin https://evil.example"}},
		{"wildcard without ETag", []types.CORSRule{getOnly, noETag}, []string{"https://a.example"}, []string{"does not expose ETag"}},
		{"origin with a path", []types.CORSRule{noETag}, []string{"https://a.b.example/x"}, []string{"do not allow PUT"}},
		{"GET only", []types.CORSRule{getOnly}, nil, []string{"do not allow PUT from any origin"}},
		{"no origins configured", []types.CORSRule{full}, nil, nil},
		{"headers", []types.CORSRule{{AllowedOrigins: []string{"*"}, AllowedMethods: []string{"PUT"}, ExposeHeaders: []string{"etag"}}}, nil, []string{"does not allow request headers"}},
	} {
		got := corsProblems(c.rules, c.origins, "b")
		if len(got) != len(c.want) {
			t.Errorf("%s: %q, want %d problems", c.name, got, len(c.want))
			continue
		}
		for i, w := range c.want {
			if !strings.Contains(got[i], w) {
				t.Errorf("%s: %q lacks %q", c.name, got[i], w)
			}
		}
	}
}

func TestIsDirectID(t *testing.T) {
	for id, want := range map[string]bool{
		"abcdefghijklmnopqrstuvwxyz/d-0123456789abcdef0123456789abcdef+mp": true,
		"owner/d-0123456789abcdef0123456789abcdef":                         true,
		"owner/0123456789abcdef0123456789abcdef+mp":                        false,
		"owner/d-0123456789ABCDEF0123456789abcdef+mp":                      false,
		"d-0123456789abcdef0123456789abcdef":                               false,
		"owner/x/d-0123456789abcdef0123456789abcdef":                       false,
	} {
		if got := IsDirectID(id); got != want {
			t.Errorf("IsDirectID(%q) = %v", id, got)
		}
	}
}

func TestCheckParts(t *testing.T) {
	listed := []part{{PartNumber: 1, Size: MinPartSize, ETag: `"a"`}, {PartNumber: 2, Size: 10, ETag: `"b"`}, {PartNumber: 3, Size: MinPartSize, ETag: `"c"`}}
	req := func(parts ...any) completeRequest {
		var r completeRequest
		for i := 0; i < len(parts); i += 2 {
			r.Parts = append(r.Parts, struct {
				PartNumber int32  `json:"PartNumber"`
				ETag       string `json:"ETag"`
			}{int32(parts[i].(int)), parts[i+1].(string)})
		}
		return r
	}
	if out, total, err := checkParts(req(1, "a", 2, `"b"`), listed); err != nil || total != MinPartSize+10 || len(out) != 2 || *out[0].ETag != `"a"` {
		t.Errorf("valid parts: %v, %d, %v", out, total, err)
	}
	for name, r := range map[string]completeRequest{
		"none":         req(),
		"small middle": req(1, "a", 2, "b", 3, "c"),
		"wrong ETag":   req(1, "b"),
		"not uploaded": req(1, "a", 4, "d"),
		"down":         req(2, "b", 1, "a"),
		"twice":        req(1, "a", 1, "a"),
		"zero":         req(0, "a"),
		"over 10000":   req(10001, "a"),
	} {
		if _, _, err := checkParts(r, listed); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
}
