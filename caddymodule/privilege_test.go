package caddymodule

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// issuePrivateMapKey returns a PrivateMapKey for testUserID in testAppID,
// signed with testKey, for a numeric room.
func issuePrivateMapKey(t *testing.T, roomID uint32, privileges usersig.Privilege) string {
	t.Helper()
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	token, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, roomID, privileges)
	if err != nil {
		t.Fatalf("issuing PrivateMapKey: %v", err)
	}
	return token
}

// issueWithMap returns a token signed with testKey whose TLS.userbuf is m,
// encoded as Tencent's libraries encode it, whatever m holds.
func issueWithMap(t *testing.T, p usersig.Params, m usersig.PrivilegeMap) string {
	t.Helper()
	buf, err := m.MarshalBinary()
	if err != nil {
		t.Fatalf("encoding privilege map: %v", err)
	}
	p.UserBuf = buf
	return issue(t, testKey, p)
}

// roomSite requires a PrivateMapKey for the room in the query parameter
// room, with the rights enter and send-audio, and passes the room
// placeholders to the backend.
var roomSite = fmt.Sprintf(`
	usersig {
		app %d %s
		require_room query:room
		require_privilege enter,send-audio
	}
	reverse_proxy {backend} {
		header_up X-Room {http.auth.user.room}
		header_up X-Privileges {http.auth.user.privileges}
		header_up X-Privilege-Map {http.auth.user.privilege_map}
	}`, testAppID, testKey)

func TestPrivilegeAcceptedRoomReachesBackend(t *testing.T) {
	s := startCaddy(t, roomSite)
	token := issuePrivateMapKey(t, 1234, usersig.PrivilegeEnterRoom|usersig.PrivilegeSendAudio|usersig.PrivilegeReceiveAudio)

	query := credentialsQuery(testAppID, testUserID, token)
	query.Set("room", "1234")
	resp := s.get("/join", query, nil)
	if resp.status != http.StatusOK || resp.body != "backend" {
		t.Fatalf("response = %d %q, want 200 from the backend", resp.status, resp.body)
	}

	header, rawQuery, _, _ := s.backend.last()
	if got := header.Get("X-Room"); got != "1234" {
		t.Errorf("{http.auth.user.room} = %q, want 1234", got)
	}
	if got := header.Get("X-Privileges"); got != "enter,send-audio,receive-audio" {
		t.Errorf("{http.auth.user.privileges} = %q, want enter,send-audio,receive-audio", got)
	}
	if got := header.Get("X-Privilege-Map"); got != "14" {
		t.Errorf("{http.auth.user.privilege_map} = %q, want 14", got)
	}
	if got := header.Get("X-UserSig-UserID"); got != testUserID {
		t.Errorf("backend X-UserSig-UserID = %q, want %q", got, testUserID)
	}
	if strings.Contains(rawQuery, "usersig=") {
		t.Errorf("backend query %q still holds the PrivateMapKey", rawQuery)
	}
}

func TestPrivilegeRejections(t *testing.T) {
	s := startCaddy(t, roomSite)
	now := time.Now().Truncate(time.Second)
	enterAndSend := usersig.PrivilegeEnterRoom | usersig.PrivilegeSendAudio
	params := usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now, Expire: testLifetime}
	goodMap := usersig.PrivilegeMap{
		Version:    usersig.PrivilegeMapNumericRoom,
		Account:    testUserID,
		SDKAppID:   testAppID,
		RoomID:     1234,
		ExpireAt:   uint32(now.Unix() + testLifetime),
		Privileges: enterAndSend,
	}
	withMap := func(change func(*usersig.PrivilegeMap)) string {
		m := goodMap
		change(&m)
		return issueWithMap(t, params, m)
	}
	malformed := params
	malformed.UserBuf = []byte{0, 0, 5, 'a'}

	tests := []struct {
		name  string
		token string
		room  []string // values of the query parameter room
		info  string   // the expected ErrorInfo
	}{
		{"another room", issuePrivateMapKey(t, 1234, enterAndSend), []string{"1235"}, "PrivateMapKey is for another room"},
		{"leading zero", issuePrivateMapKey(t, 1234, enterAndSend), []string{"01234"}, "PrivateMapKey is for another room"},
		{"plus sign", issuePrivateMapKey(t, 1234, enterAndSend), []string{"+1234"}, "PrivateMapKey is for another room"},
		{"no room", issuePrivateMapKey(t, 1234, enterAndSend), nil, "missing room ID in the request"},
		{"empty room", issuePrivateMapKey(t, 1234, enterAndSend), []string{""}, "missing room ID in the request"},
		{"two rooms", issuePrivateMapKey(t, 1234, enterAndSend), []string{"1234", "999"}, "conflicting room IDs in the request"},
		{"lacks one privilege", issuePrivateMapKey(t, 1234, usersig.PrivilegeEnterRoom|usersig.PrivilegeReceiveAudio), []string{"1234"}, "PrivateMapKey lacks privilege send-audio"},
		{"lacks two privileges", issuePrivateMapKey(t, 1234, usersig.PrivilegeCreateRoom), []string{"1234"}, "PrivateMapKey lacks privileges enter,send-audio"},
		{"plain UserSig", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}), []string{"1234"}, "plain UserSig where a PrivateMapKey is required"},
		{"map for another user", withMap(func(m *usersig.PrivilegeMap) { m.Account = "bob" }), []string{"1234"}, "PrivateMapKey privilege map is for another UserID"},
		{"map for another app", withMap(func(m *usersig.PrivilegeMap) { m.SDKAppID = otherAppID }), []string{"1234"}, "PrivateMapKey privilege map is for another SDKAppID"},
		{"relative map expiry", withMap(func(m *usersig.PrivilegeMap) { m.ExpireAt = testLifetime }), []string{"1234"}, failMapRelativeExpiry.reason},
		{"other map expiry", withMap(func(m *usersig.PrivilegeMap) { m.ExpireAt += 3600 }), []string{"1234"}, "PrivateMapKey privilege map expiry does not match TLS.time + TLS.expire"},
		{"malformed map", issue(t, testKey, malformed), []string{"1234"}, "PrivateMapKey has a malformed privilege map"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			query := credentialsQuery(testAppID, testUserID, tc.token)
			query["room"] = tc.room
			resp := s.get("/join", query, nil)

			body := expectRejection(t, resp, http.StatusForbidden, usersig.CodeMalformed)
			if body.ErrorInfo != tc.info {
				t.Errorf("ErrorInfo = %q, want %q", body.ErrorInfo, tc.info)
			}
			if resp.header.Get("WWW-Authenticate") != "" {
				t.Error("403 response has a WWW-Authenticate header")
			}
			if strings.Contains(resp.body, tc.token) {
				t.Error("body echoes the token")
			}
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("backend received the rejected request")
			}
		})
	}
}

func TestPrivilegeMapMatchesToken(t *testing.T) {
	s := startCaddy(t, roomSite)
	now := time.Now().Truncate(time.Second)
	params := usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now, Expire: testLifetime}
	m := usersig.PrivilegeMap{
		Version:    usersig.PrivilegeMapNumericRoom,
		Account:    testUserID,
		SDKAppID:   testAppID,
		RoomID:     1234,
		Privileges: usersig.PrivilegeAll,
	}

	// Tencent's Python, Node and PHP libraries read the clock for the map
	// before they read it for TLS.time.
	for _, offset := range []int64{-mapExpirySlack, -1, 0, 1, mapExpirySlack} {
		t.Run("expiry offset "+strconv.FormatInt(offset, 10), func(t *testing.T) {
			m.ExpireAt = uint32(now.Unix() + testLifetime + offset)
			query := credentialsQuery(testAppID, testUserID, issueWithMap(t, params, m))
			query.Set("room", "1234")
			if resp := s.get("/", query, nil); resp.status != http.StatusOK {
				t.Errorf("status = %d, want 200 (body %q)", resp.status, resp.body)
			}
		})
	}
	t.Run("expiry offset beyond slack", func(t *testing.T) {
		m.ExpireAt = uint32(now.Unix() + testLifetime - mapExpirySlack - 1)
		query := credentialsQuery(testAppID, testUserID, issueWithMap(t, params, m))
		query.Set("room", "1234")
		expectRejection(t, s.get("/", query, nil), http.StatusForbidden, usersig.CodeMalformed)
	})
}

func TestPrivilegeStringRoomAndNonASCIIUserID(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		require_room header:X-Room-ID
	}
	respond "room={http.auth.user.room} privileges={http.auth.user.privileges}"`, testAppID, testKey))
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	const userID = "张三"
	token, err := signer.IssuePrivateMapKeyWithStringRoomID(usersig.Params{SDKAppID: testAppID, UserID: userID, Expire: testLifetime}, "meeting-42", usersig.PrivilegeEnterRoom)
	if err != nil {
		t.Fatal(err)
	}

	resp := s.get("/", credentialsQuery(testAppID, userID, token), http.Header{"X-Room-ID": {"meeting-42"}})
	if want := "room=meeting-42 privileges=enter"; resp.status != http.StatusOK || resp.body != want {
		t.Errorf("string room: response = %d %q, want 200 %q", resp.status, resp.body, want)
	}

	resp = s.get("/", credentialsQuery(testAppID, userID, token), http.Header{"X-Room-ID": {"Meeting-42"}})
	body := expectRejection(t, resp, http.StatusForbidden, usersig.CodeMalformed)
	if body.ErrorInfo != failRoomMismatch.reason {
		t.Errorf("room in another case: ErrorInfo = %q, want %q", body.ErrorInfo, failRoomMismatch.reason)
	}

	// The Java and Node libraries write the low byte of each UTF-16 unit
	// of the UserID, which this gateway does not accept.
	now := time.Now().Truncate(time.Second)
	javaStyle := issueWithMap(t, usersig.Params{SDKAppID: testAppID, UserID: userID, Time: now, Expire: testLifetime}, usersig.PrivilegeMap{
		Version:    usersig.PrivilegeMapStringRoom,
		Account:    "\x20\x09", // 张 is U+5F20 and 三 is U+4E09
		SDKAppID:   testAppID,
		RoomStr:    "meeting-42",
		ExpireAt:   uint32(now.Unix() + testLifetime),
		Privileges: usersig.PrivilegeEnterRoom,
	})
	resp = s.get("/", credentialsQuery(testAppID, userID, javaStyle), http.Header{"X-Room-ID": {"meeting-42"}})
	body = expectRejection(t, resp, http.StatusForbidden, usersig.CodeMalformed)
	if body.ErrorInfo != failMapAccount.reason {
		t.Errorf("one byte per character account: ErrorInfo = %q, want %q", body.ErrorInfo, failMapAccount.reason)
	}
}

func TestPrivilegeRoomFromPlaceholder(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	@room path_regexp room ^/rooms/([^/]+)/
	usersig @room {
		app %d %s
		require_room {re.room.1}
		require_privilege enter
	}
	handle /calls/* {
		usersig {
			app %d %s
			require_room "call-{http.request.uri.path.1}"
		}
		respond "call room={http.auth.user.room}"
	}
	respond "room={http.auth.user.room}"`, testAppID, testKey, testAppID, testKey))

	token := issuePrivateMapKey(t, 77, usersig.PrivilegeEnterRoom)
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	callToken, err := signer.IssuePrivateMapKeyWithStringRoomID(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, "call-9", usersig.PrivilegeEnterRoom)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		path   string
		token  string
		status int
		body   string
	}{
		{"regexp room", "/rooms/77/members", token, http.StatusOK, "room=77"},
		{"regexp other room", "/rooms/78/members", token, http.StatusForbidden, ""},
		{"template room", "/calls/9", callToken, http.StatusOK, "call room=call-9"},
		{"template other room", "/calls/10", callToken, http.StatusForbidden, ""},
		// Without a second path segment, the template has an empty
		// placeholder, and "call-" alone is not taken as a room.
		{"template empty placeholder", "/calls/", callToken, http.StatusForbidden, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get(tc.path, credentialsQuery(testAppID, testUserID, tc.token), nil)
			if tc.status != http.StatusOK {
				expectRejection(t, resp, tc.status, usersig.CodeMalformed)
				return
			}
			if resp.status != tc.status || resp.body != tc.body {
				t.Errorf("response = %d %q, want %d %q", resp.status, resp.body, tc.status, tc.body)
			}
		})
	}

	resp := s.get("/calls/", credentialsQuery(testAppID, testUserID, callToken), nil)
	body := expectRejection(t, resp, http.StatusForbidden, usersig.CodeMalformed)
	if body.ErrorInfo != failRoomMissing.reason {
		t.Errorf("empty placeholder: ErrorInfo = %q, want %q", body.ErrorInfo, failRoomMissing.reason)
	}
}

// TestPrivilegeRoutesRequireDifferentRights runs the example of
// docs/configuration.md with a usersig directive in each handle block.
func TestPrivilegeRoutesRequireDifferentRights(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	handle /rooms/* {
		usersig {
			app %d %s
			require_room query:roomid
			require_privilege enter
		}
		reverse_proxy {backend}
	}
	handle /publish/* {
		usersig {
			app %d %s
			require_room query:roomid
			require_privilege enter,send-audio,send-video
		}
		reverse_proxy {backend}
	}`, testAppID, testKey, testAppID, testKey))

	viewer := issuePrivateMapKey(t, 5, usersig.PrivilegeEnterRoom|usersig.PrivilegeReceiveAudio|usersig.PrivilegeReceiveVideo)
	host := issuePrivateMapKey(t, 5, usersig.PrivilegeAll)
	request := func(path, token string) response {
		query := credentialsQuery(testAppID, testUserID, token)
		query.Set("roomid", "5")
		return s.get(path, query, nil)
	}

	if resp := request("/rooms/join", viewer); resp.status != http.StatusOK {
		t.Errorf("viewer joins: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	body := expectRejection(t, request("/publish/start", viewer), http.StatusForbidden, usersig.CodeMalformed)
	if want := "PrivateMapKey lacks privileges send-audio,send-video"; body.ErrorInfo != want {
		t.Errorf("viewer publishes: ErrorInfo = %q, want %q", body.ErrorInfo, want)
	}
	if resp := request("/publish/start", host); resp.status != http.StatusOK {
		t.Errorf("host publishes: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
}

func TestPrivilegePlaceholdersWithoutRequirements(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		token_type any
	}
	respond "user={http.auth.user.id} room={http.auth.user.room} privileges={http.auth.user.privileges} map={http.auth.user.privilege_map}"`, testAppID, testKey))
	now := time.Now().Truncate(time.Second)
	params := usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now, Expire: testLifetime}

	tests := []struct {
		name  string
		token string
		body  string
	}{
		{"PrivateMapKey", issuePrivateMapKey(t, 4294967295, usersig.PrivilegeEnterRoom|usersig.PrivilegeSendScreen),
			"user=alice room=4294967295 privileges=enter,send-screen map=66"},
		{"no privilege", issuePrivateMapKey(t, 3, 0),
			"user=alice room=3 privileges= map=0"},
		{"plain UserSig", issue(t, testKey, params),
			"user=alice room={http.auth.user.room} privileges={http.auth.user.privileges} map={http.auth.user.privilege_map}"},
		// A map that does not match its token is not trusted for the
		// placeholders, but nothing requires one, so the token passes.
		{"map for another user", issueWithMap(t, params, usersig.PrivilegeMap{Account: "bob", SDKAppID: testAppID, RoomID: 3, ExpireAt: uint32(now.Unix() + testLifetime)}),
			"user=alice room={http.auth.user.room} privileges={http.auth.user.privileges} map={http.auth.user.privilege_map}"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get("/", credentialsQuery(testAppID, testUserID, tc.token), nil)
			if resp.status != http.StatusOK || resp.body != tc.body {
				t.Errorf("response = %d %q, want 200 %q", resp.status, resp.body, tc.body)
			}
		})
	}
}

func TestPrivilegeProvider(t *testing.T) {
	s := newTestServer(t)
	s.load([]byte(fmt.Sprintf(`{
		"admin": {"listen": %q, "config": {"persist": false}},
		"logging": {"logs": {"default": {"writer": {"output": "discard"}}}},
		"apps": {"http": {"servers": {"test": {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "authentication", "providers": {"usersig": {
					"apps": [{"sdkappid": %d, "keys": [%q]}],
					"require_room": "query:room",
					"require_privilege": "enter"
				}}},
				{"handler": "static_response", "body": "room={http.auth.user.room} privileges={http.auth.user.privileges}"}
			]}]
		}}}}
	}`, s.adminAddr, strings.TrimPrefix(s.siteURL, "http://"), testAppID, testKey)))
	token := issuePrivateMapKey(t, 8, usersig.PrivilegeEnterRoom)

	query := credentialsQuery(testAppID, testUserID, token)
	query.Set("room", "8")
	resp := s.get("/", query, nil)
	if want := "room=8 privileges=enter"; resp.status != http.StatusOK || resp.body != want {
		t.Errorf("response = %d %q, want 200 %q", resp.status, resp.body, want)
	}

	query.Set("room", "9")
	if resp := s.get("/", query, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("another room: status = %d, want 401 from the authentication handler", resp.status)
	}
	if resp := s.get("/", url.Values{"room": {"8"}}, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("no credentials: status = %d, want 401", resp.status)
	}
}

func TestRoomSourceRead(t *testing.T) {
	tests := []struct {
		source string
		target string
		header http.Header
		want   string
		ok     bool
	}{
		{"query:room", "/?room=12", nil, "12", true},
		{"query:room", "/?room=%31%32", nil, "12", true},
		{"query:room", "/?r%6Fom=12", nil, "12", true},
		{"query:room", "/?room=12&room=12", nil, "12", true},
		{"query:room", "/?room=12&room=13", nil, "", false},
		{"query:room", "/?room=%zz", nil, "", false},
		{"query:room", "/?room=&other=1", nil, "", true},
		{"query:room", "/?rooms=12", nil, "", true},
		{"header:X-Room", "/", http.Header{"X-Room": {"7"}}, "7", true},
		{"header:X-Room", "/", http.Header{"X-Room": {"7", "8"}}, "", false},
		{"cookie:room", "/", http.Header{"Cookie": {"a=1; room=9"}}, "9", true},
	}
	for _, tc := range tests {
		rs, err := parseRoomSource(tc.source)
		if err != nil {
			t.Fatalf("parseRoomSource(%q): %v", tc.source, err)
		}
		r := httptest.NewRequest(http.MethodGet, tc.target, nil)
		for name, values := range tc.header {
			r.Header[name] = values
		}
		got, ok := rs.read(r)
		if got != tc.want || ok != tc.ok {
			t.Errorf("%s from %s %v: read = %q, %v; want %q, %v", tc.source, tc.target, tc.header, got, ok, tc.want, tc.ok)
		}
	}
}
