package bench

import (
	"bytes"
	"encoding/binary"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
)

// interopUserIDs are the UserIDs that tokens are issued for in both
// directions: ASCII, an empty ID (the official library then leaves
// TLS.identifier out), non-ASCII, characters that Go's JSON encoder escapes,
// and a UserID far longer than Tencent's documented 32 bytes.
var interopUserIDs = []struct {
	name   string
	userID string
}{
	{"ascii", "xiaojun"},
	{"dash-underscore", "user_01-A"},
	{"empty", ""},
	{"chinese", "张三"},
	{"html-escaped", `<a href="x">&'`},
	{"long", strings.Repeat("u", 300)},
}

// interopUserBuf is an arbitrary userbuf whose base64 text contains '+'
// and '/', which the JSON encoders may escape.
var interopUserBuf = []byte{0x00, 0xFB, 0xFF, 0xBF, 0x3E, 0x01, 0xFE}

// interopRooms are the PrivateMapKey scopes issued in both directions.
var interopRooms = []struct {
	name       string
	userID     string
	roomID     uint32
	roomStr    string // a string room when not empty
	privileges usersig.Privilege
}{
	{"numeric-all", "xiaojun", 10000, "", usersig.PrivilegeAll},
	{"numeric-max-room", "张三", 0xFFFFFFFF, "", usersig.PrivilegeEnterRoom},
	{"string-room", "xiaojun", 0, "room-42", usersig.PrivilegeEnterRoom | usersig.PrivilegeReceiveAudio | usersig.PrivilegeReceiveVideo},
	{"string-room-non-ascii", "张三", 0, "会议室", usersig.PrivilegeAll},
}

// encodePrivilegeMap writes the userbuf record of a PrivateMapKey
// (big-endian: version, account length and bytes, SDKAppID, room ID,
// absolute expiry, privileges, account type, then the room string for
// version 1). It is written here from the format notes, independently of
// usersig.PrivilegeMap, so that the test does not check the library
// against itself.
func encodePrivilegeMap(account string, sdkAppID, roomID, expireAt uint32, privileges usersig.Privilege, roomStr string) []byte {
	var version byte
	if roomStr != "" {
		version = 1
	}
	b := []byte{version}
	b = binary.BigEndian.AppendUint16(b, uint16(len(account)))
	b = append(b, account...)
	b = binary.BigEndian.AppendUint32(b, sdkAppID)
	b = binary.BigEndian.AppendUint32(b, roomID)
	b = binary.BigEndian.AppendUint32(b, expireAt)
	b = binary.BigEndian.AppendUint32(b, uint32(privileges))
	b = binary.BigEndian.AppendUint32(b, 0)
	if version == 1 {
		b = binary.BigEndian.AppendUint16(b, uint16(len(roomStr)))
		b = append(b, roomStr...)
	}
	return b
}

// TestOursVerifiedByOfficial issues tokens with usersig and verifies them
// with the official library's VerifyUserSig and VerifyUserSigWithBuf.
func TestOursVerifiedByOfficial(t *testing.T) {
	s := newSigner(t)
	issued := time.Unix(benchTime, 0)
	now := issued.Add(time.Hour)

	for _, tc := range interopUserIDs {
		t.Run("usersig/"+tc.name, func(t *testing.T) {
			token, err := s.Issue(usersig.Params{SDKAppID: benchSDKAppID, UserID: tc.userID, Expire: benchExpire, Time: issued})
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if err := tencentyun.VerifyUserSig(benchSDKAppID, benchKey, tc.userID, token, now); err != nil {
				t.Errorf("official VerifyUserSig: %v", err)
			}
		})

		t.Run("userbuf/"+tc.name, func(t *testing.T) {
			p := usersig.Params{SDKAppID: benchSDKAppID, UserID: tc.userID, Expire: benchExpire, Time: issued, UserBuf: interopUserBuf}
			token, err := s.Issue(p)
			if err != nil {
				t.Fatalf("Issue: %v", err)
			}
			if err := tencentyun.VerifyUserSigWithBuf(benchSDKAppID, benchKey, tc.userID, token, now, interopUserBuf); err != nil {
				t.Errorf("official VerifyUserSigWithBuf: %v", err)
			}
		})
	}

	for _, room := range interopRooms {
		t.Run("privatemapkey/"+room.name, func(t *testing.T) {
			p := usersig.Params{SDKAppID: benchSDKAppID, UserID: room.userID, Expire: benchExpire, Time: issued}
			var token string
			var err error
			if room.roomStr != "" {
				token, err = s.IssuePrivateMapKeyWithStringRoomID(p, room.roomStr, room.privileges)
			} else {
				token, err = s.IssuePrivateMapKey(p, room.roomID, room.privileges)
			}
			if err != nil {
				t.Fatalf("issuing the PrivateMapKey: %v", err)
			}

			want := encodePrivilegeMap(room.userID, benchSDKAppID, room.roomID, benchTime+benchExpire, room.privileges, room.roomStr)
			if err := tencentyun.VerifyUserSigWithBuf(benchSDKAppID, benchKey, room.userID, token, now, want); err != nil {
				t.Errorf("official VerifyUserSigWithBuf: %v", err)
			}
		})
	}

	// The official verifier must reject a token that was signed with
	// another key, or the checks above prove nothing.
	t.Run("wrong-key", func(t *testing.T) {
		token, err := usersig.Issue(strings.Repeat("0", 64), usersig.Params{SDKAppID: benchSDKAppID, UserID: benchUserID, Expire: benchExpire, Time: issued})
		if err != nil {
			t.Fatalf("Issue: %v", err)
		}
		err = tencentyun.VerifyUserSig(benchSDKAppID, benchKey, benchUserID, token, now)
		if !errors.Is(err, tencentyun.ErrSigNotMatch) {
			t.Errorf("official VerifyUserSig returned %v, want %v", err, tencentyun.ErrSigNotMatch)
		}
	})
}

// TestOfficialVerifiedByOurs issues tokens with the official library (at
// the current time, zlib level 0) and verifies them with usersig.
func TestOfficialVerifiedByOurs(t *testing.T) {
	v := newVerifier(t)

	for _, tc := range interopUserIDs {
		t.Run("usersig/"+tc.name, func(t *testing.T) {
			token, err := tencentyun.GenUserSig(benchSDKAppID, benchKey, tc.userID, benchExpire)
			if err != nil {
				t.Fatalf("official GenUserSig: %v", err)
			}
			r := usersig.Request{SDKAppID: benchSDKAppID, UserID: tc.userID, Now: time.Now()}
			c, err := v.Verify(token, r)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if c.UserID != tc.userID {
				t.Errorf("claims UserID %q, want %q", c.UserID, tc.userID)
			}
			if c.Expire != benchExpire {
				t.Errorf("claims Expire %d, want %d", c.Expire, benchExpire)
			}
			if c.HasUserBuf {
				t.Error("claims have a userbuf, want a plain UserSig")
			}
		})

		t.Run("userbuf/"+tc.name, func(t *testing.T) {
			token, err := tencentyun.GenUserSigWithBuf(benchSDKAppID, benchKey, tc.userID, benchExpire, interopUserBuf)
			if err != nil {
				t.Fatalf("official GenUserSigWithBuf: %v", err)
			}
			r := usersig.Request{
				SDKAppID:     benchSDKAppID,
				UserID:       tc.userID,
				Now:          time.Now(),
				Mode:         usersig.ModeWithUserBuf,
				MatchUserBuf: true,
				UserBuf:      interopUserBuf,
			}
			c, err := v.Verify(token, r)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(c.UserBuf, interopUserBuf) {
				t.Errorf("claims UserBuf %x, want %x", c.UserBuf, interopUserBuf)
			}
		})
	}

	for _, room := range interopRooms {
		t.Run("privatemapkey/"+room.name, func(t *testing.T) {
			var token string
			var err error
			if room.roomStr != "" {
				token, err = tencentyun.GenPrivateMapKeyWithStringRoomID(benchSDKAppID, benchKey, room.userID, benchExpire, room.roomStr, uint32(room.privileges))
			} else {
				token, err = tencentyun.GenPrivateMapKey(benchSDKAppID, benchKey, room.userID, benchExpire, room.roomID, uint32(room.privileges))
			}
			if err != nil {
				t.Fatalf("official PrivateMapKey: %v", err)
			}

			r := usersig.Request{SDKAppID: benchSDKAppID, UserID: room.userID, Now: time.Now(), Mode: usersig.ModeWithUserBuf}
			c, err := v.Verify(token, r)
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}

			// The official library reads the clock once for the map's
			// expiry and again for TLS.time, so the map may be one second
			// older when a second boundary falls between the two reads.
			m, err := usersig.ParsePrivilegeMap(c.UserBuf)
			if err != nil {
				t.Fatalf("ParsePrivilegeMap: %v", err)
			}
			latest := uint32(c.Time + benchExpire)
			if m.ExpireAt != latest && m.ExpireAt != latest-1 {
				t.Errorf("map ExpireAt %d, want %d or one second less", m.ExpireAt, latest)
			}
			want := encodePrivilegeMap(room.userID, benchSDKAppID, room.roomID, m.ExpireAt, room.privileges, room.roomStr)
			if !bytes.Equal(c.UserBuf, want) {
				t.Errorf("userbuf %x, want %x", c.UserBuf, want)
			}
			if m.RoomID != room.roomID {
				t.Errorf("map RoomID %d, want %d", m.RoomID, room.roomID)
			}
			if m.RoomStr != room.roomStr {
				t.Errorf("map RoomStr %q, want %q", m.RoomStr, room.roomStr)
			}
			if m.Privileges != room.privileges {
				t.Errorf("map Privileges %v, want %v", m.Privileges, room.privileges)
			}
			if m.Account != room.userID {
				t.Errorf("map Account %q, want %q", m.Account, room.userID)
			}

			r.MatchUserBuf, r.UserBuf = true, want
			if _, err := v.Verify(token, r); err != nil {
				t.Errorf("Verify with the expected userbuf: %v", err)
			}
		})
	}

	// usersig must reject an official token signed with another key.
	t.Run("wrong-key", func(t *testing.T) {
		token, err := tencentyun.GenUserSig(benchSDKAppID, strings.Repeat("0", 64), benchUserID, benchExpire)
		if err != nil {
			t.Fatalf("official GenUserSig: %v", err)
		}
		r := usersig.Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: time.Now()}
		if _, err := v.Verify(token, r); !errors.Is(err, usersig.ErrInvalidSignature) {
			t.Errorf("Verify returned %v, want %v", err, usersig.ErrInvalidSignature)
		}
	})
}

// TestVerifyAllocations checks the allocation target for an uncached
// Verify of a plain UserSig: at most 2 allocations, on each form of the
// typical token.
func TestVerifyAllocations(t *testing.T) {
	const maxAllocs = 2
	v := newVerifier(t)
	for _, tc := range userSigCases(t) {
		t.Run(tc.name, func(t *testing.T) {
			r := usersig.Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: tc.now}
			var err error
			allocs := testing.AllocsPerRun(100, func() {
				_, err = v.Verify(tc.token, r)
			})
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if allocs > maxAllocs {
				t.Errorf("Verify made %.1f allocations per call, want at most %d", allocs, maxAllocs)
			}
		})
	}
}
