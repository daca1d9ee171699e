package checksum

import (
	"errors"
	"net/http"
	"strings"

	"github.com/tus/tusd/v2/pkg/handler"

	"github.com/tusgate/tusgate/internal/tuserror"
)

// Middleware announces the extensions on OPTIONS (checksum and
// checksum-trailer in Tus-Extension, the algorithms in
// Tus-Checksum-Algorithm) and puts the Expectation of a PATCH or POST that
// states Upload-Checksum in its context; a statement it cannot check
// answers 400 before any byte is read.
func Middleware(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.Method {
		case http.MethodOptions:
			next.ServeHTTP(&announcer{ResponseWriter: w}, r)
			return
		case http.MethodPatch, http.MethodPost:
			e, err := FromRequest(r)
			if err != nil {
				var te handler.Error
				errors.As(err, &te)
				tuserror.Write(w, r, te.HTTPResponse.StatusCode, te.ErrorCode, te.Message)
				return
			}
			if e != nil {
				r = r.WithContext(With(r.Context(), e))
			}
		}
		next.ServeHTTP(w, r)
	})
}

// announcer adds the extensions to tusd's OPTIONS answer.
type announcer struct {
	http.ResponseWriter
	wrote bool
}

func (a *announcer) WriteHeader(status int) {
	if !a.wrote && status >= 200 {
		a.wrote = true
		h := a.Header()
		if ext := h.Get("Tus-Extension"); ext != "" {
			h.Set("Tus-Extension", ext+",checksum,checksum-trailer")
			h.Set("Tus-Checksum-Algorithm", strings.Join(Algorithms, ","))
		}
	}
	a.ResponseWriter.WriteHeader(status)
}

func (a *announcer) Write(b []byte) (int, error) {
	if !a.wrote {
		a.WriteHeader(http.StatusOK)
	}
	return a.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the connection.
func (a *announcer) Unwrap() http.ResponseWriter { return a.ResponseWriter }
