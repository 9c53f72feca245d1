package caddymodule

import (
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddyserver/caddy/v2"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// mapExpirySlack is the maximum difference, in seconds, between the expiry
// in a privilege map and TLS.time + TLS.expire. Tencent's Python, Node and PHP
// libraries read the clock once for the map and again for TLS.time, so
// the two differ by a second when the clock ticks in between.
const mapExpirySlack = 5

// roomSource is the source of a request's room ID for require_room: a
// query parameter, header or cookie, or a placeholder template such as
// {http.request.uri.path.1}.
type roomSource struct {
	template string // set for a template, empty for a source

	// reader reads the source as the UserSig credential, without a
	// template: one value, and a conflict for two different ones.
	reader credentialReader
}

// parseRoomSource parses the value of require_room. A value that contains
// a placeholder ("{...}") is a template, and any other value is read as
// query:NAME, header:NAME or cookie:NAME.
func parseRoomSource(text string) (roomSource, error) {
	if open := strings.IndexByte(text, '{'); open >= 0 && strings.IndexByte(text[open:], '}') > 0 {
		return roomSource{template: text}, nil
	}
	s, err := parseSource(text)
	if err != nil {
		return roomSource{}, fmt.Errorf("%w, or a placeholder such as {http.request.uri.path.1}", err)
	}
	return roomSource{reader: newCredentialReader(nil, nil, []source{s})}, nil
}

// read returns the room ID of r, "" when r has none, or false when the
// source contains two different values.
func (rs roomSource) read(r *http.Request) (string, bool) {
	if rs.template == "" {
		var c credentials
		if rs.reader.read(r, &c) != nil {
			return "", false
		}
		return c.userSig, true
	}
	repl, ok := r.Context().Value(caddy.ReplacerCtxKey).(*caddy.Replacer)
	if !ok {
		return "", true
	}
	// An unknown or empty placeholder makes the whole room ID missing, so
	// that a template with a literal prefix cannot match a room by its
	// prefix alone.
	room, err := repl.ReplaceOrErr(rs.template, true, true)
	if err != nil {
		return "", true
	}
	return room, true
}

// privilegeRequirement is the room and the rights that require_room and
// require_privilege demand of a PrivateMapKey.
type privilegeRequirement struct {
	room       *roomSource // nil when no room is required
	privileges usersig.Privilege
}

func (req privilegeRequirement) set() bool {
	return req.room != nil || req.privileges != 0
}

// privilegeGrant is the room and the set of rights in it that a valid
// privilege map grants.
type privilegeGrant struct {
	room       string // the decimal RoomID or the RoomStr
	privileges usersig.Privilege
}

// Failures of the privilege checks. They are all 403 with code 70003,
// because the token is genuine but does not allow the request.
var (
	failMapMalformed      = &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-map-malformed", "PrivateMapKey has a malformed privilege map"}
	failMapAccount        = &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-map-account", "PrivateMapKey privilege map is for another UserID"}
	failMapSDKAppID       = &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-map-sdkappid", "PrivateMapKey privilege map is for another SDKAppID"}
	failMapExpiry         = &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-map-expiry", "PrivateMapKey privilege map expiry does not match TLS.time + TLS.expire"}
	failMapRelativeExpiry = &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-map-relative-expiry", "PrivateMapKey privilege map holds a relative expiry, as libraries before 2020 wrote it: issue a new PrivateMapKey"}
	failRoomMissing       = &failure{http.StatusForbidden, usersig.CodeMalformed, "room-missing", "missing room ID in the request"}
	failRoomConflicting   = &failure{http.StatusForbidden, usersig.CodeMalformed, "room-conflicting", "conflicting room IDs in the request"}
	failRoomMismatch      = &failure{http.StatusForbidden, usersig.CodeMalformed, "room-mismatch", "PrivateMapKey is for another room"}
)

// failMissingPrivileges returns the failure for a privilege map that
// lacks the rights in missing, naming them.
func failMissingPrivileges(missing usersig.Privilege) *failure {
	noun := "privilege"
	if missing&(missing-1) != 0 {
		noun = "privileges"
	}
	return &failure{http.StatusForbidden, usersig.CodeMalformed, "privilege-missing", "PrivateMapKey lacks " + noun + " " + missing.String()}
}

// checkPrivileges reads the privilege map of a genuine token and applies
// req to it. It returns the grant of a valid map, or nil for a plain
// UserSig or, when nothing is required, for a token whose userbuf is not a
// valid privilege map. The token type has already been checked, so a
// plain UserSig never reaches here when req is set.
func checkPrivileges(r *http.Request, claims *usersig.Claims, req privilegeRequirement) (*privilegeGrant, *failure) {
	if !claims.HasUserBuf {
		if req.set() {
			return nil, failPlainUserSig
		}
		return nil, nil
	}

	m, err := usersig.ParsePrivilegeMap(claims.UserBuf)
	fail := failMapMalformed
	if err == nil {
		fail = checkMapMatchesToken(&m, claims)
	}
	if fail != nil {
		if req.set() {
			return nil, fail
		}
		// Without requirements the token is accepted as before, but its
		// map is not trusted enough to set the room placeholders.
		return nil, nil
	}

	grant := &privilegeGrant{room: mapRoom(m), privileges: m.Privileges}
	if req.room != nil {
		room, ok := req.room.read(r)
		switch {
		case !ok:
			return nil, failRoomConflicting
		case room == "":
			return nil, failRoomMissing
		case room != grant.room:
			return nil, failRoomMismatch
		}
	}
	if missing := req.privileges &^ m.Privileges; missing != 0 {
		return nil, failMissingPrivileges(missing)
	}
	return grant, nil
}

// checkMapMatchesToken checks that a privilege map was issued with the
// token that carries it: same UserID, SDKAppID and expiry.
//
// NOTE: the account is compared as UTF-8, as Tencent's Go, PHP and C++
// libraries write it. The Java and Node libraries write one byte per
// UTF-16 unit and the Python library one byte per character, so their
// PrivateMapKeys for non-ASCII UserIDs fail here as "for another UserID".
func checkMapMatchesToken(m *usersig.PrivilegeMap, claims *usersig.Claims) *failure {
	if m.Account != claims.UserID {
		return failMapAccount
	}
	// The verifier only accepts configured SDKAppIDs, which fit in 32 bits.
	if uint64(m.SDKAppID) != claims.SDKAppID {
		return failMapSDKAppID
	}
	// The map holds the low 32 bits of the absolute expiry. Differences
	// are taken modulo 2^32, as the field wraps.
	if !closeUint32(m.ExpireAt, uint32(claims.ExpiresAt()), mapExpirySlack) {
		if closeUint32(m.ExpireAt, uint32(claims.Expire), mapExpirySlack) {
			return failMapRelativeExpiry
		}
		return failMapExpiry
	}
	return nil
}

// closeUint32 reports whether a and b differ by at most slack, modulo 2^32.
func closeUint32(a, b uint32, slack int32) bool {
	d := int32(a - b)
	return d >= -slack && d <= slack
}

// mapRoom returns the room of m as a request names it: the decimal RoomID
// for a numeric room, the RoomStr for a string room.
func mapRoom(m usersig.PrivilegeMap) string {
	if m.Version == usersig.PrivilegeMapStringRoom {
		return m.RoomStr
	}
	return strconv.FormatUint(uint64(m.RoomID), 10)
}

// parseRequiredPrivileges parses the value of require_privilege: names
// separated by commas or a number. It must name at least one defined
// right and no undefined bit.
func parseRequiredPrivileges(text string) (usersig.Privilege, error) {
	p, err := usersig.ParsePrivilege(text)
	if err != nil {
		return 0, errors.New(strings.TrimPrefix(err.Error(), "usersig: "))
	}
	if p == 0 {
		return 0, fmt.Errorf("%q requires no privilege: name at least one, such as enter", text)
	}
	if undefined := p &^ usersig.PrivilegeAll; undefined != 0 {
		return 0, fmt.Errorf("%q has undefined privilege bits 0x%x: only the low 8 bits are defined", text, uint32(undefined))
	}
	return p, nil
}

// privilegeNames returns the names of p joined by commas, or "" for no
// privilege.
func privilegeNames(p usersig.Privilege) string {
	if p == 0 {
		return ""
	}
	return p.String()
}
