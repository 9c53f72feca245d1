package usersig

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Privilege is the privilege field of a PrivilegeMap: a set of TRTC room
// rights. Only the low 8 bits are defined; TRTC enforces them for apps that
// switch on advanced permission control in the console.
type Privilege uint32

// The privilege bits.
const (
	PrivilegeCreateRoom    Privilege = 1 << iota // create the room
	PrivilegeEnterRoom                           // enter the room
	PrivilegeSendAudio                           // publish audio
	PrivilegeReceiveAudio                        // subscribe to audio
	PrivilegeSendVideo                           // publish camera video
	PrivilegeReceiveVideo                        // subscribe to camera video
	PrivilegeSendScreen                          // publish the sub-stream (screen share)
	PrivilegeReceiveScreen                       // subscribe to the sub-stream
	PrivilegeAll           Privilege = 0xFF      // every defined right
)

var privilegeNames = [...]string{
	"create", "enter", "send-audio", "receive-audio",
	"send-video", "receive-video", "send-screen", "receive-screen",
}

// String returns the privilege names joined by commas, such as
// "enter,send-audio", with undefined bits as a trailing number.
func (p Privilege) String() string {
	if p == 0 {
		return "none"
	}
	var names []string
	for i, name := range privilegeNames {
		if p&(1<<i) != 0 {
			names = append(names, name)
		}
	}
	if rest := p &^ PrivilegeAll; rest != 0 {
		names = append(names, "0x"+strconv.FormatUint(uint64(rest), 16))
	}
	return strings.Join(names, ",")
}

// Has reports whether p includes every bit of want.
func (p Privilege) Has(want Privilege) bool { return p&want == want }

// ParsePrivilege reads a privilege set written as a number (decimal, or
// hexadecimal with 0x) or as names separated by commas: create, enter,
// send-audio, receive-audio, send-video, receive-video, send-screen,
// receive-screen and all. "recv-" may stand for "receive-".
func ParsePrivilege(s string) (Privilege, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return 0, errors.New("usersig: empty privilege list")
	}
	if n, err := strconv.ParseUint(s, 0, 32); err == nil {
		return Privilege(n), nil
	}
	var p Privilege
	for _, part := range strings.Split(s, ",") {
		name := strings.ToLower(strings.TrimSpace(part))
		name = strings.Replace(name, "recv-", "receive-", 1)
		bit, ok := privilegeBit(name)
		if !ok {
			return 0, fmt.Errorf("usersig: unknown privilege %q (known: %s, all)", part, strings.Join(privilegeNames[:], ", "))
		}
		p |= bit
	}
	return p, nil
}

func privilegeBit(name string) (Privilege, bool) {
	if name == "all" {
		return PrivilegeAll, true
	}
	for i, n := range privilegeNames {
		if n == name {
			return 1 << i, true
		}
	}
	return 0, false
}

// Privilege map versions.
const (
	PrivilegeMapNumericRoom = 0 // room identified by RoomID
	PrivilegeMapStringRoom  = 1 // room identified by RoomStr
)

// PrivilegeMap is the binary record that a PrivateMapKey carries in
// TLS.userbuf: it scopes the token to one TRTC room and a set of rights.
type PrivilegeMap struct {
	Version uint8 // PrivilegeMapNumericRoom or PrivilegeMapStringRoom

	// Account is the UserID as the generator encoded it: UTF-8 for the
	// Go, PHP and C++ libraries. The Java, Node and Python libraries write
	// one byte per character, which differs from UTF-8 for non-ASCII IDs.
	Account  string
	SDKAppID uint32
	RoomID   uint32 // numeric room; 0 for a string room
	RoomStr  string // string room (version 1 only)

	// ExpireAt is the absolute expiry, Unix seconds, low 32 bits. Old
	// library versions (before mid-2020) wrote the relative lifetime here.
	ExpireAt   uint32
	Privileges Privilege

	AccountType uint32 // always 0 in Tencent's libraries
}

// Errors of the privilege map. They match ErrMalformed.
var (
	errMapTruncated = reasonOf(ErrMalformed, "privilege map is truncated")
	errMapVersion   = reasonOf(ErrMalformed, "privilege map has an unknown version")
	errMapTrailing  = reasonOf(ErrMalformed, "privilege map has bytes after its last field")
	errMapTooLong   = errors.New("usersig: privilege map account or room string is longer than 65535 bytes")
	errMapRoomStr   = errors.New("usersig: a numeric-room privilege map cannot carry a room string")
)

// MarshalBinary encodes m in the layout that Tencent's libraries write.
func (m PrivilegeMap) MarshalBinary() ([]byte, error) {
	if len(m.Account) > 0xFFFF || len(m.RoomStr) > 0xFFFF {
		return nil, errMapTooLong
	}
	switch m.Version {
	case PrivilegeMapNumericRoom:
		if m.RoomStr != "" {
			return nil, errMapRoomStr
		}
	case PrivilegeMapStringRoom:
	default:
		return nil, errMapVersion
	}

	b := make([]byte, 0, 25+len(m.Account)+len(m.RoomStr))
	b = append(b, m.Version)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Account)))
	b = append(b, m.Account...)
	b = binary.BigEndian.AppendUint32(b, m.SDKAppID)
	b = binary.BigEndian.AppendUint32(b, m.RoomID)
	b = binary.BigEndian.AppendUint32(b, m.ExpireAt)
	b = binary.BigEndian.AppendUint32(b, uint32(m.Privileges))
	b = binary.BigEndian.AppendUint32(b, m.AccountType)
	if m.Version == PrivilegeMapStringRoom {
		b = binary.BigEndian.AppendUint16(b, uint16(len(m.RoomStr)))
		b = append(b, m.RoomStr...)
	}
	return b, nil
}

// ParsePrivilegeMap decodes a privilege map strictly by the lengths it
// carries. A record that is cut short, has an unknown version or has bytes
// after its last field is rejected with an error matching ErrMalformed.
func ParsePrivilegeMap(b []byte) (PrivilegeMap, error) {
	var m PrivilegeMap
	if len(b) < 3 {
		return m, errMapTruncated
	}
	m.Version = b[0]
	if m.Version != PrivilegeMapNumericRoom && m.Version != PrivilegeMapStringRoom {
		return m, errMapVersion
	}
	n := int(binary.BigEndian.Uint16(b[1:3]))
	rest := b[3:]
	if len(rest) < n+20 {
		return PrivilegeMap{}, errMapTruncated
	}
	m.Account = string(rest[:n])
	rest = rest[n:]
	m.SDKAppID = binary.BigEndian.Uint32(rest[0:4])
	m.RoomID = binary.BigEndian.Uint32(rest[4:8])
	m.ExpireAt = binary.BigEndian.Uint32(rest[8:12])
	m.Privileges = Privilege(binary.BigEndian.Uint32(rest[12:16]))
	m.AccountType = binary.BigEndian.Uint32(rest[16:20])
	rest = rest[20:]

	if m.Version == PrivilegeMapStringRoom {
		if len(rest) < 2 {
			return PrivilegeMap{}, errMapTruncated
		}
		k := int(binary.BigEndian.Uint16(rest[0:2]))
		rest = rest[2:]
		if len(rest) < k {
			return PrivilegeMap{}, errMapTruncated
		}
		m.RoomStr = string(rest[:k])
		rest = rest[k:]
	}
	if len(rest) != 0 {
		return PrivilegeMap{}, errMapTrailing
	}
	return m, nil
}

// IssuePrivateMapKey returns a PrivateMapKey: a token whose TLS.userbuf is
// a privilege map for the numeric room roomID, with the map's expiry set
// to the token's issue time plus p.Expire. p.UserBuf is ignored.
func (s *Signer) IssuePrivateMapKey(p Params, roomID uint32, privileges Privilege) (string, error) {
	return s.issueMap(p, PrivilegeMap{Version: PrivilegeMapNumericRoom, RoomID: roomID, Privileges: privileges})
}

// IssuePrivateMapKeyWithStringRoomID is IssuePrivateMapKey for a string
// room ID. An empty roomStr gives a numeric-room map for room 0, as most of
// Tencent's libraries do.
func (s *Signer) IssuePrivateMapKeyWithStringRoomID(p Params, roomStr string, privileges Privilege) (string, error) {
	m := PrivilegeMap{Version: PrivilegeMapStringRoom, RoomStr: roomStr, Privileges: privileges}
	if roomStr == "" {
		m.Version = PrivilegeMapNumericRoom
	}
	return s.issueMap(p, m)
}

func (s *Signer) issueMap(p Params, m PrivilegeMap) (string, error) {
	if p.Time.IsZero() {
		p.Time = time.Now()
	}
	m.Account = p.UserID
	m.SDKAppID = uint32(p.SDKAppID)
	m.ExpireAt = uint32(expiresAt(p.Time.Unix(), p.Expire))
	buf, err := m.MarshalBinary()
	if err != nil {
		return "", err
	}
	p.UserBuf = buf
	return s.Issue(p)
}
