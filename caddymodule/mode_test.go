package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// identityHeaders returns every value that the backend received in any
// spelling of the two identity headers.
func identityHeaders(header http.Header) (userIDs, sdkAppIDs []string) {
	for name, values := range header {
		if sameHeaderName(name, defaultUserIDHeader) {
			userIDs = append(userIDs, values...)
		}
		if sameHeaderName(name, defaultSDKAppIDHeader) {
			sdkAppIDs = append(sdkAppIDs, values...)
		}
	}
	return userIDs, sdkAppIDs
}

// spoofedIdentity is a client's attempt to pass an identity of its own.
var spoofedIdentity = http.Header{
	"X-UserSig-UserID":   {"mallory"},
	"X_UserSig_UserID":   {"mallory"},
	"X-Usersig-Sdkappid": {"1"},
}

func TestModeOptional(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		mode optional
	}
	reverse_proxy {backend}`, testAppID, testKey))
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	t.Run("no credential passes unauthenticated", func(t *testing.T) {
		for _, query := range []url.Values{nil, {"page": {"2"}}, {"usersig": {""}, "identifier": {""}}} {
			resp := s.get("/public", query, spoofedIdentity)
			if resp.status != http.StatusOK || resp.body != "backend" {
				t.Errorf("query %q: response = %d %q, want 200 from the backend", query.Encode(), resp.status, resp.body)
				continue
			}
			header, _, _, _ := s.backend.last()
			if userIDs, sdkAppIDs := identityHeaders(header); len(userIDs) > 0 || len(sdkAppIDs) > 0 {
				t.Errorf("query %q: backend received identity headers %q and %q", query.Encode(), userIDs, sdkAppIDs)
			}
		}
	})

	t.Run("valid credential sets the identity", func(t *testing.T) {
		resp := s.get("/", credentialsQuery(testAppID, testUserID, genuine), spoofedIdentity)
		if resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
		header, _, _, _ := s.backend.last()
		userIDs, sdkAppIDs := identityHeaders(header)
		if len(userIDs) != 1 || userIDs[0] != testUserID {
			t.Errorf("backend UserID headers = %q, want only %q", userIDs, testUserID)
		}
		if len(sdkAppIDs) != 1 || sdkAppIDs[0] != strconv.Itoa(testAppID) {
			t.Errorf("backend SDKAppID headers = %q, want only %d", sdkAppIDs, testAppID)
		}
	})

	tests := []struct {
		name  string
		query string
		code  int
	}{
		{"forged UserSig", "sdkappid=1400000001&identifier=alice&usersig=" + forged, usersig.CodeInvalidSignature},
		{"UserID only", "identifier=alice", usersig.CodeEmpty},
		{"SDKAppID only", "sdkappid=1400000001", usersig.CodeEmpty},
		{"UserSig only", "usersig=" + genuine, CodeSDKAppIDNotConfigured},
		{"conflicting UserIDs", "identifier=alice&userid=bob", usersig.CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name+" is rejected", func(t *testing.T) {
			_, _, _, before := s.backend.last()
			expectRejection(t, s.do(http.MethodGet, s.siteURL+"/?"+tc.query, nil), http.StatusUnauthorized, tc.code)
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("backend received the rejected request")
			}
		})
	}
}

func TestModeAnnotate(t *testing.T) {
	dir := t.TempDir()
	serverLog := filepath.Join(dir, "caddy.log")
	accessLog := filepath.Join(dir, "access.log")
	s := newTestServer(t)
	s.globalLog = "\t\toutput file " + serverLog + "\n\t\tlevel DEBUG"
	s.load(s.adapt(fmt.Sprintf(`
	log {
		output file %s
	}
	log_append usersig_error {http.auth.usersig.error_code}
	usersig {
		app %d %s
		mode annotate
	}
	reverse_proxy {backend}
	handle_errors {
		respond "error route" 599
	}`, accessLog, testAppID, testKey)))
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	privateMapKey := issuePrivateMapKey(t, 1, usersig.PrivilegeAll)

	tests := []struct {
		name      string
		query     url.Values
		wantUser  string // the UserID header the backend must receive, "" for none
		wantError string // the usersig_error field of the access log, "" for null
	}{
		{"genuine", credentialsQuery(testAppID, testUserID, genuine), testUserID, ""},
		{"forged", credentialsQuery(testAppID, testUserID, forged), "", "70009"},
		{"PrivateMapKey", credentialsQuery(testAppID, testUserID, privateMapKey), "", "70003"},
		{"no credential", url.Values{"page": {"1"}}, "", "70002"},
		{"wrong user", credentialsQuery(testAppID, "bob", genuine), "", "70013"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tc.query.Set("case", tc.name)
			resp := s.get("/", tc.query, spoofedIdentity)
			if resp.status != http.StatusOK || resp.body != "backend" {
				t.Fatalf("response = %d %q, want 200 from the backend", resp.status, resp.body)
			}
			header, rawQuery, _, _ := s.backend.last()
			userIDs, _ := identityHeaders(header)
			if tc.wantUser == "" && len(userIDs) > 0 || tc.wantUser != "" && (len(userIDs) != 1 || userIDs[0] != tc.wantUser) {
				t.Errorf("backend UserID headers = %q, want %q", userIDs, tc.wantUser)
			}
			if strings.Contains(rawQuery, "usersig=") {
				t.Errorf("backend query %q holds the UserSig", rawQuery)
			}
		})
	}

	fields := make(map[string]any)
	for _, entry := range readLogEntries(t, accessLog) {
		request, _ := entry["request"].(map[string]any)
		uri, _ := request["uri"].(string)
		parsed, err := url.ParseRequestURI(uri)
		if err != nil {
			t.Fatalf("access log URI %q: %v", uri, err)
		}
		fields[parsed.Query().Get("case")] = entry["usersig_error"]
	}
	for _, tc := range tests {
		got, logged := fields[tc.name]
		if !logged {
			t.Errorf("%s: no access log entry", tc.name)
			continue
		}
		if tc.wantError == "" && got != nil || tc.wantError != "" && got != tc.wantError {
			t.Errorf("%s: access log usersig_error = %v, want %q", tc.name, got, tc.wantError)
		}
	}

	var passedOn int
	for _, entry := range readLogEntries(t, serverLog) {
		switch entry["msg"] {
		case "UserSig rejected":
			t.Errorf("annotate mode logged a rejection: %v", entry)
		case "UserSig not valid, request passed on":
			passedOn++
			if entry["level"] != "debug" || entry["mode"] != modeAnnotate {
				t.Errorf("entry = %v, want level debug and mode annotate", entry)
			}
		}
	}
	if passedOn != len(tests)-1 {
		t.Errorf("%d debug entries for invalid requests passed on, want %d", passedOn, len(tests)-1)
	}
}

func TestModeAnnotateKeepUserSig(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		mode annotate
		keep_usersig
	}
	reverse_proxy {backend}`, testAppID, testKey))
	forged := issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	if resp := s.get("/", credentialsQuery(testAppID, testUserID, forged), nil); resp.status != http.StatusOK {
		t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	_, rawQuery, _, _ := s.backend.last()
	query, err := url.ParseQuery(rawQuery)
	if err != nil {
		t.Fatal(err)
	}
	if query.Get("usersig") != forged {
		t.Error("backend did not receive the UserSig although keep_usersig is set")
	}
}
