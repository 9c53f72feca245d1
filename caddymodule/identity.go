package caddymodule

import (
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// disabledHeader is the header name that turns off an identity header.
const disabledHeader = "-"

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

// maxSpoofSeparators is the number of '-' and '_' in an identity header
// name above which removeSpoofedIdentity looks at every request header
// instead of looking up each spelling, of which there are 2^n.
const maxSpoofSeparators = 4

// spoofedKeys are the header keys that removeSpoofedIdentity deletes.
type spoofedKeys struct {
	// keys holds, for each identity header, the key of every spelling
	// that sameHeaderName matches, in the canonical form that net/http
	// stores a received header under.
	keys []string

	// scan is true when a name has too many spellings to look up, and
	// removeSpoofedIdentity compares every request header instead.
	scan bool
}

// newSpoofedKeys returns the spoofedKeys of the identity headers names,
// each in canonical form or disabledHeader.
func newSpoofedKeys(names ...string) spoofedKeys {
	var s spoofedKeys
	for _, name := range names {
		if name == disabledHeader {
			continue
		}
		spellings := headerSpellings(name)
		if spellings == nil {
			return spoofedKeys{scan: true}
		}
		for _, key := range spellings {
			if !slices.Contains(s.keys, key) {
				s.keys = append(s.keys, key)
			}
		}
	}
	return s
}

// headerSpellings returns the canonical keys of all spellings of name
// that differ in case and in '-' against '_', or nil when name has more
// than maxSpoofSeparators of those. Case does not matter here, because
// http.CanonicalHeaderKey sets it; each choice of '-' or '_' at each
// separator gives one key.
func headerSpellings(name string) []string {
	var separators []int
	for i := 0; i < len(name); i++ {
		if name[i] == '-' || name[i] == '_' {
			separators = append(separators, i)
		}
	}
	if len(separators) > maxSpoofSeparators {
		return nil
	}
	spelling := []byte(name)
	keys := make([]string, 0, 1<<len(separators))
	for choice := 0; choice < 1<<len(separators); choice++ {
		for bit, i := range separators {
			spelling[i] = '-'
			if choice&(1<<bit) != 0 {
				spelling[i] = '_'
			}
		}
		keys = append(keys, http.CanonicalHeaderKey(string(spelling)))
	}
	return keys
}

// removeSpoofedIdentity deletes the identity headers that the client sent,
// in every spelling: every header whose name equals an identity header's
// when both are lower-cased and '_' is read as '-'. Upstreams such as
// PHP-FPM (through CGI variables) and some proxies treat the two
// characters alike, so a client could otherwise pass "X_UserSig_UserID"
// for the real header.
//
// Go's HTTP servers store every received header under its canonical key,
// so looking up the few canonical spellings finds all of them, and costs
// less than comparing every header of the request. A name with many
// separators falls back to the comparison.
func (g *Gateway) removeSpoofedIdentity(r *http.Request) {
	if !g.spoofed.scan {
		for _, key := range g.spoofed.keys {
			if _, ok := r.Header[key]; ok {
				delete(r.Header, key)
			}
		}
		return
	}
	g.scanSpoofedIdentity(r.Header)
}

// scanSpoofedIdentity is removeSpoofedIdentity by comparing every header
// name of h with the identity header names.
func (g *Gateway) scanSpoofedIdentity(h http.Header) {
	userID, sdkAppID := g.UserIDHeader != disabledHeader, g.SDKAppIDHeader != disabledHeader
	if !userID && !sdkAppID {
		return
	}
	for key := range h {
		if (userID && sameHeaderName(key, g.UserIDHeader)) ||
			(sdkAppID && sameHeaderName(key, g.SDKAppIDHeader)) {
			delete(h, key)
		}
	}
}

// forwardIdentity prepares a verified request for the upstream: it sets
// the identity headers and, unless keep_usersig is set, removes the
// UserSig. Spoofed identity headers must already be removed. The header
// names are canonical since Provision, so they are set without
// http.Header.Set, and both values share one allocation.
func (g *Gateway) forwardIdentity(r *http.Request, res *authResult) {
	values := make([]string, 0, 2)
	if g.UserIDHeader != disabledHeader {
		values = append(values, res.claims.UserID)
		r.Header[g.UserIDHeader] = values[0:1:1]
	}
	if g.SDKAppIDHeader != disabledHeader {
		values = append(values, res.app.idText)
		r.Header[g.SDKAppIDHeader] = values[len(values)-1 : len(values) : len(values)]
	}
	if !g.KeepUserSig {
		g.credentials.removeUserSig(r, &res.creds)
	}
}

// userMetadata returns the verified claims other than the UserID, and the
// room and rights of a valid privilege map, as the {http.auth.user.*}
// placeholders name them.
func userMetadata(res *authResult) map[string]string {
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

// userPlaceholderPrefix begins the name of every placeholder that
// setUserPlaceholders provides.
const userPlaceholderPrefix = "http.auth.user."

// userPlaceholderNames are the names after userPlaceholderPrefix that
// setUserPlaceholders provides. The last three need a privilege map.
var userPlaceholderNames = [...]string{"id", "sdkappid", "issued_at", "expires_at", "key_index", "room", "privileges", "privilege_map"}

// setUserPlaceholders provides {http.auth.user.id} and the other
// {http.auth.user.*} placeholders, as Caddy's authentication handler does
// for its providers. The last handler to authenticate the request must
// set the user, and the replacer looks up its static values first, then
// its functions in the order they were added.
//
// The usual request has no earlier user, and gets a replacer function
// that formats a value only when a later handler reads it: one allocation
// in place of one map entry and one string for each value. Static values
// of an earlier handler, such as basic_auth, are deleted first. When a
// value is still found after that, an earlier function provides it, such
// as that of another usersig handler on the same request, and only static
// values can replace it, so all of them are set.
func setUserPlaceholders(repl *caddy.Replacer, res *authResult) {
	repl.DeleteByPrefix(userPlaceholderPrefix)
	if _, earlier := repl.Get(userPlaceholderPrefix + "id"); earlier {
		for _, name := range userPlaceholderNames {
			// Without a privilege map, the room placeholders are set to
			// "" so that they hide the earlier handler's values.
			value, _ := userPlaceholder(res.claims, res.grant, name)
			repl.Set(userPlaceholderPrefix+name, value)
		}
		return
	}
	claims, grant := res.claims, res.grant
	repl.Map(func(key string) (any, bool) {
		name, ok := strings.CutPrefix(key, userPlaceholderPrefix)
		if !ok {
			return nil, false
		}
		return userPlaceholder(claims, grant, name)
	})
}

// userPlaceholder returns the value of {http.auth.user.NAME} for the
// verified claims and grant (nil without a privilege map). It returns
// false for a name that it does not provide, and for a privilege map
// placeholder without a grant.
func userPlaceholder(claims *usersig.Claims, grant *privilegeGrant, name string) (string, bool) {
	switch name {
	case "id":
		return claims.UserID, true
	case "sdkappid":
		return strconv.FormatUint(claims.SDKAppID, 10), true
	case "issued_at":
		return strconv.FormatInt(claims.Time, 10), true
	case "expires_at":
		return strconv.FormatInt(claims.ExpiresAt(), 10), true
	case "key_index":
		return strconv.Itoa(claims.KeyIndex), true
	case "room", "privileges", "privilege_map":
		if grant == nil {
			return "", false
		}
	default:
		return "", false
	}
	switch name {
	case "room":
		return grant.room, true
	case "privileges":
		return privilegeNames(grant.privileges), true
	}
	return strconv.FormatUint(uint64(grant.privileges), 10), true
}

// setFailurePlaceholders sets the placeholders that handle_errors routes
// use to render a rejection.
func setFailurePlaceholders(repl *caddy.Replacer, f *failure) {
	repl.Set("http.auth.usersig.error_code", strconv.Itoa(f.code))
	repl.Set("http.auth.usersig.error", f.reason)
}
