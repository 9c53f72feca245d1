package caddymodule

import (
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	caddy.RegisterModule(Handler{})
}

// Handler verifies the Tencent UserSig of each request before it reaches
// the next handler, and passes the verified UserID and SDKAppID to the
// upstream in request headers and to later handlers in the
// {http.auth.user.*} placeholders.
//
// A rejected request gets 401 for a missing or invalid credential. It gets
// 403 for a genuine token that is not allowed here: wrong token type,
// lifetime longer than max_lifetime, or a PrivateMapKey for another room
// or without a required right. With a lockout configured, a locked-out
// client gets 429 with a Retry-After header. Tencent's error code is in
// the {http.auth.usersig.error_code} placeholder and a short reason in
// {http.auth.usersig.error}. When the server has handle_errors routes, the
// handler returns the error for them to render. Otherwise it writes a JSON
// body in the style of Tencent's REST APIs:
// {"ActionStatus":"FAIL","ErrorCode":70001,"ErrorInfo":"UserSig has expired"}.
//
// The modes optional and annotate let some requests without a valid
// credential pass unauthenticated instead; see the mode field.
type Handler struct {
	Gateway
}

// CaddyModule returns the Caddy module information.
func (Handler) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.usersig",
		New: func() caddy.Module { return new(Handler) },
	}
}

// ServeHTTP verifies the request and calls next when it passes or when
// the mode lets it go on unauthenticated.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	h.removeSpoofedIdentity(r)
	if !h.CheckPreflight && isPreflight(r) {
		return next.ServeHTTP(w, r)
	}

	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	var res authResult
	fail := h.authenticate(r, requestTime(r), &res)
	if fail == nil {
		requestsAllowed.Inc()
		setUserPlaceholders(repl, &res)
		h.forwardIdentity(r, &res)
		return next.ServeHTTP(w, r)
	}

	if h.passesWithout(res.anonymous) {
		requestsPassed.Inc()
		h.passUnauthenticated(r, repl, &res, fail)
		return next.ServeHTTP(w, r)
	}

	countDenied(fail)
	setFailurePlaceholders(repl, fail)
	if fail.status == http.StatusUnauthorized {
		w.Header().Set("WWW-Authenticate", h.challenge)
	}
	if fail == failLockedOut {
		w.Header().Set("Retry-After", retryAfter(res.retryAfter))
	}
	if hasErrorRoutes(r) {
		return caddyhttp.Error(fail.status, fail)
	}
	writeFailure(w, fail)
	return nil
}

// passUnauthenticated prepares a request that goes on without a valid
// credential. In annotate mode it sets the failure placeholders and, as
// for a verified request, removes the UserSig unless keep_usersig is set.
// A request passed by the optional mode carries no credential, so there
// is nothing to remove and no failure to report.
func (h *Handler) passUnauthenticated(r *http.Request, repl *caddy.Replacer, res *authResult, fail *failure) {
	if h.Mode != modeAnnotate {
		return
	}
	setFailurePlaceholders(repl, fail)
	if !h.KeepUserSig {
		h.credentials.removeUserSig(r, &res.creds)
	}
}

// hasErrorRoutes reports whether the server that handles r has
// handle_errors routes to render a returned error. Without them, Caddy
// responds to a returned error with an empty body. A request that is
// already in the error routes gets the JSON body too, because Caddy logs an
// error returned there as a failure of the error handling.
//
// NOTE: the routes are not matched here. When the server has error routes
// that do not match this request (another site on the same port, or
// handle_errors for other status codes), the client gets Caddy's empty
// response with the status code instead of the JSON body.
func hasErrorRoutes(r *http.Request) bool {
	if r.Context().Value(caddyhttp.ErrorCtxKey) != nil {
		return false
	}
	srv, ok := r.Context().Value(caddyhttp.ServerCtxKey).(*caddyhttp.Server)
	return ok && srv != nil && srv.Errors != nil && len(srv.Errors.Routes) > 0
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Handler)(nil)
	_ caddy.Validator             = (*Handler)(nil)
	_ caddy.CleanerUpper          = (*Handler)(nil)
	_ caddyhttp.MiddlewareHandler = (*Handler)(nil)
)
