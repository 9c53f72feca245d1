package caddymodule

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"golang.org/x/crypto/bcrypt"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// issuedTokens is the JSON body of a successful usersig_issue response.
type issuedTokens struct {
	SDKAppID      uint64 `json:"sdkappid"`
	UserID        string `json:"userid"`
	UserSig       string `json:"usersig"`
	Expire        int64  `json:"expire"`
	PrivateMapKey string `json:"privatemapkey"`
	RoomID        uint32 `json:"roomid"`
	StrRoomID     string `json:"strroomid"`
	Privileges    string `json:"privileges"`
}

// basicAuthHash returns a bcrypt hash of password for basic_auth, at the
// lowest cost so that the test stays fast.
func basicAuthHash(t *testing.T, password string) string {
	t.Helper()
	hash, err := bcrypt.GenerateFromPassword([]byte(password), bcrypt.MinCost)
	if err != nil {
		t.Fatalf("hashing the password: %v", err)
	}
	return string(hash)
}

// withBasicAuth returns a header that authenticates user with password.
func withBasicAuth(user, password string) http.Header {
	req, _ := http.NewRequest(http.MethodGet, "http://127.0.0.1/", nil)
	req.SetBasicAuth(user, password)
	return req.Header
}

// decodeIssued checks the headers of a successful response and decodes
// its body.
func decodeIssued(t *testing.T, resp response) issuedTokens {
	t.Helper()
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	var body issuedTokens
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	return body
}

// verifyIssued verifies token with the library, for userID of testAppID,
// and returns its claims.
func verifyIssued(t *testing.T, token, userID string, mode usersig.Mode) usersig.Claims {
	t.Helper()
	v, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	claims, err := v.Verify(token, usersig.Request{SDKAppID: testAppID, UserID: userID, Now: time.Now(), Mode: mode})
	if err != nil {
		t.Fatalf("the issued token does not verify: %v", err)
	}
	return claims
}

func TestIssuerBehindBasicAuth(t *testing.T) {
	t.Setenv("USERSIG_TEST_ISSUE_KEY", testKey)
	s := startCaddy(t, fmt.Sprintf(`
	handle /token {
		basic_auth {
			alice %s
		}
		usersig_issue {
			app %d {env.USERSIG_TEST_ISSUE_KEY}
			expire 2h
		}
	}
	handle {
		usersig {
			app %d %s
		}
		reverse_proxy {backend}
	}`, basicAuthHash(t, "wonderland"), testAppID, testAppID, testKey))

	if resp := s.get("/token", nil, nil); resp.status != http.StatusUnauthorized {
		t.Errorf("without a password: status = %d, want 401 from basic_auth", resp.status)
	}
	if resp := s.get("/token", nil, withBasicAuth("alice", "wrong")); resp.status != http.StatusUnauthorized {
		t.Errorf("with a wrong password: status = %d, want 401 from basic_auth", resp.status)
	}

	before := time.Now().Unix()
	tokens := decodeIssued(t, s.get("/token", nil, withBasicAuth("alice", "wonderland")))
	after := time.Now().Unix()
	if tokens.SDKAppID != testAppID || tokens.UserID != "alice" || tokens.Expire != 7200 {
		t.Errorf("response = %+v, want sdkappid %d, userid alice, expire 7200", tokens, testAppID)
	}
	if tokens.PrivateMapKey != "" {
		t.Errorf("privatemapkey = %q without a room configured, want none", tokens.PrivateMapKey)
	}
	claims := verifyIssued(t, tokens.UserSig, "alice", usersig.ModeUserSig)
	if claims.Expire != 7200 {
		t.Errorf("TLS.expire = %d, want 7200", claims.Expire)
	}
	if claims.Time < before || claims.Time > after {
		t.Errorf("TLS.time = %d, want between %d and %d", claims.Time, before, after)
	}

	// The gateway of the same server accepts the issued token.
	if resp := s.get("/api", credentialsQuery(testAppID, "alice", tokens.UserSig), nil); resp.status != http.StatusOK {
		t.Errorf("the gateway rejects the issued token: status %d, body %q", resp.status, resp.body)
	}
	header, _, _, _ := s.backend.last()
	if got := header.Get("X-UserSig-UserID"); got != "alice" {
		t.Errorf("backend got X-UserSig-UserID %q, want alice", got)
	}
}

func TestIssuerRejectsWithoutAuthenticatedUser(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig_issue {
		app %d %s
	}`, testAppID, testKey))

	resp := s.get("/token", nil, nil)
	if resp.status != http.StatusUnauthorized {
		t.Errorf("status = %d, want 401", resp.status)
	}
	if cc := resp.header.Get("Cache-Control"); cc != "no-store" {
		t.Errorf("Cache-Control = %q, want no-store", cc)
	}
	// The issuer has no authentication scheme of its own to name in a
	// WWW-Authenticate header.
	if challenge := resp.header.Get("WWW-Authenticate"); challenge != "" {
		t.Errorf("WWW-Authenticate = %q, want none", challenge)
	}
	var body tencentError
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	want := tencentError{ActionStatus: "FAIL", ErrorCode: usersig.CodeIdentifierMismatch, ErrorInfo: "no authenticated user"}
	if body != want {
		t.Errorf("body = %+v, want %+v", body, want)
	}
	if strings.Contains(resp.body, "eJ") {
		t.Errorf("the rejection looks like it holds a token: %q", resp.body)
	}
}

func TestIssuerRejectionThroughErrorRoutes(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig_issue {
		app %d %s
	}
	handle_errors {
		respond "code {http.auth.usersig.error_code}" {http.error.status_code}
	}`, testAppID, testKey))

	resp := s.get("/token", nil, nil)
	if resp.status != http.StatusUnauthorized || resp.body != "code 70013" {
		t.Errorf("response = %d %q, want 401 \"code 70013\"", resp.status, resp.body)
	}
}

func TestIssuerPrivateMapKeyNumericRoom(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	basic_auth {
		alice %s
	}
	usersig_issue {
		app %d %s
		expire 10m
		room query:roomid
		privilege enter send-audio
	}`, basicAuthHash(t, "wonderland"), testAppID, testKey))
	auth := withBasicAuth("alice", "wonderland")

	tokens := decodeIssued(t, s.get("/token", url.Values{"roomid": {"1234"}}, auth))
	if tokens.RoomID != 1234 || tokens.StrRoomID != "" || tokens.Privileges != "enter,send-audio" {
		t.Errorf("response = %+v, want roomid 1234 and privileges enter,send-audio", tokens)
	}
	verifyIssued(t, tokens.UserSig, "alice", usersig.ModeUserSig)

	claims := verifyIssued(t, tokens.PrivateMapKey, "alice", usersig.ModeWithUserBuf)
	m, err := usersig.ParsePrivilegeMap(claims.UserBuf)
	if err != nil {
		t.Fatalf("parsing the privilege map: %v", err)
	}
	if m.Version != usersig.PrivilegeMapNumericRoom || m.RoomID != 1234 || m.Account != "alice" || m.SDKAppID != testAppID {
		t.Errorf("privilege map = %+v, want numeric room 1234 for alice in app %d", m, testAppID)
	}
	if want := usersig.PrivilegeEnterRoom | usersig.PrivilegeSendAudio; m.Privileges != want {
		t.Errorf("privileges = %s, want %s", m.Privileges, want)
	}
	if m.ExpireAt != uint32(claims.Time+600) {
		t.Errorf("map ExpireAt = %d, want TLS.time + 600 = %d", m.ExpireAt, claims.Time+600)
	}

	rejected := []struct {
		name  string
		query url.Values
	}{
		{"missing room", nil},
		{"empty room", url.Values{"roomid": {""}}},
		{"leading zero", url.Values{"roomid": {"01234"}}},
		{"sign", url.Values{"roomid": {"+1234"}}},
		{"zero", url.Values{"roomid": {"0"}}},
		{"too large", url.Values{"roomid": {"4294967296"}}},
		{"not a number", url.Values{"roomid": {"lobby"}}},
		{"conflicting", url.Values{"roomid": {"1", "2"}}},
	}
	for _, tc := range rejected {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get("/token", tc.query, auth)
			expectRejection(t, resp, http.StatusBadRequest, CodeInvalidRoom)
		})
	}
}

func TestIssuerPrivateMapKeyStringRoomFromPlaceholder(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	basic_auth {
		alice %s
	}
	usersig_issue {
		app %d %s
		room {query.room} string
		privilege all
	}`, basicAuthHash(t, "wonderland"), testAppID, testKey))
	auth := withBasicAuth("alice", "wonderland")

	tokens := decodeIssued(t, s.get("/token", url.Values{"room": {"lobby-1"}}, auth))
	if tokens.StrRoomID != "lobby-1" || tokens.RoomID != 0 {
		t.Errorf("response = %+v, want strroomid lobby-1", tokens)
	}
	claims := verifyIssued(t, tokens.PrivateMapKey, "alice", usersig.ModeWithUserBuf)
	m, err := usersig.ParsePrivilegeMap(claims.UserBuf)
	if err != nil {
		t.Fatalf("parsing the privilege map: %v", err)
	}
	if m.Version != usersig.PrivilegeMapStringRoom || m.RoomStr != "lobby-1" || m.Privileges != usersig.PrivilegeAll {
		t.Errorf("privilege map = %+v, want string room lobby-1 with all privileges", m)
	}

	expectRejection(t, s.get("/token", nil, auth), http.StatusBadRequest, CodeInvalidRoom)
	long := strings.Repeat("r", maxStringRoomLength+1)
	expectRejection(t, s.get("/token", url.Values{"room": {long}}, auth), http.StatusBadRequest, CodeInvalidRoom)
	expectRejection(t, s.get("/token", url.Values{"room": {"a\x01b"}}, auth), http.StatusBadRequest, CodeInvalidRoom)
}

// TestIssuerBehindForwardAuth takes the UserID from a header that
// forward_auth copies from an auth service's response. forward_auth
// deletes a copy that the client sends, so the client cannot choose it.
func TestIssuerBehindForwardAuth(t *testing.T) {
	authService := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer session-of-bob" {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		w.Header().Set("Remote-User", "bob")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(authService.Close)

	s := startCaddy(t, fmt.Sprintf(`
	forward_auth %s {
		uri /check
		copy_headers Remote-User
	}
	usersig_issue {
		app %d %s
		userid {http.request.header.Remote-User}
	}`, strings.TrimPrefix(authService.URL, "http://"), testAppID, testKey))

	spoofed := http.Header{"Remote-User": {"mallory"}}
	if resp := s.get("/token", nil, spoofed); resp.status != http.StatusUnauthorized {
		t.Errorf("without a session: status = %d, want 401 from forward_auth", resp.status)
	}

	session := http.Header{"Authorization": {"Bearer session-of-bob"}, "Remote-User": {"mallory"}}
	tokens := decodeIssued(t, s.get("/token", nil, session))
	if tokens.UserID != "bob" {
		t.Errorf("userid = %q, want bob from the auth service", tokens.UserID)
	}
	verifyIssued(t, tokens.UserSig, "bob", usersig.ModeUserSig)
}

// TestIssuerKeepsKeyOutOfLogs loads an issuer at debug level and checks
// that no log entry holds the key or an issued token.
func TestIssuerKeepsKeyOutOfLogs(t *testing.T) {
	serverLog := filepath.Join(t.TempDir(), "caddy.log")
	t.Setenv("USERSIG_TEST_ISSUE_KEY", testKey)
	s := newTestServer(t)
	s.globalLog = "\t\toutput file " + serverLog + "\n\t\tlevel DEBUG"
	s.load(s.adapt(fmt.Sprintf(`
	basic_auth {
		alice %s
	}
	usersig_issue {
		app %d {env.USERSIG_TEST_ISSUE_KEY}
	}`, basicAuthHash(t, "wonderland"), testAppID)))

	tokens := decodeIssued(t, s.get("/token", nil, withBasicAuth("alice", "wonderland")))
	s.get("/token", nil, nil)

	content, err := os.ReadFile(serverLog)
	if err != nil {
		t.Fatal(err)
	}
	log := string(content)
	if strings.Contains(log, testKey) {
		t.Error("the log holds the secret key")
	}
	if strings.Contains(log, tokens.UserSig) {
		t.Error("the log holds the issued UserSig")
	}

	var warned, issued bool
	for _, entry := range readLogEntries(t, serverLog) {
		switch entry["msg"] {
		case "UserSig issued":
			issued = entry["userid"] == "alice"
		default:
			if msg, _ := entry["msg"].(string); strings.HasPrefix(msg, "usersig_issue issues a UserSig") && entry["level"] == "warn" {
				warned = true
			}
		}
	}
	if !warned {
		t.Error("no warning at load time that usersig_issue needs an authentication handler before it")
	}
	if !issued {
		t.Error("no debug entry for the issued UserSig")
	}
}

func TestIssuerLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		handler string
		want    string
	}{
		{"no app", `{}`, "sdkappid: 0 out of range"},
		{"no key", `{"sdkappid":1400000001}`, "app 1400000001: a secret key is required"},
		{"empty key placeholder", `{"sdkappid":1400000001,"key":"{env.USERSIG_TEST_UNSET_KEY}"}`, "app 1400000001: secret key: replacing placeholders"},
		{"short expire", `{"sdkappid":1400000001,"key":"k","expire":"500ms"}`, "expire: 500ms is less than the minimum of 1s"},
		{"room without privilege", `{"sdkappid":1400000001,"key":"k","room":"query:room"}`, "room: privilege is also required"},
		{"privilege without room", `{"sdkappid":1400000001,"key":"k","privilege":"enter"}`, "privilege: room is also required"},
		{"bad privilege", `{"sdkappid":1400000001,"key":"k","room":"query:room","privilege":"fly"}`, "privilege:"},
		{"bad room source", `{"sdkappid":1400000001,"key":"k","room":"body:room","privilege":"enter"}`, `room: invalid source "body:room"`},
		{"bad room type", `{"sdkappid":1400000001,"key":"k","room":"query:room","room_type":"uuid","privilege":"enter"}`, `room_type: unknown value "uuid"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			route := `{"handler":"usersig_issue",` + strings.TrimPrefix(tc.handler, "{")
			route = strings.Replace(route, `"usersig_issue",}`, `"usersig_issue"}`, 1)
			expectLoadError(t, route, tc.want)
		})
	}
}

// expectLoadError loads a JSON config whose only route runs handler, and
// checks that Caddy rejects it with an error containing want.
func expectLoadError(t *testing.T, handler, want string) {
	t.Helper()
	cfgJSON := `{"admin":{"disabled":true},"logging":{"logs":{"default":{"writer":{"output":"discard"}}}},` +
		`"apps":{"http":{"servers":{"test":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + handler + `]}]}}}}}`
	var cfg caddy.Config
	if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
		t.Fatalf("test config %s: %v", cfgJSON, err)
	}
	err := caddy.Validate(&cfg)
	if err == nil {
		t.Fatalf("config %s loaded, want an error", cfgJSON)
	}
	if !strings.Contains(err.Error(), want) {
		t.Errorf("error %q does not contain %q", err, want)
	}
}
