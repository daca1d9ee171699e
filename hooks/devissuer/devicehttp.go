package devissuer

import (
	"errors"
	"html/template"
	"net/http"
	"time"
)

// serveDeviceCode answers RFC 8628 §3.1 device authorization requests: a
// form with client_id (any), scope and audience (ignored; tokens always
// carry the issuer's audience).
func (i *Issuer) serveDeviceCode(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		methodNotAllowed(w, r.Method, "POST")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		i.rejectToken(w, r, badRequest("cannot parse form body: %s", bodyErrorText(err)))
		return
	}
	resp, err := i.newDeviceCode(r.PostForm.Get("scope"))
	if err != nil {
		i.rejectToken(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	writeJSON(w, http.StatusOK, resp)
}

// serveDeviceToken answers a token request with the device code grant
// (RFC 8628 §3.4, §3.5).
func (i *Issuer) serveDeviceToken(w http.ResponseWriter, r *http.Request, req tokenRequest) {
	res, user, scope := i.devices.poll(req.DeviceCode, i.now())
	switch res {
	case pollUnknown:
		writeError(w, http.StatusBadRequest, "invalid_grant", "unknown device_code")
		return
	case pollExpired:
		writeError(w, http.StatusBadRequest, "expired_token", "the device code expired; start again")
		return
	case pollPending:
		writeError(w, http.StatusBadRequest, "authorization_pending", "the user code is not approved yet")
		return
	}
	i.serveTokens(w, r, user, scope)
}

// serveRefreshToken answers a token request with the refresh token grant
// (RFC 6749 §6).
func (i *Issuer) serveRefreshToken(w http.ResponseWriter, r *http.Request, req tokenRequest) {
	user, scope, ok := i.checkRefresh(req.RefreshToken)
	if !ok {
		i.log.Debug("dev issuer: token request rejected", "reason", "invalid refresh token", "remote", r.RemoteAddr)
		writeError(w, http.StatusBadRequest, "invalid_grant", "refresh_token is invalid or expired; log in again")
		return
	}
	i.serveTokens(w, r, user, scope)
}

// serveTokens answers with a new access token and refresh token.
func (i *Issuer) serveTokens(w http.ResponseWriter, r *http.Request, user, scope string) {
	m, err := i.mint(user, scope, 0)
	if err != nil {
		i.rejectToken(w, r, err)
		return
	}
	refresh, err := i.mintRefresh(user, m.scope)
	if err != nil {
		i.rejectToken(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Pragma", "no-cache")
	writeJSON(w, http.StatusOK, tokenResponse{
		AccessToken:  m.token,
		TokenType:    "Bearer",
		ExpiresIn:    int64(m.exp.Sub(m.iat) / time.Second),
		Scope:        m.scope,
		RefreshToken: refresh,
	})
}

// verificationPage is the verification URI's page: a form taking the user
// code and the user name to approve it for.
var verificationPage = template.Must(template.New("device").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>tusgate development sign-in</title></head>
<body>
<h1>tusgate development sign-in</h1>
{{if .Message}}<p role="status">{{.Message}}</p>{{end}}
{{if not .Done}}<form method="post">
<p><label>Code shown on the device <input name="user_code" value="{{.UserCode}}" autocomplete="off" required></label></p>
<p><label>User name <input name="username" value="{{.Username}}" required></label></p>
<p><button type="submit">Approve</button></p>
</form>
<p>Development mode: any user name is accepted, without a password.</p>{{end}}
</body></html>
`))

type verificationData struct {
	UserCode, Username, Message string
	Done                        bool
}

// serveVerification serves the verification page (GET, with an optional
// user_code in the query) and approves a user code for a user name (POST
// form: user_code, username). A rejected approval answers 400 with the
// form and the reason.
func (i *Issuer) serveVerification(w http.ResponseWriter, r *http.Request) {
	data := verificationData{}
	status := http.StatusOK
	switch r.Method {
	case http.MethodGet, http.MethodHead:
		data.UserCode = r.URL.Query().Get("user_code")
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			status, data.Message = http.StatusBadRequest, "cannot parse the form: "+bodyErrorText(err)
			break
		}
		data.UserCode, data.Username = r.PostForm.Get("user_code"), r.PostForm.Get("username")
		err := i.approveDevice(data.UserCode, data.Username)
		var re *requestError
		switch {
		case err == nil:
			data.Done, data.Message = true, "Approved: the device is signed in as "+data.Username+". You can close this page."
		case errors.As(err, &re):
			status, data.Message = http.StatusBadRequest, re.msg
		default:
			status, data.Message = http.StatusInternalServerError, "cannot approve the code"
		}
	default:
		methodNotAllowed(w, r.Method, "GET, HEAD, POST")
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Content-Security-Policy", "default-src 'none'; form-action 'self'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_ = verificationPage.Execute(w, data)
}
