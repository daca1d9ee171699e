package devissuer

import (
	"encoding/json"
	"errors"
	"io"
	"mime"
	"net/http"
	"strings"
	"time"
)

const (
	discoveryPath = "/.well-known/openid-configuration"
	jwksPath      = "/jwks.json"
	tokenPath     = "/token"

	maxBodyBytes = 64 << 10
)

// discoveryDoc is the OpenID Provider Metadata (OpenID Connect Discovery 1.0 §3) served by the issuer.
type discoveryDoc struct {
	Issuer                            string   `json:"issuer"`
	JWKSURI                           string   `json:"jwks_uri"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	DeviceAuthorizationEndpoint       string   `json:"device_authorization_endpoint"`
	ResponseTypesSupported            []string `json:"response_types_supported"`
	SubjectTypesSupported             []string `json:"subject_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	ClaimsSupported                   []string `json:"claims_supported"`
}

func (i *Issuer) discoveryDocument() discoveryDoc {
	return discoveryDoc{
		Issuer:                            i.issuer,
		JWKSURI:                           i.endpoint(jwksPath),
		TokenEndpoint:                     i.endpoint(tokenPath),
		DeviceAuthorizationEndpoint:       i.endpoint(deviceCodePath),
		ResponseTypesSupported:            []string{"token"},
		SubjectTypesSupported:             []string{"public"},
		IDTokenSigningAlgValuesSupported:  []string{"ES256"},
		GrantTypesSupported:               []string{"password", DeviceCodeGrant, RefreshTokenGrant},
		TokenEndpointAuthMethodsSupported: []string{"none"},
		ClaimsSupported:                   []string{"iss", "sub", "aud", "exp", "nbf", "iat", "jti", "scope"},
	}
}

// jwk is a public EC JSON Web Key (RFC 7517/7518). It deliberately has no field for the private "d" member.
type jwk struct {
	Kty string `json:"kty"`
	Crv string `json:"crv"`
	X   string `json:"x"`
	Y   string `json:"y"`
	Kid string `json:"kid"`
	Alg string `json:"alg"`
	Use string `json:"use"`
}

type jwkSet struct {
	Keys []jwk `json:"keys"`
}

// tokenRequest is the token endpoint's input, from a form or a JSON body.
type tokenRequest struct {
	GrantType    string `json:"grant_type"`
	Username     string `json:"username"`
	Scope        string `json:"scope"`
	TTL          string `json:"ttl"`
	DeviceCode   string `json:"device_code"`
	RefreshToken string `json:"refresh_token"`
}

type tokenResponse struct {
	AccessToken  string `json:"access_token"`
	TokenType    string `json:"token_type"`
	ExpiresIn    int64  `json:"expires_in"`
	Scope        string `json:"scope,omitempty"`
	RefreshToken string `json:"refresh_token,omitempty"`
}

type errorResponse struct {
	Error            string `json:"error"`
	ErrorDescription string `json:"error_description,omitempty"`
}

// Handler serves, relative to where it is mounted (the caller mounts it with http.StripPrefix at the IssuerURL's path, e.g. "/dev/oidc"):
//
//	GET  /.well-known/openid-configuration  → OpenID Provider Metadata with URLs built from IssuerURL
//	GET  /jwks.json                          → JWKS with the one public signing key
//	POST /token                              → mints an access token
//	POST /device/code                        → starts a device authorization (RFC 8628)
//	GET  /device, POST /device               → the verification page: approves a user code for a user name
//
// The token endpoint takes a form (application/x-www-form-urlencoded) or JSON body with "username" (1–64
// characters: ASCII letters, digits, . _ - @ |) and optional "scope", "ttl" (Go duration, at least 1s and at most
// TokenTTL; may also be given in the query string) and "grant_type" (must be "password" if present; any "password"
// or "client_id" is ignored). It answers {"access_token", "token_type": "Bearer", "expires_in", "scope"} with
// Cache-Control: no-store. Bad input yields 400 {"error":"invalid_request","error_description":"..."}; a wrong
// method yields 405 with an Allow header; unknown paths yield 404.
//
// The token endpoint also takes the device code grant (grant_type
// urn:ietf:params:oauth:grant-type:device_code with "device_code"; 400
// authorization_pending until the code is approved) and the refresh token
// grant ("refresh_token"); both answer with a refresh token as well. See
// device.go and refresh.go.
func (i *Issuer) Handler() http.Handler {
	return http.HandlerFunc(i.serveHTTP)
}

func (i *Issuer) serveHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case discoveryPath:
		i.serveStatic(w, r, i.discovery)
	case jwksPath:
		i.serveStatic(w, r, i.jwks)
	case tokenPath:
		i.serveToken(w, r)
	case deviceCodePath:
		i.serveDeviceCode(w, r)
	case verificationPath:
		i.serveVerification(w, r)
	default:
		http.NotFound(w, r)
	}
}

func (i *Issuer) serveStatic(w http.ResponseWriter, r *http.Request, body []byte) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		methodNotAllowed(w, r.Method, "GET, HEAD")
		return
	}
	w.Header().Set("Cache-Control", "no-cache")
	writeJSONBytes(w, http.StatusOK, body)
}

func (i *Issuer) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "POST")
		return
	}
	req, err := readTokenRequest(w, r)
	if err != nil {
		i.rejectToken(w, r, err)
		return
	}
	switch req.GrantType {
	case "", "password":
	case DeviceCodeGrant:
		i.serveDeviceToken(w, r, req)
		return
	case RefreshTokenGrant:
		i.serveRefreshToken(w, r, req)
		return
	default:
		// RFC 6749 §5.2 has a dedicated error code for this.
		i.log.Debug("dev issuer: token request rejected", "reason", "unsupported grant_type", "remote", r.RemoteAddr)
		writeError(w, http.StatusBadRequest, "unsupported_grant_type", `grant_type must be "password" (or omitted), "`+DeviceCodeGrant+`" or "refresh_token"`)
		return
	}
	var ttl time.Duration
	if req.TTL != "" {
		if ttl, err = time.ParseDuration(req.TTL); err != nil {
			i.rejectToken(w, r, badRequest("ttl %q is not a Go duration such as \"30s\" or \"5m\"", req.TTL))
			return
		}
		if ttl == 0 {
			i.rejectToken(w, r, badRequest("ttl must be positive"))
			return
		}
	}

	m, err := i.mint(req.Username, req.Scope, ttl)
	if err != nil {
		i.rejectToken(w, r, err)
		return
	}
	resp := tokenResponse{
		AccessToken: m.token,
		TokenType:   "Bearer",
		ExpiresIn:   int64(m.exp.Sub(m.iat) / time.Second),
		Scope:       m.scope,
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, resp)
}

// rejectToken answers a failed token request: 400 invalid_request for client errors, 500 otherwise.
func (i *Issuer) rejectToken(w http.ResponseWriter, r *http.Request, err error) {
	var re *requestError
	if errors.As(err, &re) {
		i.log.Debug("dev issuer: token request rejected", "reason", re.msg, "remote", r.RemoteAddr)
		writeError(w, http.StatusBadRequest, "invalid_request", re.msg)
		return
	}
	i.log.Error("dev issuer: cannot mint token", "error", err)
	writeError(w, http.StatusInternalServerError, "server_error", "cannot mint token")
}

// readTokenRequest decodes a form or JSON token request body. "ttl" falls back to the query string.
func readTokenRequest(w http.ResponseWriter, r *http.Request) (tokenRequest, error) {
	var req tokenRequest
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	mediaType, _, err := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if err != nil {
		mediaType = ""
	}
	switch mediaType {
	case "application/x-www-form-urlencoded":
		if err := r.ParseForm(); err != nil {
			return req, badRequest("cannot parse form body: %s", bodyErrorText(err))
		}
		for _, f := range []struct {
			name string
			dst  *string
		}{{"grant_type", &req.GrantType}, {"username", &req.Username}, {"scope", &req.Scope}, {"ttl", &req.TTL},
			{"device_code", &req.DeviceCode}, {"refresh_token", &req.RefreshToken}} {
			switch vs := r.PostForm[f.name]; len(vs) {
			case 0:
			case 1:
				*f.dst = vs[0]
			default:
				return req, badRequest("parameter %q is given more than once", f.name)
			}
		}
	case "application/json":
		dec := json.NewDecoder(r.Body)
		if err := dec.Decode(&req); err != nil {
			return req, badRequest("cannot parse JSON body: %s", bodyErrorText(err))
		}
		if _, err := dec.Token(); err != io.EOF {
			return req, badRequest("JSON body must contain a single object")
		}
	default:
		return req, badRequest("Content-Type must be application/x-www-form-urlencoded or application/json")
	}
	if req.TTL == "" {
		q := r.URL.Query()["ttl"]
		if len(q) > 1 {
			return req, badRequest("parameter \"ttl\" is given more than once")
		}
		if len(q) == 1 {
			req.TTL = q[0]
		}
	}
	return req, nil
}

// bodyErrorText describes a body decoding error without echoing request content at length.
func bodyErrorText(err error) string {
	var mbe *http.MaxBytesError
	if errors.As(err, &mbe) {
		return "body is too large"
	}
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200]
	}
	return strings.TrimPrefix(msg, "json: ")
}

func methodNotAllowed(w http.ResponseWriter, method, allow string) {
	w.Header().Set("Allow", allow)
	writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method "+method+" is not allowed; use "+allow)
}

func writeError(w http.ResponseWriter, status int, code, desc string) {
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, status, errorResponse{Error: code, ErrorDescription: desc})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, err := json.Marshal(v)
	if err != nil { // cannot happen for the types used here
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	writeJSONBytes(w, status, body)
}

func writeJSONBytes(w http.ResponseWriter, status int, body []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}
