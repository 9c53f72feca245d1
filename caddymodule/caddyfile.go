package caddymodule

import (
	"math"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
)

func init() {
	httpcaddyfile.RegisterHandlerDirective("usersig", parseCaddyfile)
	// Beside basic_auth and forward_auth: before handle, route,
	// reverse_proxy and every handler that writes a response, so a
	// Caddyfile needs no global order option.
	httpcaddyfile.RegisterDirectiveOrder("usersig", httpcaddyfile.After, "forward_auth")
}

func parseCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	handler := new(Handler)
	if err := handler.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return handler, nil
}

// UnmarshalCaddyfile sets up the gateway from Caddyfile tokens. Syntax:
//
//	usersig [<matcher>] {
//	    app <sdkappid> <key> [<previous_key>...]
//	    sdkappid_from <source>...
//	    userid_from <source>...
//	    usersig_from <source>...
//	    token_type usersig|privatemapkey|any
//	    require_room <source>|<placeholder>
//	    require_privilege <name>[,<name>...]|<number>
//	    mode enforce|optional|annotate
//	    clock_skew <duration>
//	    max_lifetime <duration>
//	    lenient_base64
//	    cache_size <entries>
//	    negative_cache_size <entries>
//	    negative_cache_ttl <duration>
//	    userid_header <header>|-
//	    sdkappid_header <header>|-
//	    keep_usersig
//	    realm <realm>
//	    check_preflight
//	    revocation_file <path>
//	    revocation_poll <duration>
//	    revocation_admin_token <token>
//	    lockout {
//	        max_failures <number>
//	        window <duration>
//	        duration <duration>
//	        by ip|userid|both
//	        table_size <entries>
//	    }
//	}
//
// Each app line adds one application; at least one is required. A
// <source> is query:<name>, header:<name> or cookie:<name>. Keys may be
// placeholders such as {env.USERSIG_KEY}, replaced at load time. The room
// of require_room may also be a placeholder such as
// {http.request.uri.path.1}, evaluated for each request. The privileges
// of require_privilege may be given as several arguments, which are
// joined with commas. Every line of the lockout block is optional.
func (g *Gateway) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the directive name
	if d.NextArg() {
		return d.ArgErr()
	}

	seenApps := make(map[uint64]bool)
	seenOptions := make(map[string]bool)
	for d.NextBlock(0) {
		option := d.Val()
		if option != "app" {
			if seenOptions[option] {
				return d.Errf("%s: set more than once", option)
			}
			seenOptions[option] = true
		}

		var err error
		switch option {
		case "app":
			err = g.unmarshalApp(d, seenApps)
		case "sdkappid_from":
			g.SDKAppIDFrom, err = unmarshalSources(d)
		case "userid_from":
			g.UserIDFrom, err = unmarshalSources(d)
		case "usersig_from":
			g.UserSigFrom, err = unmarshalSources(d)
		case "token_type":
			err = unmarshalString(d, &g.TokenType)
			if err == nil && g.TokenType != tokenTypeUserSig && g.TokenType != tokenTypePrivateMapKey && g.TokenType != tokenTypeAny {
				err = d.Errf("token_type: unknown value %q: expected %s, %s or %s", g.TokenType, tokenTypeUserSig, tokenTypePrivateMapKey, tokenTypeAny)
			}
		case "require_room":
			err = unmarshalString(d, &g.RequireRoom)
			if err == nil {
				if _, parseErr := parseRoomSource(g.RequireRoom); parseErr != nil {
					err = d.Errf("require_room: %v", parseErr)
				}
			}
		case "require_privilege":
			err = g.unmarshalRequirePrivilege(d)
		case "mode":
			err = unmarshalString(d, &g.Mode)
			if err == nil {
				if modeErr := validateMode(g.Mode); modeErr != nil {
					err = d.Err(modeErr.Error())
				}
			}
		case "clock_skew":
			err = unmarshalDuration(d, &g.ClockSkew)
		case "max_lifetime":
			err = unmarshalDuration(d, &g.MaxLifetime)
		case "negative_cache_ttl":
			err = unmarshalDuration(d, &g.NegativeCacheTTL)
		case "cache_size":
			g.CacheSize, err = unmarshalSize(d)
		case "negative_cache_size":
			g.NegativeCacheSize, err = unmarshalSize(d)
		case "userid_header":
			err = unmarshalHeaderName(d, &g.UserIDHeader)
		case "sdkappid_header":
			err = unmarshalHeaderName(d, &g.SDKAppIDHeader)
		case "realm":
			err = unmarshalString(d, &g.Realm)
			if err == nil && (g.Realm == "" || !validRealm(g.Realm)) {
				err = d.Errf("realm: %q must be non-empty printable ASCII without '\"' or '\\'", g.Realm)
			}
		case "lenient_base64":
			err = unmarshalFlag(d, &g.LenientBase64)
		case "keep_usersig":
			err = unmarshalFlag(d, &g.KeepUserSig)
		case "check_preflight":
			err = unmarshalFlag(d, &g.CheckPreflight)
		case "revocation_file":
			err = unmarshalString(d, &g.RevocationFile)
		case "revocation_poll":
			err = unmarshalDuration(d, &g.RevocationPoll)
		case "revocation_admin_token":
			err = unmarshalString(d, &g.RevocationAdminToken)
		case "lockout":
			g.Lockout, err = unmarshalLockout(d)
		default:
			err = d.Errf("unknown subdirective %q", option)
		}
		if err != nil {
			return err
		}
	}

	if len(g.Apps) == 0 {
		return d.Err("at least one app is required: app <sdkappid> <key>")
	}
	if err := checkTokenTypeAllowsRequirement(g.TokenType, g.RequireRoom != "" || g.RequirePrivilege != ""); err != nil {
		return d.Err(err.Error())
	}
	return nil
}

// unmarshalRequirePrivilege parses "require_privilege <privileges>...".
func (g *Gateway) unmarshalRequirePrivilege(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 {
		return d.ArgErr()
	}
	text := strings.Join(args, ",")
	if _, err := parseRequiredPrivileges(text); err != nil {
		return d.Errf("require_privilege: %v", err)
	}
	g.RequirePrivilege = text
	return nil
}

// unmarshalApp parses "app <sdkappid> <key> [<previous_key>...]".
func (g *Gateway) unmarshalApp(d *caddyfile.Dispenser, seen map[uint64]bool) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	text := d.Val()
	id, err := strconv.ParseUint(text, 10, 64)
	if err != nil {
		if numErr, ok := err.(*strconv.NumError); ok && numErr.Err == strconv.ErrRange {
			return d.Errf("app: SDKAppID %s out of range: must be from 1 to %d", text, uint64(math.MaxUint32))
		}
		return d.Errf("app: SDKAppID %q is not a number", text)
	}
	if id == 0 || id > math.MaxUint32 {
		return d.Errf("app: SDKAppID %d out of range: must be from 1 to %d", id, uint64(math.MaxUint32))
	}
	if seen[id] {
		return d.Errf("app: duplicate SDKAppID %d", id)
	}
	seen[id] = true

	keys := d.RemainingArgs()
	if len(keys) == 0 {
		return d.Errf("app %d: missing secret key: app <sdkappid> <key> [<previous_key>...]", id)
	}
	for i, key := range keys {
		if key == "" {
			return d.Errf("app %d: secret key %d is empty", id, i+1)
		}
	}
	g.Apps = append(g.Apps, App{SDKAppID: id, Keys: keys})
	return nil
}

func unmarshalSources(d *caddyfile.Dispenser) ([]string, error) {
	option := d.Val()
	texts := d.RemainingArgs()
	if len(texts) == 0 {
		return nil, d.ArgErr()
	}
	for _, text := range texts {
		if _, err := parseSource(text); err != nil {
			return nil, d.Errf("%s: %v", option, err)
		}
	}
	return texts, nil
}

// unmarshalString reads the single argument of the current option.
func unmarshalString(d *caddyfile.Dispenser, dst *string) error {
	if !d.NextArg() {
		return d.ArgErr()
	}
	*dst = d.Val()
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

func unmarshalDuration(d *caddyfile.Dispenser, dst *caddy.Duration) error {
	option := d.Val()
	var text string
	if err := unmarshalString(d, &text); err != nil {
		return err
	}
	dur, err := caddy.ParseDuration(text)
	if err != nil {
		return d.Errf("%s: invalid duration %q: expected a number with a unit, such as 30s, 5m or 1d", option, text)
	}
	if dur < 0 {
		return d.Errf("%s: duration %q is negative", option, text)
	}
	*dst = caddy.Duration(dur)
	return nil
}

func unmarshalSize(d *caddyfile.Dispenser) (*int, error) {
	option := d.Val()
	var text string
	if err := unmarshalString(d, &text); err != nil {
		return nil, err
	}
	size, err := strconv.Atoi(text)
	if err != nil || size < 0 {
		return nil, d.Errf("%s: %q is not a non-negative number of entries", option, text)
	}
	return &size, nil
}

func unmarshalHeaderName(d *caddyfile.Dispenser, dst *string) error {
	option := d.Val()
	if err := unmarshalString(d, dst); err != nil {
		return err
	}
	if *dst != disabledHeader && !validHeaderName(*dst) {
		return d.Errf("%s: %q is not a valid header name", option, *dst)
	}
	return nil
}

func unmarshalFlag(d *caddyfile.Dispenser, dst *bool) error {
	if d.NextArg() {
		return d.ArgErr()
	}
	*dst = true
	return nil
}

// Interface guards
var (
	_ caddyfile.Unmarshaler = (*Handler)(nil)
	_ caddyfile.Unmarshaler = (*Provider)(nil)
)
