package direct

import (
	"context"
	"fmt"
	"path"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// CORSReader reads a bucket's CORS configuration.
type CORSReader interface {
	GetBucketCors(ctx context.Context, in *s3.GetBucketCorsInput, opts ...func(*s3.Options)) (*s3.GetBucketCorsOutput, error)
}

// CheckCORS reads the bucket's CORS rules and says, in sentences an
// operator can act on, what keeps browsers on the given origins from
// uploading straight to it: each origin must be allowed PUT with any
// request header, and see ETag. ok is false when the S3 server cannot tell
// (no per-bucket CORS, as MinIO; or no permission): the returned sentence
// then says so.
func CheckCORS(ctx context.Context, c CORSReader, bucket string, origins []string) (problems []string, ok bool) {
	out, err := c.GetBucketCors(ctx, &s3.GetBucketCorsInput{Bucket: aws.String(bucket)})
	if err != nil {
		switch code := apiErrorCode(err); code {
		case "NoSuchCORSConfiguration":
			return []string{fmt.Sprintf("bucket %q has no CORS configuration: browsers cannot upload straight to it unless the S3 server allows origins for every bucket (versitygw --cors-allow-origin; MinIO allows any by default); see docs/direct-uploads.md", bucket)}, true
		case "NotImplemented", "AccessDenied", "MethodNotAllowed":
			return []string{fmt.Sprintf("cannot read bucket %q's CORS rules (%s); check by hand that browsers may PUT and see ETag (docs/direct-uploads.md)", bucket, code)}, false
		default:
			return []string{fmt.Sprintf("cannot read bucket %q's CORS rules: %v", bucket, err)}, false
		}
	}
	return corsProblems(out.CORSRules, origins, bucket), true
}

// corsProblems checks rules for each origin. Without origins (no
// --cors-origins: the pages are served by tusgate itself, whose public
// origin tusgate may not know) any rule that allows PUT will do.
func corsProblems(rules []types.CORSRule, origins []string, bucket string) []string {
	if len(origins) == 0 {
		origins = []string{"*"}
	}
	var problems []string
	for _, origin := range origins {
		var matched *types.CORSRule
		for i := range rules {
			if originAllowed(rules[i].AllowedOrigins, origin) && slices.ContainsFunc(rules[i].AllowedMethods, func(m string) bool { return strings.EqualFold(m, "PUT") }) {
				matched = &rules[i]
				break
			}
		}
		who := "origin " + origin
		if origin == "*" {
			who = "any origin (set --cors-origins to check yours)"
		}
		if matched == nil {
			problems = append(problems, fmt.Sprintf("bucket %q's CORS rules do not allow PUT from %s: browsers cannot upload straight to S3 (docs/direct-uploads.md)", bucket, who))
			continue
		}
		if !slices.ContainsFunc(matched.ExposeHeaders, func(h string) bool { return strings.EqualFold(h, "ETag") }) {
			problems = append(problems, fmt.Sprintf("bucket %q's CORS rule for %s does not expose ETag: uploads of several parts hang in the browser (add ETag to ExposeHeaders)", bucket, who))
		}
		if !slices.ContainsFunc(matched.AllowedHeaders, func(h string) bool { return h == "*" || strings.EqualFold(h, "content-type") }) {
			problems = append(problems, fmt.Sprintf("bucket %q's CORS rule for %s does not allow request headers: single PUTs send Content-Type and x-amz-meta-* (add AllowedHeaders: *)", bucket, who))
		}
	}
	return problems
}

// originAllowed reports whether a rule's AllowedOrigins admit origin; S3
// allows one "*" wildcard in each.
func originAllowed(allowed []string, origin string) bool {
	for _, a := range allowed {
		if a == "*" || a == origin || origin == "*" {
			return true
		}
		if strings.Count(a, "*") == 1 {
			if ok, _ := path.Match(strings.ReplaceAll(a, "/", "\x00"), strings.ReplaceAll(origin, "/", "\x00")); ok {
				return true
			}
		}
	}
	return false
}
