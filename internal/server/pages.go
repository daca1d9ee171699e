package server

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"

	"github.com/tusgate/tusgate/examples"
)

// pageConfig is the public configuration the example pages read from
// /config.json, so that changing tenant or mode needs no rebuild.
type pageConfig struct {
	Endpoint string   `json:"endpoint"`
	Auth     pageAuth `json:"auth"`
	MaxSize  int64    `json:"maxSize"`
	// DirectUploads tells that /s3/ serves direct uploads to S3.
	DirectUploads bool `json:"directUploads"`
}

type pageAuth struct {
	// Mode is "dev" (the built-in issuer), "auth0" (an OpenID issuer with a
	// browser client ID; auth0-spa-js speaks to any conforming issuer), or
	// "none" (no login).
	Mode     string `json:"mode"`
	TokenURL string `json:"tokenURL,omitempty"`
	Domain   string `json:"domain,omitempty"`
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"clientId,omitempty"`
	Audience string `json:"audience,omitempty"`
}

// registerPages serves the example front ends, their configuration and the
// index page.
func (s *Server) registerPages(mux *http.ServeMux) {
	cfg := s.cfg
	if cfg.DisableExamples {
		mux.HandleFunc("GET /{$}", s.index)
		return
	}
	pc := pageConfig{Endpoint: cfg.BasePath, MaxSize: cfg.MaxSize, DirectUploads: s.direct != nil}
	switch {
	case cfg.Dev:
		pc.Auth = pageAuth{Mode: "dev", TokenURL: devIssuerPath + "/token"}
	case cfg.OIDC.Issuer != "":
		pc.Auth = pageAuth{Mode: "auth0", Issuer: cfg.OIDC.Issuer, ClientID: cfg.OIDC.ClientID, Audience: cfg.OIDC.Audiences[0]}
		if u, err := url.Parse(cfg.OIDC.Issuer); err == nil {
			pc.Auth.Domain = u.Host
		}
	default:
		pc.Auth = pageAuth{Mode: "none"}
	}
	body, _ := json.Marshal(pc)
	mux.HandleFunc("GET /config.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		_, _ = w.Write(body)
	})

	pages, built := examples.Pages()
	if !built {
		mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
			s.index(w, r)
			fmt.Fprint(w, "\nThe example pages (Dropzone, Uppy) are not built into this binary.\n"+
				"Build them with: (cd examples && npm ci && npm run build), then rebuild tusgate (bash scripts/run.sh does both).\n")
		})
		return
	}
	files := securePages(http.FileServerFS(pages), s.directOrigin)
	mux.Handle("GET /{$}", files)
	for _, p := range []string{"/dropzone/", "/uppy/", "/uppy-s3/", "/assets/"} {
		mux.Handle("GET "+p, files)
	}
}

// securePages adds headers that keep the example pages from being framed or
// loading scripts from elsewhere. Pages may connect to this server and to
// HTTPS origins, and to extra (the S3 endpoint of direct uploads when it is
// plain HTTP).
func securePages(next http.Handler, extra string) http.Handler {
	connect := "'self' https:"
	if extra != "" {
		connect += " " + extra
	}
	csp := "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data: blob:; connect-src " + connect + "; frame-src https:; frame-ancestors 'none'"
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Security-Policy", csp)
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		next.ServeHTTP(w, r)
	})
}
