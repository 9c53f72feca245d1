package caddymodule

import (
	"net/http"
	"strconv"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// disabledHeader is the header name that turns off an identity header.
const disabledHeader = "-"

// removeHeaderSpellings deletes every header whose name equals name when
// both are lower-cased and '_' is read as '-'. Upstreams such as PHP-FPM
// (through CGI variables) and some proxies treat the two characters alike,
// so a client could otherwise pass "X_UserSig_UserID" for the real header.
func removeHeaderSpellings(h http.Header, name string) {
	for key := range h {
		if sameHeaderName(key, name) {
			delete(h, key)
		}
	}
}

// sameHeaderName compares two header names ignoring ASCII case and
// treating '_' as '-'.
func sameHeaderName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if foldHeaderByte(a[i]) != foldHeaderByte(b[i]) {
			return false
		}
	}
	return true
}

func foldHeaderByte(c byte) byte {
	switch {
	case c == '_':
		return '-'
	case 'A' <= c && c <= 'Z':
		return c + ('a' - 'A')
	}
	return c
}

// removeSpoofedIdentity deletes the identity headers that the client sent,
// in every spelling.
func (g *Gateway) removeSpoofedIdentity(r *http.Request) {
	if g.UserIDHeader != disabledHeader {
		removeHeaderSpellings(r.Header, g.UserIDHeader)
	}
	if g.SDKAppIDHeader != disabledHeader {
		removeHeaderSpellings(r.Header, g.SDKAppIDHeader)
	}
}

// forwardIdentity prepares a verified request for the upstream: it sets
// the identity headers and, unless keep_usersig is set, removes the
// UserSig. Spoofed identity headers must already be removed.
func (g *Gateway) forwardIdentity(r *http.Request, claims usersig.Claims) {
	if g.UserIDHeader != disabledHeader {
		r.Header.Set(g.UserIDHeader, claims.UserID)
	}
	if g.SDKAppIDHeader != disabledHeader {
		r.Header.Set(g.SDKAppIDHeader, strconv.FormatUint(claims.SDKAppID, 10))
	}
	if !g.KeepUserSig {
		g.credentials.removeUserSig(r)
	}
}

// userMetadata returns the verified claims other than the UserID, and the
// room and rights of a valid privilege map, as the {http.auth.user.*}
// placeholders name them.
func userMetadata(res authResult) map[string]string {
	claims := res.claims
	metadata := map[string]string{
		"sdkappid":   strconv.FormatUint(claims.SDKAppID, 10),
		"issued_at":  strconv.FormatInt(claims.Time, 10),
		"expires_at": strconv.FormatInt(claims.ExpiresAt(), 10),
		"key_index":  strconv.Itoa(claims.KeyIndex),
	}
	if res.grant != nil {
		metadata["room"] = res.grant.room
		metadata["privileges"] = privilegeNames(res.grant.privileges)
		metadata["privilege_map"] = strconv.FormatUint(uint64(res.grant.privileges), 10)
	}
	return metadata
}

// setUserPlaceholders sets {http.auth.user.id} and the other
// {http.auth.user.*} placeholders, as Caddy's authentication handler does
// for its providers.
func setUserPlaceholders(repl *caddy.Replacer, res authResult) {
	claims := res.claims
	repl.Set("http.auth.user.id", claims.UserID)
	repl.Set("http.auth.user.sdkappid", strconv.FormatUint(claims.SDKAppID, 10))
	repl.Set("http.auth.user.issued_at", strconv.FormatInt(claims.Time, 10))
	repl.Set("http.auth.user.expires_at", strconv.FormatInt(claims.ExpiresAt(), 10))
	repl.Set("http.auth.user.key_index", strconv.Itoa(claims.KeyIndex))
	if res.grant != nil {
		repl.Set("http.auth.user.room", res.grant.room)
		repl.Set("http.auth.user.privileges", privilegeNames(res.grant.privileges))
		repl.Set("http.auth.user.privilege_map", strconv.FormatUint(uint64(res.grant.privileges), 10))
	}
}

// setFailurePlaceholders sets the placeholders that handle_errors routes
// use to render a rejection.
func setFailurePlaceholders(repl *caddy.Replacer, f *failure) {
	repl.Set("http.auth.usersig.error_code", strconv.Itoa(f.code))
	repl.Set("http.auth.usersig.error", f.reason)
}
