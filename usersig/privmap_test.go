package usersig

import (
	"errors"
	"strings"
	"testing"
)

func TestPrivilegeMapRoundTrip(t *testing.T) {
	maps := []PrivilegeMap{
		{Version: PrivilegeMapNumericRoom, Account: "xiaojun", SDKAppID: 1400000000, RoomID: 10000, ExpireAt: 1715552000, Privileges: PrivilegeAll},
		{Version: PrivilegeMapStringRoom, Account: "张三", SDKAppID: 1400000000, RoomStr: "room-1", ExpireAt: 1700000300, Privileges: PrivilegeEnterRoom | PrivilegeReceiveAudio | PrivilegeReceiveVideo},
		{Version: PrivilegeMapStringRoom, Account: "", RoomStr: "", AccountType: 7},
	}
	for _, m := range maps {
		b, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		want := 23 + len(m.Account)
		if m.Version == PrivilegeMapStringRoom {
			want += 2 + len(m.RoomStr)
		}
		if len(b) != want {
			t.Errorf("%+v: %d bytes, want %d", m, len(b), want)
		}
		got, err := ParsePrivilegeMap(b)
		if err != nil {
			t.Fatalf("%+v: %v", m, err)
		}
		if got != m {
			t.Errorf("parsed %+v, want %+v", got, m)
		}
	}
}

func TestParsePrivilegeMapRejectsBadRecords(t *testing.T) {
	good, _ := PrivilegeMap{Version: PrivilegeMapStringRoom, Account: "abc", RoomStr: "room"}.MarshalBinary()
	numeric, _ := PrivilegeMap{Version: PrivilegeMapNumericRoom, Account: "abc", RoomID: 5}.MarshalBinary()
	cases := map[string][]byte{
		"empty":                    nil,
		"version only":             {0},
		"unknown version":          append([]byte{2}, numeric[1:]...),
		"account length too large": {0, 0xFF, 0xFF, 'a'},
		"cut in fixed fields":      numeric[:len(numeric)-1],
		"cut before room length":   good[:len(numeric)],
		"cut in room string":       good[:len(good)-1],
		"trailing byte numeric":    append(append([]byte{}, numeric...), 0),
		"trailing byte string":     append(append([]byte{}, good...), 0),
	}
	for name, b := range cases {
		t.Run(name, func(t *testing.T) {
			if _, err := ParsePrivilegeMap(b); !errors.Is(err, ErrMalformed) {
				t.Fatalf("got %v, want ErrMalformed", err)
			}
		})
	}
	for i := range good {
		if _, err := ParsePrivilegeMap(good[:i]); err == nil {
			t.Errorf("prefix of %d bytes parsed", i)
		}
	}
}

func TestPrivilegeMapMarshalRejectsInvalid(t *testing.T) {
	if _, err := (PrivilegeMap{Account: strings.Repeat("a", 70000)}).MarshalBinary(); err == nil {
		t.Error("70000-byte account marshalled")
	}
	if _, err := (PrivilegeMap{Version: PrivilegeMapNumericRoom, RoomStr: "x"}).MarshalBinary(); err == nil {
		t.Error("room string in a numeric-room map marshalled")
	}
	if _, err := (PrivilegeMap{Version: 9}).MarshalBinary(); err == nil {
		t.Error("version 9 marshalled")
	}
}

func TestIssuePrivateMapKey(t *testing.T) {
	s, err := NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	v := mustVerifier(t, Policy{}, testKey)
	p := Params{SDKAppID: testSDKAppID, UserID: "xiaojun", Expire: 300, Time: testNow}

	numeric, err := s.IssuePrivateMapKey(p, 10000, PrivilegeEnterRoom|PrivilegeSendAudio)
	if err != nil {
		t.Fatal(err)
	}
	str, err := s.IssuePrivateMapKeyWithStringRoomID(p, "room-1", PrivilegeAll)
	if err != nil {
		t.Fatal(err)
	}
	emptyRoom, err := s.IssuePrivateMapKeyWithStringRoomID(p, "", PrivilegeAll)
	if err != nil {
		t.Fatal(err)
	}
	want := []PrivilegeMap{
		{Version: 0, Account: "xiaojun", SDKAppID: testSDKAppID, RoomID: 10000, ExpireAt: uint32(testNow.Unix() + 300), Privileges: PrivilegeEnterRoom | PrivilegeSendAudio},
		{Version: 1, Account: "xiaojun", SDKAppID: testSDKAppID, RoomStr: "room-1", ExpireAt: uint32(testNow.Unix() + 300), Privileges: PrivilegeAll},
		{Version: 0, Account: "xiaojun", SDKAppID: testSDKAppID, ExpireAt: uint32(testNow.Unix() + 300), Privileges: PrivilegeAll},
	}
	for i, token := range []string{numeric, str, emptyRoom} {
		c, err := v.Verify(token, Request{SDKAppID: testSDKAppID, UserID: "xiaojun", Now: testNow, Mode: ModeWithUserBuf})
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		m, err := ParsePrivilegeMap(c.UserBuf)
		if err != nil {
			t.Fatalf("token %d: %v", i, err)
		}
		if m != want[i] {
			t.Errorf("token %d: map %+v, want %+v", i, m, want[i])
		}
	}
}

func TestParsePrivilege(t *testing.T) {
	cases := map[string]Privilege{
		"42":                                42,
		"0xff":                              PrivilegeAll,
		"all":                               PrivilegeAll,
		"enter,send-audio":                  PrivilegeEnterRoom | PrivilegeSendAudio,
		" Enter , recv-video ":              PrivilegeEnterRoom | PrivilegeReceiveVideo,
		"create,send-screen,receive-screen": PrivilegeCreateRoom | PrivilegeSendScreen | PrivilegeReceiveScreen,
	}
	for in, want := range cases {
		got, err := ParsePrivilege(in)
		if err != nil || got != want {
			t.Errorf("ParsePrivilege(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "enter,fly", "4294967296", "-1"} {
		if _, err := ParsePrivilege(bad); err == nil {
			t.Errorf("ParsePrivilege(%q) succeeded", bad)
		}
	}
	if got := (PrivilegeEnterRoom | PrivilegeSendAudio | 0x100).String(); got != "enter,send-audio,0x100" {
		t.Errorf("String() = %q", got)
	}
	if !PrivilegeAll.Has(PrivilegeEnterRoom|PrivilegeSendVideo) || PrivilegeEnterRoom.Has(PrivilegeSendAudio) {
		t.Error("Has gives wrong answers")
	}
}
