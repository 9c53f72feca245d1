package caddymodule

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

func init() {
	caddy.RegisterModule(Issuer{})
	httpcaddyfile.RegisterHandlerDirective("usersig_issue", parseIssuerCaddyfile)
	// It writes the response, so it runs after the authentication
	// handlers (basic_auth, forward_auth, usersig) and before respond.
	httpcaddyfile.RegisterDirectiveOrder("usersig_issue", httpcaddyfile.Before, "respond")
}

// CodeInvalidRoom is the error code of an issue request whose room ID is
// missing or invalid. Like 70020, it is a code of this gateway, not one of
// Tencent's.
const CodeInvalidRoom = 70021

// Default values and limits of the issuer.
const (
	defaultIssueExpire = 24 * time.Hour
	defaultIssueUserID = "{http.auth.user.id}"

	// maxStringRoomLength is the longest string room ID issued.
	maxStringRoomLength = 64
)

// Values of room_type.
const (
	roomTypeNumeric = "numeric"
	roomTypeString  = "string"
)

// Failures of the issuer.
var (
	failNotAuthenticated = &failure{http.StatusUnauthorized, usersig.CodeIdentifierMismatch, "not-authenticated", "no authenticated user"}
	failMissingRoom      = &failure{http.StatusBadRequest, CodeInvalidRoom, "missing-room", "missing room ID"}
	failInvalidRoom      = &failure{http.StatusBadRequest, CodeInvalidRoom, "invalid-room", "invalid room ID"}
	failInvalidIdentity  = &failure{http.StatusBadRequest, usersig.CodeIdentifierMismatch, "invalid-userid", "UserID is not valid UTF-8"}
)

// Issuer returns a new UserSig for the user that an earlier
// authentication handler (basic_auth, forward_auth, a JWT or OIDC
// handler, or usersig itself) has authenticated. It responds with JSON:
//
//	{"sdkappid":1400000001,"userid":"alice","usersig":"eJy...","expire":86400}
//
// With a room configured, the response also carries a PrivateMapKey for
// that room with the configured privileges.
//
// The issuer does not authenticate anyone itself: it trusts the value of
// userid, by default {http.auth.user.id}. When that value is empty, it
// responds 401 with Tencent's error code 70013.
type Issuer struct {
	// The SDKAppID of the application the tokens are for, from 1 to
	// 4294967295.
	SDKAppID uint64 `json:"sdkappid,omitempty"`

	// The secret key of the application, as the console shows it. It may
	// be a placeholder such as {env.TRTC_SECRET_KEY} or
	// {file./run/secrets/trtc_key}, replaced once at load time.
	Key string `json:"key,omitempty"`

	// The lifetime of an issued token (TLS.expire). Whole seconds count.
	// Default: 24h.
	Expire caddy.Duration `json:"expire,omitempty"`

	// The placeholder that gives the UserID, evaluated for each request.
	// Use only a value that an authentication handler sets and a client
	// cannot, such as a header that forward_auth copies from the auth
	// service's response. Default: {http.auth.user.id}.
	UserID string `json:"userid,omitempty"`

	// The room of a PrivateMapKey, which is issued along with the UserSig
	// when this is set: a source (query:NAME, header:NAME or
	// cookie:NAME) or a placeholder such as {http.request.uri.query.room}
	// or {http.auth.user.room}, read for each request. Requires privilege.
	Room string `json:"room,omitempty"`

	// The kind of room ID: "numeric" (TRTC's roomId, from 1 to 4294967295)
	// or "string" (strRoomId, at most 64 bytes). Default: "numeric".
	RoomType string `json:"room_type,omitempty"`

	// The privileges of the PrivateMapKey, as names separated by commas
	// (create, enter, send-audio, receive-audio, send-video,
	// receive-video, send-screen, receive-screen, all) or a number.
	// Requires room.
	Privilege string `json:"privilege,omitempty"`

	signer     *usersig.Signer
	expire     int64 // seconds
	privileges usersig.Privilege
	room       *roomSource // nil without a room
	logger     *zap.Logger
}

// CaddyModule returns the Caddy module information.
func (Issuer) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "http.handlers.usersig_issue",
		New: func() caddy.Module { return new(Issuer) },
	}
}

// Provision fills in defaults, replaces placeholders in the key and
// creates the signer.
func (is *Issuer) Provision(ctx caddy.Context) error {
	is.logger = ctx.Logger()
	if is.Expire == 0 {
		is.Expire = caddy.Duration(defaultIssueExpire)
	}
	is.expire = int64(time.Duration(is.Expire) / time.Second)
	if is.UserID == "" {
		is.UserID = defaultIssueUserID
	}
	if is.Room != "" && is.RoomType == "" {
		is.RoomType = roomTypeNumeric
	}

	if is.Room != "" {
		room, err := parseRoomSource(is.Room)
		if err != nil {
			return fmt.Errorf("room: %w", err)
		}
		is.room = &room
	}
	if is.Privilege != "" {
		p, err := usersig.ParsePrivilege(is.Privilege)
		if err != nil {
			return fmt.Errorf("privilege: %w", err)
		}
		is.privileges = p
	}

	if is.Key != "" {
		key, err := replaceKeyPlaceholders(caddy.NewReplacer(), is.Key)
		if err != nil {
			return fmt.Errorf("app %d: secret key: %w", is.SDKAppID, err)
		}
		if key == "" {
			return fmt.Errorf("app %d: secret key is empty", is.SDKAppID)
		}
		if key == DemoKey {
			is.logger.Warn("usersig_issue uses the public demo secret key of Caddyfile.example, with which anyone can issue UserSigs: use it for a local trial only",
				zap.Uint64("sdkappid", is.SDKAppID))
		}
		signer, err := usersig.NewSigner(key)
		if err != nil {
			return fmt.Errorf("app %d: creating signer: %w", is.SDKAppID, err)
		}
		is.signer = signer
	}

	is.logger.Warn("usersig_issue issues a UserSig to whoever the userid placeholder names: place an authentication handler such as basic_auth or forward_auth before it in the same route",
		zap.Uint64("sdkappid", is.SDKAppID), zap.String("userid", is.UserID))
	return nil
}

// Validate rejects a configuration without an SDKAppID or key, with a
// lifetime under one second, or with only one of room and privilege.
func (is *Issuer) Validate() error {
	switch {
	case is.SDKAppID == 0 || is.SDKAppID > math.MaxUint32:
		return fmt.Errorf("sdkappid: %d out of range: must be from 1 to %d", is.SDKAppID, uint64(math.MaxUint32))
	case is.Key == "":
		return fmt.Errorf("app %d: a secret key is required", is.SDKAppID)
	case is.Expire < caddy.Duration(time.Second):
		return fmt.Errorf("expire: %s is less than the minimum of 1s", time.Duration(is.Expire))
	case is.Room != "" && is.Privilege == "":
		return errors.New("room: privilege is also required for a PrivateMapKey")
	case is.Room == "" && is.Privilege != "":
		return errors.New("privilege: room is also required for a PrivateMapKey")
	case is.Room == "" && is.RoomType != "":
		return errors.New("room_type: room is also required")
	}
	switch is.RoomType {
	case "", roomTypeNumeric, roomTypeString:
	default:
		return fmt.Errorf("room_type: unknown value %q: expected %s or %s", is.RoomType, roomTypeNumeric, roomTypeString)
	}
	return nil
}

// issueResponse is the body of a successful response. The room fields
// and privatemapkey are present only with a room.
type issueResponse struct {
	SDKAppID      uint64 `json:"sdkappid"`
	UserID        string `json:"userid"`
	UserSig       string `json:"usersig"`
	Expire        int64  `json:"expire"`
	PrivateMapKey string `json:"privatemapkey,omitempty"`
	RoomID        uint32 `json:"roomid,omitempty"`
	StrRoomID     string `json:"strroomid,omitempty"`
	Privileges    string `json:"privileges,omitempty"`
}

// ServeHTTP issues the tokens. It never calls next, because it writes the
// response.
func (is *Issuer) ServeHTTP(w http.ResponseWriter, r *http.Request, _ caddyhttp.Handler) error {
	repl := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	userID := repl.ReplaceAll(is.UserID, "")
	if userID == "" {
		return is.reject(w, r, repl, failNotAuthenticated, "")
	}

	now := time.Now()
	params := usersig.Params{SDKAppID: is.SDKAppID, UserID: userID, Expire: is.expire, Time: now}
	token, err := is.signer.Issue(params)
	if errors.Is(err, usersig.ErrInvalidUserID) {
		return is.reject(w, r, repl, failInvalidIdentity, userID)
	}
	if err != nil {
		return caddyhttp.Error(http.StatusInternalServerError, fmt.Errorf("issuing a UserSig: %w", err))
	}
	resp := issueResponse{SDKAppID: is.SDKAppID, UserID: userID, UserSig: token, Expire: is.expire}

	if is.Room != "" {
		if fail := is.issuePrivateMapKey(r, params, &resp); fail != nil {
			return is.reject(w, r, repl, fail, userID)
		}
	}

	// json.Marshal fails only on unsupported types and values, and
	// issueResponse has none.
	body, _ := json.Marshal(resp)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)+1))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(append(body, '\n'))

	if c := is.logger.Check(zapcore.DebugLevel, "UserSig issued"); c != nil {
		c.Write(zap.Uint64("sdkappid", is.SDKAppID), zap.String("userid", truncate(userID, maxLoggedBytes)),
			zap.Int64("expire", is.expire), zap.Bool("privatemapkey", resp.PrivateMapKey != ""))
	}
	return nil
}

// issuePrivateMapKey reads the room of the request and adds a
// PrivateMapKey for it to resp.
func (is *Issuer) issuePrivateMapKey(r *http.Request, params usersig.Params, resp *issueResponse) *failure {
	room, ok := is.room.read(r)
	if !ok {
		return failInvalidRoom
	}
	if room == "" {
		return failMissingRoom
	}

	var key string
	var err error
	if is.RoomType == roomTypeString {
		if len(room) > maxStringRoomLength || !printableASCII(room) {
			return failInvalidRoom
		}
		key, err = is.signer.IssuePrivateMapKeyWithStringRoomID(params, room, is.privileges)
		resp.StrRoomID = room
	} else {
		id, parseErr := strconv.ParseUint(room, 10, 32)
		if parseErr != nil || id == 0 || strconv.FormatUint(id, 10) != room {
			return failInvalidRoom
		}
		key, err = is.signer.IssuePrivateMapKey(params, uint32(id), is.privileges)
		resp.RoomID = uint32(id)
	}
	if err != nil {
		// The UserID was already accepted for the UserSig, so only the
		// room can be wrong here.
		return failInvalidRoom
	}
	resp.PrivateMapKey = key
	resp.Privileges = is.privileges.String()
	return nil
}

// reject responds to a request that gets no token as the usersig handler
// responds to a rejection: through handle_errors when the server has error
// routes, else with a JSON body. It logs at debug level, since the cause
// is the client's request or a missing authentication handler.
func (is *Issuer) reject(w http.ResponseWriter, r *http.Request, repl *caddy.Replacer, f *failure, userID string) error {
	if c := is.logger.Check(zapcore.DebugLevel, "UserSig not issued"); c != nil {
		c.Write(zap.Uint64("sdkappid", is.SDKAppID), zap.String("userid", truncate(userID, maxLoggedBytes)),
			zap.String("result", f.result), zap.Int("code", f.code), zap.Int("status", f.status))
	}
	setFailurePlaceholders(repl, f)
	if hasErrorRoutes(r) {
		return caddyhttp.Error(f.status, f)
	}
	writeFailure(w, f)
	return nil
}

// printableASCII reports whether s holds only printable ASCII characters.
func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

func parseIssuerCaddyfile(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	is := new(Issuer)
	if err := is.UnmarshalCaddyfile(h.Dispenser); err != nil {
		return nil, err
	}
	return is, nil
}

// UnmarshalCaddyfile sets up the issuer from Caddyfile tokens. Syntax:
//
//	usersig_issue [<matcher>] {
//	    app <sdkappid> <key>
//	    expire <duration>
//	    userid <placeholder>
//	    room <source> [numeric|string]
//	    privilege <names>...
//	}
//
// The app line is required. room and privilege go together and add a
// PrivateMapKey to the response. A <source> is query:<name>,
// header:<name>, cookie:<name> or a placeholder.
func (is *Issuer) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // consume the directive name
	if d.NextArg() {
		return d.ArgErr()
	}

	seen := make(map[string]bool)
	for d.NextBlock(0) {
		option := d.Val()
		if seen[option] {
			return d.Errf("%s: set more than once", option)
		}
		seen[option] = true

		var err error
		switch option {
		case "app":
			err = is.unmarshalApp(d)
		case "expire":
			err = unmarshalDuration(d, &is.Expire)
		case "userid":
			err = unmarshalString(d, &is.UserID)
		case "room":
			err = is.unmarshalRoom(d)
		case "privilege":
			names := d.RemainingArgs()
			if len(names) == 0 {
				return d.ArgErr()
			}
			is.Privilege = strings.Join(names, ",")
			if _, parseErr := usersig.ParsePrivilege(is.Privilege); parseErr != nil {
				err = d.Errf("privilege: %v", parseErr)
			}
		default:
			err = d.Errf("unknown subdirective %q", option)
		}
		if err != nil {
			return err
		}
	}

	switch {
	case is.SDKAppID == 0:
		return d.Err("an app is required: app <sdkappid> <key>")
	case is.Room != "" && is.Privilege == "":
		return d.Err("room: privilege is also required for a PrivateMapKey")
	case is.Room == "" && is.Privilege != "":
		return d.Err("privilege: room is also required for a PrivateMapKey")
	}
	return nil
}

// unmarshalApp parses "app <sdkappid> <key>".
func (is *Issuer) unmarshalApp(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) != 2 {
		return d.Errf("app: expected app <sdkappid> <key>, got %d arguments", len(args))
	}
	id, err := strconv.ParseUint(args[0], 10, 64)
	if err != nil || id == 0 || id > math.MaxUint32 {
		return d.Errf("app: SDKAppID %q is not a number from 1 to %d", args[0], uint64(math.MaxUint32))
	}
	if args[1] == "" {
		return d.Errf("app %d: secret key is empty", id)
	}
	is.SDKAppID, is.Key = id, args[1]
	return nil
}

// unmarshalRoom parses "room <source> [numeric|string]".
func (is *Issuer) unmarshalRoom(d *caddyfile.Dispenser) error {
	args := d.RemainingArgs()
	if len(args) == 0 || len(args) > 2 {
		return d.ArgErr()
	}
	is.Room = args[0]
	if _, err := parseRoomSource(is.Room); err != nil {
		return d.Errf("room: %v", err)
	}
	if len(args) == 2 {
		is.RoomType = args[1]
		if is.RoomType != roomTypeNumeric && is.RoomType != roomTypeString {
			return d.Errf("room: unknown room type %q: expected %s or %s", is.RoomType, roomTypeNumeric, roomTypeString)
		}
	}
	return nil
}

// Interface guards
var (
	_ caddy.Provisioner           = (*Issuer)(nil)
	_ caddy.Validator             = (*Issuer)(nil)
	_ caddyhttp.MiddlewareHandler = (*Issuer)(nil)
	_ caddyfile.Unmarshaler       = (*Issuer)(nil)
)
