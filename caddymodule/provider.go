package caddymodule

import (
	"fmt"
	"net/http"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp/caddyauth"
)

func init() {
	caddy.RegisterModule(Provider{})
}

// Provider is the UserSig check as a provider of Caddy's authentication
// handler (http.handlers.authentication), for configurations that combine
// it with other providers. It reads, verifies and forwards credentials
// exactly as the usersig handler does.
//
// The authentication handler writes the response of a rejected request
// itself: always 401, with no body. The JSON body and the 403 status for a
// genuine but disallowed token exist only in the usersig handler. The
// {http.auth.usersig.error_code} and {http.auth.usersig.error}
// placeholders are set in both. The provider only supports mode enforce.
type Provider struct {
	Gateway
}

// CaddyModule returns the Caddy module information.
func (Provider) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.authentication.providers.usersig",
		New: func() caddy.Module { return new(Provider) },
	}
}

// Authenticate verifies the request. A bad credential is not an error of
// the provider: it returns false with a nil error, so that the
// authentication handler does not log it at error level.
func (p *Provider) Authenticate(w http.ResponseWriter, r *http.Request) (caddyauth.User, bool, error) {
	p.removeSpoofedIdentity(r)
	if !p.CheckPreflight && isPreflight(r) {
		return caddyauth.User{}, true, nil
	}

	var res authResult
	fail := p.authenticate(r, requestTime(r), &res)
	if fail != nil {
		countDenied(fail)
		if repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer); ok {
			setFailurePlaceholders(repl, fail)
		}
		w.Header().Set("WWW-Authenticate", p.challenge)
		if fail == failLockedOut {
			w.Header().Set("Retry-After", retryAfter(res.retryAfter))
		}
		return caddyauth.User{}, false, nil
	}

	requestsAllowed.Inc()
	p.forwardIdentity(r, &res)
	return caddyauth.User{ID: res.claims.UserID, Metadata: userMetadata(&res)}, true, nil
}

// Validate checks the configuration as the handler does, and also rejects
// a mode other than enforce. The authentication handler tries its
// providers in no fixed order and stops at the first that accepts the
// request, so a provider that accepted a request without credentials would
// keep the other providers from running.
func (p *Provider) Validate() error {
	if err := p.Gateway.Validate(); err != nil {
		return err
	}
	if p.Mode != "" && p.Mode != modeEnforce {
		return fmt.Errorf("mode: %q is not supported by the authentication provider, which only accepts or rejects a request: use the usersig handler for modes %s and %s",
			p.Mode, modeOptional, modeAnnotate)
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner       = (*Provider)(nil)
	_ caddy.Validator         = (*Provider)(nil)
	_ caddy.CleanerUpper      = (*Provider)(nil)
	_ caddyauth.Authenticator = (*Provider)(nil)
)
