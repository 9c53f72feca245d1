package caddymodule

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/zap"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// DemoKey is the secret key of the demo app in Caddyfile.example, for a
// local trial only. Anyone can issue UserSigs with it, so a configuration
// that uses it gets a warning at load time.
const DemoKey = "5f7a3b2c9d1e4f60a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5"

// Default values of the configuration.
const (
	defaultClockSkew         = 5 * time.Minute
	defaultCacheSize         = 10000
	defaultNegativeCacheSize = 1000
	defaultNegativeCacheTTL  = 10 * time.Second
	defaultUserIDHeader      = "X-UserSig-UserID"
	defaultSDKAppIDHeader    = "X-UserSig-SDKAppID"
	defaultRealm             = "usersig"
)

// Values of token_type.
const (
	tokenTypeUserSig       = "usersig"
	tokenTypePrivateMapKey = "privatemapkey"
	tokenTypeAny           = "any"
)

// The credential sources used when none are configured: the query
// parameters of Tencent's REST APIs.
var (
	defaultSDKAppIDFrom = []string{"query:sdkappid"}
	defaultUserIDFrom   = []string{"query:identifier", "query:userid"}
	defaultUserSigFrom  = []string{"query:usersig"}
)

// App is one Tencent application whose UserSigs are accepted.
type App struct {
	// The SDKAppID of the application, from 1 to 4294967295.
	SDKAppID uint64 `json:"sdkappid,omitempty"`

	// The secret keys of the application, as the console shows them. The
	// first is the current key, and the others are previous keys that are
	// still accepted during a key rotation. A key may be a placeholder
	// such as {env.USERSIG_KEY} or {file./run/secrets/usersig_key},
	// replaced once at load time; a key that is empty after replacing is
	// an error.
	Keys []string `json:"keys,omitempty"`
}

// Gateway is the configuration and state shared by the usersig handler
// and the usersig authentication provider: it reads the credentials of a
// request, verifies the UserSig and forwards the verified identity.
type Gateway struct {
	// The applications whose UserSigs are accepted. At least one is
	// required.
	Apps []App `json:"apps,omitempty"`

	// The sources of the SDKAppID, each written "query:NAME",
	// "header:NAME" or "cookie:NAME". Default: ["query:sdkappid"].
	SDKAppIDFrom []string `json:"sdkappid_from,omitempty"`

	// The sources of the UserID, in the syntax of sdkappid_from.
	// Default: ["query:identifier", "query:userid"].
	UserIDFrom []string `json:"userid_from,omitempty"`

	// The sources of the UserSig, in the syntax of sdkappid_from.
	// Default: ["query:usersig"].
	UserSigFrom []string `json:"usersig_from,omitempty"`

	// The kind of token accepted: "usersig" (a plain UserSig),
	// "privatemapkey" (a UserSig with a privilege map in TLS.userbuf) or
	// "any". A genuine token of the other kind is rejected with 403.
	// Default: "usersig", or "privatemapkey" when require_room or
	// require_privilege is set, which allow no other value.
	TokenType string `json:"token_type,omitempty"`

	// The source of the room ID that a PrivateMapKey must be for:
	// "query:NAME", "header:NAME", "cookie:NAME", or a placeholder such as
	// "{http.request.uri.path.1}" evaluated for each request. A numeric room matches its decimal form exactly (no
	// sign, no leading zeros) and a string room matches byte for byte. A
	// request without a room ID is rejected with 403. Default: no room
	// is required.
	RequireRoom string `json:"require_room,omitempty"`

	// The rights a PrivateMapKey must grant, as names separated by
	// commas (create, enter, send-audio, receive-audio, send-video,
	// receive-video, send-screen, receive-screen, all) or as a number
	// such as 6 or 0x6. A token that lacks one is rejected with 403.
	// Default: no right is required.
	RequirePrivilege string `json:"require_privilege,omitempty"`

	// The handling of a request without a valid credential. "enforce"
	// rejects it. "optional" lets a request that carries no credential at
	// all pass unauthenticated, and rejects an invalid one. "annotate"
	// lets every request pass, and sets the failure placeholders for an
	// invalid one. The authentication provider supports "enforce" only.
	// Default: "enforce".
	Mode string `json:"mode,omitempty"`

	// The tolerated difference between the clocks of the token issuer
	// and this server. A token stays valid this long after its expiry,
	// and a token issued more than this far in the future is rejected.
	// Whole seconds count, so the minimum is 1s. Default: 5m.
	ClockSkew caddy.Duration `json:"clock_skew,omitempty"`

	// The maximum lifetime (TLS.expire) of a token. A genuine token with
	// a longer lifetime is rejected with 403. Whole seconds count.
	// Default: 0, no limit.
	MaxLifetime caddy.Duration `json:"max_lifetime,omitempty"`

	// Also accept the standard base64 alphabet ('+', '/', '=') and
	// missing padding in a token, as some third-party generators write
	// it. Default: false, only the spelling of Tencent's libraries.
	LenientBase64 bool `json:"lenient_base64,omitempty"`

	// The number of verified tokens kept in memory, so that a token seen
	// again costs no HMAC. 0 disables the cache. Default: 10000.
	CacheSize *int `json:"cache_size,omitempty"`

	// The number of rejected tokens kept in memory, for failures that
	// cannot change with time (malformed, invalid signature). 0 disables
	// this cache. Default: 1000.
	NegativeCacheSize *int `json:"negative_cache_size,omitempty"`

	// How long a rejected token is kept in the negative cache.
	// Default: 10s.
	NegativeCacheTTL caddy.Duration `json:"negative_cache_ttl,omitempty"`

	// The request header that carries the verified UserID to the
	// upstream. Copies sent by the client are removed first, in every
	// spelling of the name ('_' for '-', any case). "-" sends no header.
	// Default: "X-UserSig-UserID".
	UserIDHeader string `json:"userid_header,omitempty"`

	// The request header that carries the verified SDKAppID to the
	// upstream, handled like userid_header. "-" sends no header.
	// Default: "X-UserSig-SDKAppID".
	SDKAppIDHeader string `json:"sdkappid_header,omitempty"`

	// Pass the UserSig on to the upstream. By default it is removed from
	// the query, header or cookie it came from.
	KeepUserSig bool `json:"keep_usersig,omitempty"`

	// The realm in the WWW-Authenticate header of a 401 response.
	// Default: "usersig".
	Realm string `json:"realm,omitempty"`

	// Verify CORS preflight requests too. By default an OPTIONS request
	// with Origin and Access-Control-Request-Method headers passes
	// unchecked, because browsers send preflights without credentials.
	CheckPreflight bool `json:"check_preflight,omitempty"`

	// A file of revocations, one JSON object per line such as
	// {"sdkappid":1400000001,"userid":"alice","before":1733300000}: the
	// tokens of that user (of every user of the app without userid)
	// issued before that Unix time are rejected with 401 and code 70052.
	// The file is read at load time and again when it changes. A
	// placeholder such as {env.NAME} is replaced at load time.
	// Default: none.
	RevocationFile string `json:"revocation_file,omitempty"`

	// The minimum time between two checks of revocation_file for changes.
	// Default: 2s.
	RevocationPoll caddy.Duration `json:"revocation_poll,omitempty"`

	// The bearer token that the admin API endpoint /usersig/revocations
	// requires to list and add revocations of this gateway, at least 16
	// characters. Use a placeholder such as {env.USERSIG_ADMIN_TOKEN},
	// replaced at load time, to keep it out of the config. Default: none,
	// the endpoint is off for this gateway.
	RevocationAdminToken string `json:"revocation_admin_token,omitempty"`

	// The failure lockout: after repeated failed verifications from one
	// client address or for one UserID, further requests are rejected
	// with 429 and code 70050 for a while. Default: none, no lockout.
	Lockout *LockoutConfig `json:"lockout,omitempty"`

	apps        map[uint64]*appState // by SDKAppID
	tokenMode   usersig.Mode
	requirement privilegeRequirement
	credentials credentialReader
	cache       *verifyCache
	challenge   string       // the WWW-Authenticate header of a 401 response
	spoofed     spoofedKeys  // the keys of client headers that mimic the identity headers
	revocations *revocations // nil without revocation_file and revocation_admin_token
	lockout     *lockout     // nil without a lockout block
	logger      *zap.Logger
}

// appState is the state of one configured app that requests use: its
// verifier, the SDKAppID text and its metric series.
type appState struct {
	verifier   *usersig.Verifier
	idText     string               // the SDKAppID in decimal, for the identity header
	keyMatches []prometheus.Counter // key_matches_total, by key index
}

// Provision fills in defaults, parses the privilege requirements, replaces
// placeholders in the secret keys, and builds a verifier per app, new
// caches and lockout tables. It then reads the revocation file and
// registers the metrics in the config's registry and the revocations with
// the admin API.
func (g *Gateway) Provision(ctx caddy.Context) error {
	g.logger = ctx.Logger()

	if err := g.provisionRequirement(); err != nil {
		return err
	}
	if g.TokenType == "" {
		g.TokenType = tokenTypeUserSig
		if g.requirement.set() {
			g.TokenType = tokenTypePrivateMapKey
		}
	}
	switch g.TokenType {
	case tokenTypeUserSig:
		g.tokenMode = usersig.ModeUserSig
	case tokenTypePrivateMapKey:
		g.tokenMode = usersig.ModeWithUserBuf
	case tokenTypeAny:
		g.tokenMode = usersig.ModeAny
	}
	if g.Mode == "" {
		g.Mode = modeEnforce
	}
	if g.ClockSkew == 0 {
		g.ClockSkew = caddy.Duration(defaultClockSkew)
	}
	if g.NegativeCacheTTL == 0 {
		g.NegativeCacheTTL = caddy.Duration(defaultNegativeCacheTTL)
	}
	if g.UserIDHeader == "" {
		g.UserIDHeader = defaultUserIDHeader
	}
	if g.SDKAppIDHeader == "" {
		g.SDKAppIDHeader = defaultSDKAppIDHeader
	}
	if g.Realm == "" {
		g.Realm = defaultRealm
	}
	g.challenge = `UserSig realm="` + g.Realm + `"`
	if g.UserIDHeader != disabledHeader {
		g.UserIDHeader = http.CanonicalHeaderKey(g.UserIDHeader)
	}
	if g.SDKAppIDHeader != disabledHeader {
		g.SDKAppIDHeader = http.CanonicalHeaderKey(g.SDKAppIDHeader)
	}
	g.spoofed = newSpoofedKeys(g.UserIDHeader, g.SDKAppIDHeader)

	if err := g.provisionSources(); err != nil {
		return err
	}
	if err := g.provisionVerifiers(); err != nil {
		return err
	}
	if err := registerMetrics(ctx.GetMetricsRegistry()); err != nil {
		return err
	}
	for id, series := range keyMatchCounters(g.Apps) {
		if app := g.apps[id]; app != nil {
			app.keyMatches = series
		}
	}

	cache, err := newVerifyCache(sizeOrDefault(g.CacheSize, defaultCacheSize),
		sizeOrDefault(g.NegativeCacheSize, defaultNegativeCacheSize),
		time.Duration(g.NegativeCacheTTL))
	if err != nil {
		return fmt.Errorf("creating the cache: %w", err)
	}
	g.cache = cache

	if err := g.provisionLockout(); err != nil {
		return err
	}
	return g.provisionRevocations()
}

func (g *Gateway) provisionSources() error {
	sdkAppID, err := parseSources("sdkappid_from", orDefault(g.SDKAppIDFrom, defaultSDKAppIDFrom))
	if err != nil {
		return err
	}
	userID, err := parseSources("userid_from", orDefault(g.UserIDFrom, defaultUserIDFrom))
	if err != nil {
		return err
	}
	userSig, err := parseSources("usersig_from", orDefault(g.UserSigFrom, defaultUserSigFrom))
	if err != nil {
		return err
	}
	g.credentials = newCredentialReader(sdkAppID, userID, userSig)
	return nil
}

// provisionRequirement parses require_room and require_privilege.
func (g *Gateway) provisionRequirement() error {
	if g.RequireRoom != "" {
		room, err := parseRoomSource(g.RequireRoom)
		if err != nil {
			return fmt.Errorf("require_room: %w", err)
		}
		g.requirement.room = &room
	}
	if g.RequirePrivilege != "" {
		privileges, err := parseRequiredPrivileges(g.RequirePrivilege)
		if err != nil {
			return fmt.Errorf("require_privilege: %w", err)
		}
		g.requirement.privileges = privileges
	}
	return nil
}

// provisionVerifiers builds one verifier per app. Checks that need no
// placeholder replacement (duplicates, ranges, missing keys) are left to
// Validate, which runs next: an app that fails them is skipped here.
func (g *Gateway) provisionVerifiers() error {
	policy := usersig.Policy{
		MaxSkew:       time.Duration(g.ClockSkew),
		MaxLifetime:   time.Duration(g.MaxLifetime),
		LenientBase64: g.LenientBase64,
	}
	repl := caddy.NewReplacer()
	g.apps = make(map[uint64]*appState, len(g.Apps))
	for _, app := range g.Apps {
		if _, dup := g.apps[app.SDKAppID]; dup || len(app.Keys) == 0 {
			continue
		}

		keys := make([]string, len(app.Keys))
		for i, raw := range app.Keys {
			key, err := replaceKeyPlaceholders(repl, raw)
			if err != nil {
				return fmt.Errorf("app %d: secret key %d: %w", app.SDKAppID, i+1, err)
			}
			if key == "" {
				return fmt.Errorf("app %d: secret key %d is empty", app.SDKAppID, i+1)
			}
			if key == DemoKey {
				g.logger.Warn("app uses the public demo secret key of Caddyfile.example, with which anyone can issue UserSigs: use it for a local trial only",
					zap.Uint64("sdkappid", app.SDKAppID), zap.Int("key_number", i+1))
			}
			keys[i] = key
		}

		v, err := usersig.NewVerifier(keys, policy)
		if err != nil {
			return fmt.Errorf("app %d: creating verifier: %w", app.SDKAppID, err)
		}
		g.apps[app.SDKAppID] = &appState{verifier: v, idText: strconv.FormatUint(app.SDKAppID, 10)}
	}
	return nil
}

// replaceKeyPlaceholders replaces the placeholders of a secret key as
// written in the config, such as {env.NAME} and {file.PATH}. Caddy's
// {file.*} placeholder drops one trailing newline (LF or CRLF) of the file
// itself (replacer.go in v2.11.9).
func replaceKeyPlaceholders(repl *caddy.Replacer, raw string) (string, error) {
	key, err := repl.ReplaceOrErr(raw, true, true)
	if err != nil {
		return "", fmt.Errorf("replacing placeholders: %w (a missing or unreadable {file.*} and an unset {env.*} are empty)", err)
	}
	return key, nil
}

// Validate rejects a configuration with no app, a duplicate or
// out-of-range SDKAppID, or an app without keys. It also rejects an
// unknown token type or mode, a token type that conflicts with
// require_room or require_privilege, negative sizes or durations, and an
// unusable header name or realm.
func (g *Gateway) Validate() error {
	if len(g.Apps) == 0 {
		return errors.New("apps: at least one app is required")
	}
	seen := make(map[uint64]bool, len(g.Apps))
	for _, app := range g.Apps {
		if app.SDKAppID == 0 || app.SDKAppID > math.MaxUint32 {
			return fmt.Errorf("apps: SDKAppID %d out of range: must be from 1 to %d", app.SDKAppID, uint64(math.MaxUint32))
		}
		if seen[app.SDKAppID] {
			return fmt.Errorf("apps: duplicate SDKAppID %d", app.SDKAppID)
		}
		seen[app.SDKAppID] = true
		if len(app.Keys) == 0 {
			return fmt.Errorf("app %d: keys: at least one secret key is required", app.SDKAppID)
		}
		for i, key := range app.Keys {
			if key == "" {
				return fmt.Errorf("app %d: secret key %d is empty", app.SDKAppID, i+1)
			}
		}
	}

	switch g.TokenType {
	case tokenTypeUserSig, tokenTypePrivateMapKey, tokenTypeAny:
	default:
		return fmt.Errorf("token_type: unknown value %q: expected %s, %s or %s", g.TokenType, tokenTypeUserSig, tokenTypePrivateMapKey, tokenTypeAny)
	}
	if err := checkTokenTypeAllowsRequirement(g.TokenType, g.requirement.set()); err != nil {
		return err
	}
	if err := validateMode(g.Mode); err != nil {
		return err
	}

	if g.ClockSkew < caddy.Duration(time.Second) {
		return fmt.Errorf("clock_skew: %s is less than the minimum of 1s", time.Duration(g.ClockSkew))
	}
	if g.MaxLifetime < 0 || (g.MaxLifetime > 0 && g.MaxLifetime < caddy.Duration(time.Second)) {
		return fmt.Errorf("max_lifetime: %s must be 0 (no limit) or at least 1s", time.Duration(g.MaxLifetime))
	}
	if g.CacheSize != nil && *g.CacheSize < 0 {
		return fmt.Errorf("cache_size: %d is negative", *g.CacheSize)
	}
	if g.NegativeCacheSize != nil && *g.NegativeCacheSize < 0 {
		return fmt.Errorf("negative_cache_size: %d is negative", *g.NegativeCacheSize)
	}
	if g.NegativeCacheTTL < 0 {
		return fmt.Errorf("negative_cache_ttl: %s is negative", time.Duration(g.NegativeCacheTTL))
	}

	if g.UserIDHeader != disabledHeader && !validHeaderName(g.UserIDHeader) {
		return fmt.Errorf("userid_header: %q is not a valid header name", g.UserIDHeader)
	}
	if g.SDKAppIDHeader != disabledHeader && !validHeaderName(g.SDKAppIDHeader) {
		return fmt.Errorf("sdkappid_header: %q is not a valid header name", g.SDKAppIDHeader)
	}
	if !validRealm(g.Realm) {
		return fmt.Errorf("realm: %q must be printable ASCII without '\"' or '\\'", g.Realm)
	}

	if err := g.validateRevocation(); err != nil {
		return err
	}
	if g.Lockout != nil {
		return g.Lockout.validate()
	}
	return nil
}

// Cleanup empties the caches and removes the revocations from the admin
// API. The gateway starts no goroutines, so there is nothing else to
// stop.
func (g *Gateway) Cleanup() error {
	if g.cache != nil {
		g.cache.purge()
	}
	if g.revocations != nil {
		unregisterRevocations(g.revocations)
	}
	return nil
}

// checkTokenTypeAllowsRequirement rejects a token type other than
// privatemapkey when require_room or require_privilege is set, because
// the requirements reject every plain UserSig. An empty token type is the
// default, which is then privatemapkey.
func checkTokenTypeAllowsRequirement(tokenType string, required bool) error {
	if !required || tokenType == "" || tokenType == tokenTypePrivateMapKey {
		return nil
	}
	return fmt.Errorf("token_type: %s conflicts with require_room and require_privilege, which need a PrivateMapKey: set token_type %s or leave it out",
		tokenType, tokenTypePrivateMapKey)
}

// isPreflight reports whether r is a CORS preflight request.
func isPreflight(r *http.Request) bool {
	return r.Method == http.MethodOptions &&
		r.Header.Get("Origin") != "" &&
		r.Header.Get("Access-Control-Request-Method") != ""
}

func sizeOrDefault(size *int, def int) int {
	if size == nil {
		return def
	}
	return *size
}

func orDefault(values, def []string) []string {
	if len(values) == 0 {
		return def
	}
	return values
}

// validRealm reports whether realm can be written inside the quoted
// string of a WWW-Authenticate header without escaping.
func validRealm(realm string) bool {
	for i := 0; i < len(realm); i++ {
		c := realm[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}
