package caddymodule

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// TestMain keeps Caddy's data and config directories out of the user's
// home directory.
func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "caddymodule-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Setenv("XDG_DATA_HOME", filepath.Join(dir, "data"))
	os.Setenv("XDG_CONFIG_HOME", filepath.Join(dir, "config"))
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// proxySite is a site that checks UserSigs for two apps (the first with a
// previous key) and proxies to the backend.
var proxySite = fmt.Sprintf(`
	usersig {
		app %d %s %s
		app %d %s
	}
	reverse_proxy {backend}`, testAppID, testKey, testOldKey, otherAppID, otherAppKey)

// identitySite responds with the verified identity from the placeholders.
var identitySite = fmt.Sprintf(`
	usersig {
		app %d %s %s
	}
	respond "user={http.auth.user.id} sdkappid={http.auth.user.sdkappid} key={http.auth.user.key_index} issued={http.auth.user.issued_at} expires={http.auth.user.expires_at}"`,
	testAppID, testKey, testOldKey)

func TestHandlerGenuineTokenReachesBackend(t *testing.T) {
	s := startCaddy(t, proxySite)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	query := credentialsQuery(testAppID, testUserID, token)
	query.Set("room", "42")
	resp := s.get("/api/call", query, nil)
	if resp.status != http.StatusOK || resp.body != "backend" {
		t.Fatalf("response = %d %q, want 200 from the backend", resp.status, resp.body)
	}

	header, rawQuery, uri, _ := s.backend.last()
	if got := header.Values("X-UserSig-UserID"); len(got) != 1 || got[0] != testUserID {
		t.Errorf("backend X-UserSig-UserID = %q, want [%q]", got, testUserID)
	}
	if got := header.Values("X-UserSig-SDKAppID"); len(got) != 1 || got[0] != strconv.Itoa(testAppID) {
		t.Errorf("backend X-UserSig-SDKAppID = %q, want [%d]", got, testAppID)
	}
	wantQuery := "identifier=alice&room=42&sdkappid=1400000001"
	if rawQuery != wantQuery {
		t.Errorf("backend query = %q, want %q", rawQuery, wantQuery)
	}
	if uri != "/api/call?"+wantQuery {
		t.Errorf("backend request URI = %q, want %q", uri, "/api/call?"+wantQuery)
	}
}

func TestHandlerSetsUserPlaceholders(t *testing.T) {
	s := startCaddy(t, identitySite)
	issued := time.Now().Add(-time.Minute).Truncate(time.Second)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: issued, Expire: 600})

	resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil)
	want := fmt.Sprintf("user=alice sdkappid=%d key=0 issued=%d expires=%d", testAppID, issued.Unix(), issued.Unix()+600)
	if resp.status != http.StatusOK || resp.body != want {
		t.Errorf("response = %d %q, want 200 %q", resp.status, resp.body, want)
	}
}

// TestHandlerUserReplacesEarlierAuthentication checks that the UserSig's
// user is the one in {http.auth.user.id} when basic_auth, which sets the
// placeholder as a static value, authenticated the request before.
func TestHandlerUserReplacesEarlierAuthentication(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	basic_auth {
		operator %s
	}
	usersig {
		app %d %s
	}
	respond "user={http.auth.user.id} sdkappid={http.auth.user.sdkappid}"`, basicAuthHash(t, "secret"), testAppID, testKey))
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	header := http.Header{"Authorization": {"Basic " + base64.StdEncoding.EncodeToString([]byte("operator:secret"))}}
	resp := s.get("/", credentialsQuery(testAppID, testUserID, token), header)
	want := fmt.Sprintf("user=%s sdkappid=%d", testUserID, testAppID)
	if resp.status != http.StatusOK || resp.body != want {
		t.Errorf("response = %d %q, want 200 %q", resp.status, resp.body, want)
	}
}

// TestHandlerSecondUserSigSetsUser checks that when two usersig handlers
// verify one request, the placeholders name the user of the second, as
// its identity header does.
func TestHandlerSecondUserSigSetsUser(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	route {
		usersig {
			app %[1]d %[2]s
			sdkappid_from header:X-SDKAppID
			userid_from header:X-UserID
			usersig_from header:X-UserSig
		}
		usersig {
			app %[1]d %[2]s
		}
		respond "user={http.auth.user.id} header={http.request.header.X-UserSig-UserID} room=[{http.auth.user.room}]"
	}`, testAppID, testKey))
	first := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "mallory"})
	second := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	header := http.Header{
		"X-Sdkappid": {strconv.Itoa(testAppID)},
		"X-Userid":   {"mallory"},
		"X-Usersig":  {first},
	}
	resp := s.get("/", credentialsQuery(testAppID, testUserID, second), header)
	want := fmt.Sprintf("user=%s header=%s room=[]", testUserID, testUserID)
	if resp.status != http.StatusOK || resp.body != want {
		t.Errorf("response = %d %q, want 200 %q", resp.status, resp.body, want)
	}
}

func TestHandlerRemovesUserSigFromHeaderAndCookie(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		sdkappid_from header:X-SDKAppID
		userid_from header:X-UserID cookie:uid
		usersig_from header:X-UserSig cookie:usersig query:sig
	}
	reverse_proxy {backend}`, testAppID, testKey))
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	t.Run("header", func(t *testing.T) {
		resp := s.get("/", nil, http.Header{
			"X-Sdkappid": {strconv.Itoa(testAppID)},
			"X-Userid":   {testUserID},
			"X-Usersig":  {token},
		})
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		header, _, _, _ := s.backend.last()
		if got := header.Get("X-UserSig"); got != "" {
			t.Errorf("backend received the UserSig header (%d bytes)", len(got))
		}
		if got := header.Get("X-UserSig-UserID"); got != testUserID {
			t.Errorf("backend X-UserSig-UserID = %q, want %q", got, testUserID)
		}
	})

	t.Run("cookie", func(t *testing.T) {
		resp := s.get("/", nil, http.Header{
			"X-Sdkappid": {strconv.Itoa(testAppID)},
			"Cookie":     {"theme=dark; usersig=" + token + "; uid=" + testUserID},
		})
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		header, _, _, _ := s.backend.last()
		if got, want := header.Get("Cookie"), "theme=dark; uid="+testUserID; got != want {
			t.Errorf("backend Cookie = %q, want %q", got, want)
		}
	})

	t.Run("query name", func(t *testing.T) {
		resp := s.get("/p", url.Values{"sig": {token}, "a": {"1"}}, http.Header{
			"X-Sdkappid": {strconv.Itoa(testAppID)},
			"X-Userid":   {testUserID},
		})
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		_, rawQuery, uri, _ := s.backend.last()
		if rawQuery != "a=1" || uri != "/p?a=1" {
			t.Errorf("backend query %q, URI %q, want a=1 and /p?a=1", rawQuery, uri)
		}
	})
}

func TestHandlerKeepUserSig(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		keep_usersig
	}
	reverse_proxy {backend}`, testAppID, testKey))
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil)
	if resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	_, rawQuery, _, _ := s.backend.last()
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatalf("backend query %q: %v", rawQuery, err)
	}
	if query.Get("usersig") != token {
		t.Error("backend did not receive the UserSig although keep_usersig is set")
	}
}

func TestHandlerRejections(t *testing.T) {
	s := startCaddy(t, proxySite)
	now := time.Now()
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	expired := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now.Add(-2 * time.Hour), Expire: 60})
	future := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now.Add(time.Hour)})
	otherApp := issue(t, testKey, usersig.Params{SDKAppID: otherAppID, UserID: testUserID})
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	privateMapKey, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, 1234, usersig.PrivilegeAll)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name   string
		query  string
		status int
		code   int
	}{
		{"no credentials", "", 401, 70002},
		{"missing UserSig", "sdkappid=1400000001&identifier=alice", 401, 70002},
		{"empty UserSig", "sdkappid=1400000001&identifier=alice&usersig=", 401, 70002},
		{"missing SDKAppID", "identifier=alice&usersig=" + genuine, 401, 70020},
		{"SDKAppID not a number", "sdkappid=abc&identifier=alice&usersig=" + genuine, 401, 70020},
		{"unknown SDKAppID", "sdkappid=1400009999&identifier=alice&usersig=" + genuine, 401, 70020},
		{"missing UserID", "sdkappid=1400000001&usersig=" + genuine, 401, 70013},
		{"malformed", "sdkappid=1400000001&identifier=alice&usersig=not*a*token", 401, 70003},
		{"forged signature", "sdkappid=1400000001&identifier=alice&usersig=" + forged, 401, 70009},
		{"expired", "sdkappid=1400000001&identifier=alice&usersig=" + expired, 401, 70001},
		{"issued in future", "sdkappid=1400000001&identifier=alice&usersig=" + future, 401, 70003},
		{"wrong user", "sdkappid=1400000001&identifier=bob&usersig=" + genuine, 401, 70013},
		{"wrong SDKAppID in token", "sdkappid=1400000001&identifier=alice&usersig=" + otherApp, 401, 70014},
		{"PrivateMapKey for UserSig", "sdkappid=1400000001&identifier=alice&usersig=" + privateMapKey, 403, 70003},
		{"conflicting UserIDs", "sdkappid=1400000001&identifier=alice&userid=bob&usersig=" + genuine, 401, 70003},
		{"conflicting UserSigs", "sdkappid=1400000001&identifier=alice&usersig=" + genuine + "&usersig=" + forged, 401, 70003},
		{"conflicting SDKAppIDs", "sdkappid=1400000001&sdkappid=1400000002&identifier=alice&usersig=" + genuine, 401, 70003},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			resp := s.do(http.MethodGet, s.siteURL+"/?"+tc.query, nil)
			body := expectRejection(t, resp, tc.status, tc.code)
			if strings.Contains(resp.body, "usersig=") || (len(genuine) > 0 && strings.Contains(resp.body, genuine)) {
				t.Error("body echoes the UserSig")
			}
			if tc.status == http.StatusForbidden && resp.header.Get("WWW-Authenticate") != "" {
				t.Error("403 response has a WWW-Authenticate header")
			}
			if _, _, _, after := s.backend.last(); after != before {
				t.Errorf("backend received the rejected request (ErrorInfo %q)", body.ErrorInfo)
			}
		})
	}
}

func TestHandlerAcceptsRepeatedEqualCredentials(t *testing.T) {
	s := startCaddy(t, proxySite)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	resp := s.do(http.MethodGet, s.siteURL+"/?sdkappid=1400000001&identifier=alice&userid=alice&usersig="+token+"&usersig="+token, nil)
	if resp.status != http.StatusOK {
		t.Errorf("status = %d, want 200 (body %q)", resp.status, resp.body)
	}
}

func TestHandlerTokenTypeAndLifetime(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		token_type privatemapkey
		max_lifetime 1h
	}
	reverse_proxy {backend}`, testAppID, testKey))
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	privateMapKey, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: 600}, 1234, usersig.PrivilegeEnterRoom)
	if err != nil {
		t.Fatal(err)
	}
	longLived, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: 86400}, 1234, usersig.PrivilegeEnterRoom)
	if err != nil {
		t.Fatal(err)
	}
	plain := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: 600})

	if resp := s.get("/", credentialsQuery(testAppID, testUserID, privateMapKey), nil); resp.status != http.StatusOK {
		t.Errorf("PrivateMapKey: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	expectRejection(t, s.get("/", credentialsQuery(testAppID, testUserID, plain), nil), http.StatusForbidden, 70003)
	expectRejection(t, s.get("/", credentialsQuery(testAppID, testUserID, longLived), nil), http.StatusForbidden, 70003)
}

// errorRoutesSite renders rejections with the handle_errors example of
// docs/configuration.md, plus a header that marks the error route.
var errorRoutesSite = fmt.Sprintf(`
	usersig {
		app %d %s
		realm chat
	}
	reverse_proxy {backend}
	handle_errors 401 403 {
		header X-Error-Route yes
		respond `+"`"+`{"ActionStatus":"FAIL","ErrorCode":{http.auth.usersig.error_code},"ErrorInfo":"{http.auth.usersig.error}"}`+"`"+`
	}`, testAppID, testKey)

func TestHandlerErrorRoutesRenderPlaceholders(t *testing.T) {
	s := startCaddy(t, errorRoutesSite)
	expired := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: time.Now().Add(-2 * time.Hour), Expire: 60})
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	privateMapKey, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, 1, usersig.PrivilegeAll)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name      string
		token     string
		status    int
		code      int
		info      string
		challenge string
	}{
		{"expired", expired, http.StatusUnauthorized, usersig.CodeExpired, failExpired.reason, `UserSig realm="chat"`},
		{"PrivateMapKey", privateMapKey, http.StatusForbidden, usersig.CodeMalformed, failPrivateMapKey.reason, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp := s.get("/", credentialsQuery(testAppID, testUserID, tc.token), nil)
			if resp.status != tc.status {
				t.Errorf("status = %d, want %d (body %q)", resp.status, tc.status, resp.body)
			}
			if resp.header.Get("X-Error-Route") != "yes" {
				t.Error("the response did not come from the error route")
			}
			if ct := resp.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type = %q, want application/json", ct)
			}
			var body tencentError
			if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
				t.Fatalf("body %q from handle_errors is not JSON: %v", resp.body, err)
			}
			want := tencentError{ActionStatus: "FAIL", ErrorCode: tc.code, ErrorInfo: tc.info}
			if body != want {
				t.Errorf("body = %+v, want %+v", body, want)
			}
			if got := resp.header.Get("WWW-Authenticate"); got != tc.challenge {
				t.Errorf("WWW-Authenticate = %q, want %q", got, tc.challenge)
			}
		})
	}
}

func TestHandlerRemovesSpoofedIdentityHeaders(t *testing.T) {
	s := startCaddy(t, proxySite)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	spoofed := http.Header{
		"X-UserSig-UserID":   {"mallory"},
		"x-usersig-userid":   {"mallory"},
		"X_UserSig_UserID":   {"mallory"},
		"X_USERSIG_SDKAPPID": {"1"},
	}

	check := func(t *testing.T, wantUserID, wantSDKAppID string) {
		t.Helper()
		header, _, _, _ := s.backend.last()
		var userIDs, sdkAppIDs []string
		for name, values := range header {
			if sameHeaderName(name, "X-UserSig-UserID") {
				userIDs = append(userIDs, values...)
			}
			if sameHeaderName(name, "X-UserSig-SDKAppID") {
				sdkAppIDs = append(sdkAppIDs, values...)
			}
		}
		if wantUserID == "" && len(userIDs) > 0 || wantUserID != "" && (len(userIDs) != 1 || userIDs[0] != wantUserID) {
			t.Errorf("backend UserID headers = %q, want only %q", userIDs, wantUserID)
		}
		if wantSDKAppID == "" && len(sdkAppIDs) > 0 || wantSDKAppID != "" && (len(sdkAppIDs) != 1 || sdkAppIDs[0] != wantSDKAppID) {
			t.Errorf("backend SDKAppID headers = %q, want only %q", sdkAppIDs, wantSDKAppID)
		}
	}

	t.Run("verified request", func(t *testing.T) {
		resp := s.get("/", credentialsQuery(testAppID, testUserID, token), spoofed)
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		check(t, testUserID, strconv.Itoa(testAppID))
	})

	t.Run("preflight", func(t *testing.T) {
		header := spoofed.Clone()
		header.Set("Origin", "http://app.example")
		header.Set("Access-Control-Request-Method", "POST")
		resp := s.do(http.MethodOptions, s.siteURL+"/", header)
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		check(t, "", "")
	})
}

func TestHandlerPreflight(t *testing.T) {
	preflight := http.Header{
		"Origin":                        {"http://app.example"},
		"Access-Control-Request-Method": {"POST"},
	}

	t.Run("passes unchecked by default", func(t *testing.T) {
		s := startCaddy(t, proxySite)
		resp := s.do(http.MethodOptions, s.siteURL+"/", preflight)
		if resp.status != http.StatusOK || resp.body != "backend" {
			t.Errorf("preflight: response = %d %q, want 200 from the backend", resp.status, resp.body)
		}
		plainOptions := http.Header{"Origin": {"http://app.example"}}
		expectRejection(t, s.do(http.MethodOptions, s.siteURL+"/", plainOptions), http.StatusUnauthorized, 70002)
	})

	t.Run("checked with check_preflight", func(t *testing.T) {
		s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		check_preflight
	}
	reverse_proxy {backend}`, testAppID, testKey))
		expectRejection(t, s.do(http.MethodOptions, s.siteURL+"/", preflight), http.StatusUnauthorized, 70002)
	})
}

func TestHandlerKeyRotation(t *testing.T) {
	s := startCaddy(t, identitySite)
	for keyIndex, key := range []string{testKey, testOldKey} {
		token := issue(t, key, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
		resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil)
		if resp.status != http.StatusOK {
			t.Errorf("key %d: status = %d, want 200 (body %q)", keyIndex, resp.status, resp.body)
			continue
		}
		if want := fmt.Sprintf(" key=%d ", keyIndex); !strings.Contains(resp.body, want) {
			t.Errorf("key %d: body %q does not contain %q", keyIndex, resp.body, want)
		}
	}
}

func TestHandlerKeyPlaceholders(t *testing.T) {
	keyFile := filepath.Join(t.TempDir(), "old.key")
	if err := os.WriteFile(keyFile, []byte(testOldKey+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Setenv("USERSIG_TEST_KEY", testKey)
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d {env.USERSIG_TEST_KEY} {file.%s}
	}
	respond "key={http.auth.user.key_index}"`, testAppID, keyFile))

	for keyIndex, key := range []string{testKey, testOldKey} {
		token := issue(t, key, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
		resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil)
		if want := fmt.Sprintf("key=%d", keyIndex); resp.status != http.StatusOK || resp.body != want {
			t.Errorf("token signed with key %d: response = %d %q, want 200 %q", keyIndex, resp.status, resp.body, want)
		}
	}
}

// TestHandlerErrorRoutesMatchUserSigErrors runs the handle_errors example
// of docs/configuration.md that renders the gateway's errors only.
func TestHandlerErrorRoutesMatchUserSigErrors(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig /api/* {
		app %d %s
	}
	error /other 401
	reverse_proxy {backend}
	handle_errors 401 403 {
		@usersig_error expression {http.auth.usersig.error_code} != null
		handle @usersig_error {
			respond `+"`"+`{"ActionStatus":"FAIL","ErrorCode":{http.auth.usersig.error_code},"ErrorInfo":"{http.auth.usersig.error}"}`+"`"+`
		}
	}`, testAppID, testKey))

	expectRejection(t, s.get("/api/call", nil, nil), http.StatusUnauthorized, usersig.CodeEmpty)

	resp := s.get("/other", nil, nil)
	if resp.status != http.StatusUnauthorized || resp.body != "" {
		t.Errorf("other 401: response = %d %q, want 401 with no body", resp.status, resp.body)
	}
}
