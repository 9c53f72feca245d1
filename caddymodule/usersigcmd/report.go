package usersigcmd

import (
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"unicode/utf8"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// verifyReport is the JSON object that "usersig verify" prints.
type verifyReport struct {
	Result  string `json:"result"`
	Code    int    `json:"code"`
	Message string `json:"message"`

	// KeyIndex is the position of the matching secret key in the key
	// list, present only when the signature matched.
	KeyIndex *int `json:"key_index,omitempty"`

	// Claims is present whenever the token could be decoded, even when
	// it was rejected.
	Claims *claimsReport `json:"claims,omitempty"`
}

// decodeReport is the JSON object that "usersig decode" prints.
type decodeReport struct {
	Verified bool `json:"verified"`

	// Result, Code and Message are set only when the token cannot be
	// decoded.
	Result  string `json:"result,omitempty"`
	Code    int    `json:"code,omitempty"`
	Message string `json:"message,omitempty"`

	Version   string        `json:"version,omitempty"`
	Claims    *claimsReport `json:"claims,omitempty"`
	Expired   *bool         `json:"expired,omitempty"`
	Signature string        `json:"sig,omitempty"`
}

// claimsReport is the set of claims of a token, as written in its JSON
// document.
type claimsReport struct {
	SDKAppID  uint64 `json:"sdkappid"`
	UserID    string `json:"userid"`
	Time      int64  `json:"time"`       // issue time, Unix seconds
	Expire    int64  `json:"expire"`     // lifetime in seconds from Time
	ExpiresAt int64  `json:"expires_at"` // Time + Expire, Unix seconds

	// UserBuf is TLS.userbuf as written (standard base64). It is a pointer
	// so that an empty userbuf shows as "" and a missing one not at all.
	UserBuf *string `json:"userbuf_b64,omitempty"`

	// PrivilegeMap is the parsed userbuf of a PrivateMapKey.
	// PrivilegeMapError is the reason why a userbuf is not a privilege map.
	PrivilegeMap      *privilegeMapReport `json:"privilege_map,omitempty"`
	PrivilegeMapError string              `json:"privilege_map_error,omitempty"`
}

// privilegeMapReport is a usersig.PrivilegeMap in JSON.
type privilegeMapReport struct {
	Version uint8  `json:"version"` // 0 numeric room, 1 string room
	Account string `json:"account"`
	// AccountHex is Account in hexadecimal, set only when Account is not
	// valid UTF-8, which JSON cannot carry. The Java, Node and Python
	// libraries write non-ASCII UserIDs one byte per character.
	AccountHex     string `json:"account_hex,omitempty"`
	SDKAppID       uint32 `json:"sdkappid"`
	RoomID         uint32 `json:"room_id"`
	RoomStr        string `json:"room_str"`
	RoomStrHex     string `json:"room_str_hex,omitempty"` // as AccountHex
	ExpireAt       uint32 `json:"expire_at"`              // Unix seconds, low 32 bits
	Privileges     uint32 `json:"privileges"`
	PrivilegeNames string `json:"privilege_names"`
	AccountType    uint32 `json:"account_type"`
}

// newClaimsReport describes a decoded token. The userbuf, when present, is
// parsed as a privilege map.
func newClaimsReport(doc usersig.Document) *claimsReport {
	c := &claimsReport{
		SDKAppID:  doc.SDKAppID,
		UserID:    doc.UserID,
		Time:      doc.Time,
		Expire:    doc.Expire,
		ExpiresAt: doc.ExpiresAt(),
	}
	if !doc.HasUserBuf {
		return c
	}

	text := doc.UserBufText
	c.UserBuf = &text
	if doc.UserBuf == nil {
		c.PrivilegeMapError = "TLS.userbuf is not valid base64"
		return c
	}
	m, err := usersig.ParsePrivilegeMap(doc.UserBuf)
	if err != nil {
		c.PrivilegeMapError = errorReason(err)
		return c
	}
	c.PrivilegeMap = newPrivilegeMapReport(m)
	return c
}

func newPrivilegeMapReport(m usersig.PrivilegeMap) *privilegeMapReport {
	r := &privilegeMapReport{
		Version:        m.Version,
		Account:        m.Account,
		SDKAppID:       m.SDKAppID,
		RoomID:         m.RoomID,
		RoomStr:        m.RoomStr,
		ExpireAt:       m.ExpireAt,
		Privileges:     uint32(m.Privileges),
		PrivilegeNames: m.Privileges.String(),
		AccountType:    m.AccountType,
	}
	if !utf8.ValidString(m.Account) {
		r.AccountHex = hex.EncodeToString([]byte(m.Account))
	}
	if !utf8.ValidString(m.RoomStr) {
		r.RoomStrHex = hex.EncodeToString([]byte(m.RoomStr))
	}
	return r
}

// errorReason returns the reason of a usersig error without its
// "usersig:" prefix.
func errorReason(err error) string {
	if e, ok := errors.AsType[*usersig.Error](err); ok {
		return e.Reason()
	}
	return err.Error()
}

func signatureText(doc usersig.Document) string {
	return base64.StdEncoding.EncodeToString(doc.Signature[:])
}

// printJSON writes v to standard output, indented, without escaping
// '<', '>' and '&' so that UserIDs read as they are.
func printJSON(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
