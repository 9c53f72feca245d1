package caddymodule

import (
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// startProviderCaddy runs a JSON config in which Caddy's authentication
// handler uses the usersig provider in front of the backend. The proxy
// passes {http.auth.user.key_index} to the backend, and the error routes
// respond with the failure placeholders.
func startProviderCaddy(t *testing.T) *testServer {
	t.Helper()
	s := newTestServer(t)
	cfg := fmt.Sprintf(`{
		"admin": {"listen": %q, "config": {"persist": false}},
		"logging": {"logs": {"default": {"writer": {"output": "discard"}}}},
		"apps": {"http": {"servers": {"test": {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "authentication", "providers": {"usersig": {
					"apps": [{"sdkappid": %d, "keys": [%q, %q]}]
				}}},
				{"handler": "reverse_proxy",
				 "headers": {"request": {"set": {"X-Key-Index": ["{http.auth.user.key_index}"]}}},
				 "upstreams": [{"dial": %q}]}
			]}],
			"errors": {"routes": [{"handle": [
				{"handler": "static_response", "status_code": "{http.error.status_code}",
				 "body": "code={http.auth.usersig.error_code} error={http.auth.usersig.error}"}
			]}]}
		}}}}
	}`, s.adminAddr, strings.TrimPrefix(s.siteURL, "http://"), testAppID, testKey, testOldKey,
		strings.TrimPrefix(s.backend.srv.URL, "http://"))
	s.load([]byte(cfg))
	return s
}

func TestProviderGenuineTokenReachesBackend(t *testing.T) {
	s := startProviderCaddy(t)
	token := issue(t, testOldKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	resp := s.get("/", credentialsQuery(testAppID, testUserID, token), http.Header{"X_UserSig_UserID": {"mallory"}})
	if resp.status != http.StatusOK || resp.body != "backend" {
		t.Fatalf("response = %d %q, want 200 from the backend", resp.status, resp.body)
	}

	header, rawQuery, _, _ := s.backend.last()
	var userIDs []string
	for name, values := range header {
		if sameHeaderName(name, "X-UserSig-UserID") {
			userIDs = append(userIDs, values...)
		}
	}
	if len(userIDs) != 1 || userIDs[0] != testUserID {
		t.Errorf("backend UserID headers = %q, want only %q", userIDs, testUserID)
	}
	if got := header.Get("X-UserSig-SDKAppID"); got != strconv.Itoa(testAppID) {
		t.Errorf("backend X-UserSig-SDKAppID = %q, want %d", got, testAppID)
	}
	if got := header.Get("X-Key-Index"); got != "1" {
		t.Errorf("{http.auth.user.key_index} = %q, want 1", got)
	}
	if strings.Contains(rawQuery, "usersig") {
		t.Errorf("backend query %q still holds the UserSig", rawQuery)
	}
}

func TestProviderRejections(t *testing.T) {
	s := startProviderCaddy(t)
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		t.Fatal(err)
	}
	privateMapKey, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, 1, usersig.PrivilegeAll)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name  string
		token string
		code  int
	}{
		{"forged", forged, usersig.CodeInvalidSignature},
		// The authentication handler responds 401 where the usersig
		// handler would respond 403.
		{"PrivateMapKey", privateMapKey, usersig.CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			resp := s.get("/", credentialsQuery(testAppID, testUserID, tc.token), nil)
			if resp.status != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401", resp.status)
			}
			if want := fmt.Sprintf("code=%d error=", tc.code); !strings.HasPrefix(resp.body, want) {
				t.Errorf("error route body = %q, want prefix %q", resp.body, want)
			}
			if got := resp.header.Get("WWW-Authenticate"); got != `UserSig realm="usersig"` {
				t.Errorf("WWW-Authenticate = %q, want UserSig realm=\"usersig\"", got)
			}
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("backend received the rejected request")
			}
		})
	}
}
