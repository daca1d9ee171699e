package hooks

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/hooks/oidc"
)

var alice = &oidc.Principal{Issuer: "https://tenant.auth0.com/", Subject: "auth0|alice"}

func TestOwnerFolder(t *testing.T) {
	f := OwnerFolder(alice)
	if !regexp.MustCompile(`^[a-z2-7]{26}$`).MatchString(f) {
		t.Fatalf("folder %q", f)
	}
	if OwnerFolder(alice) != f {
		t.Fatal("not deterministic")
	}
	for _, other := range []*oidc.Principal{
		{Issuer: alice.Issuer, Subject: "auth0|alicf"},
		{Issuer: "https://other.example/", Subject: alice.Subject},
		// The separator keeps issuer and subject apart.
		{Issuer: alice.Issuer + "\n" + "auth0", Subject: "alice"},
	} {
		if OwnerFolder(other) == f {
			t.Errorf("%+v shares alice's folder", other)
		}
	}
}

func TestBindOwnerAndAuthorize(t *testing.T) {
	ctx := WithPrincipal(context.Background(), alice)
	changes, err := BindOwner(ctx, handler.MetaData{"filename": "a.txt", "tusgate-owner": "mallory", "TUSGATE-ISSUER": "x"})
	if err != nil {
		t.Fatal(err)
	}
	folder, rest, ok := strings.Cut(changes.ID, "/")
	if !ok || folder != OwnerFolder(alice) || !regexp.MustCompile(`^[0-9a-f]{32}$`).MatchString(rest) {
		t.Fatalf("ID %q", changes.ID)
	}
	want := handler.MetaData{"filename": "a.txt", MetaOwner: alice.Subject, MetaIssuer: alice.Issuer}
	if fmt.Sprint(changes.MetaData) != fmt.Sprint(want) {
		t.Fatalf("metadata %v, want %v", changes.MetaData, want)
	}
	if err := Authorize(ctx, changes.ID); err != nil {
		t.Fatalf("owner refused: %v", err)
	}
	bob := WithPrincipal(context.Background(), &oidc.Principal{Issuer: alice.Issuer, Subject: "auth0|bob"})
	for _, c := range []struct {
		ctx context.Context
		id  string
	}{
		{bob, changes.ID},
		{context.Background(), changes.ID},
		{ctx, rest},
		{ctx, folder},
		{ctx, folder + "x/" + rest},
	} {
		if err := Authorize(c.ctx, c.id); !errors.Is(err, handler.ErrNotFound) {
			t.Errorf("Authorize(%q) = %v, want not found", c.id, err)
		}
	}
	if _, err := BindOwner(context.Background(), nil); err == nil {
		t.Fatal("BindOwner without a caller succeeded")
	}
}

type fakeVerifier struct{ err error }

func (f fakeVerifier) Verify(_ context.Context, raw string) (*oidc.Principal, error) {
	if f.err != nil {
		return nil, f.err
	}
	return &oidc.Principal{Issuer: "i", Subject: raw}, nil
}

func TestMiddlewareAnswers(t *testing.T) {
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p := PrincipalFrom(r.Context())
		if p == nil {
			w.WriteHeader(299)
			return
		}
		w.Header().Set("X-Subject", p.Subject)
		w.WriteHeader(204)
	})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	for _, c := range []struct {
		name, method, auth string
		err                error
		status             int
		www                string
	}{
		{"ok", "PATCH", "Bearer abc", nil, 204, ""},
		{"options needs no token", "OPTIONS", "", nil, 299, ""},
		{"missing", "PATCH", "", nil, 401, `Bearer realm="tusgate"`},
		{"wrong scheme", "PATCH", "Basic eDp5", nil, 401, `error="invalid_token"`},
		{"invalid", "PATCH", "Bearer abc", &oidc.TokenError{Desc: "token expired"}, 401, `Bearer realm="tusgate", error="invalid_token", error_description="token expired"`},
		{"scope", "POST", "Bearer abc", &oidc.ScopeError{Missing: []string{"upload:write"}}, 403, `Bearer realm="tusgate", error="insufficient_scope", scope="upload:write"`},
		// 503 on HEAD too: the server's guard makes it 423 (tested there).
		{"keys down HEAD", "HEAD", "Bearer abc", fmt.Errorf("x: %w", oidc.ErrKeysUnavailable), 503, ""},
		{"keys down PATCH", "PATCH", "Bearer abc", fmt.Errorf("x: %w", oidc.ErrKeysUnavailable), 503, ""},
	} {
		r := httptest.NewRequest(c.method, "/files/x", nil)
		if c.auth != "" {
			r.Header.Set("Authorization", c.auth)
		}
		w := httptest.NewRecorder()
		Middleware(fakeVerifier{c.err}, log, next).ServeHTTP(w, r)
		if w.Code != c.status {
			t.Errorf("%s: status %d, want %d", c.name, w.Code, c.status)
		}
		if c.www != "" && !strings.Contains(w.Header().Get("WWW-Authenticate"), c.www) {
			t.Errorf("%s: WWW-Authenticate %q, want %q", c.name, w.Header().Get("WWW-Authenticate"), c.www)
		}
		if (c.status == 423 || c.status == 503) && w.Header().Get("Retry-After") == "" {
			t.Errorf("%s: no Retry-After", c.name)
		}
		if c.status == 204 && w.Header().Get("X-Subject") != "abc" {
			t.Errorf("%s: principal not in context", c.name)
		}
	}
}
