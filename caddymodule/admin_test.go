package caddymodule

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// Admin tokens of the tests, random and used nowhere else.
const (
	testAdminToken  = "3f9c2a7e5b1d4c8a9e0f6b2d7c4a1e8f"
	otherAdminToken = "8d2b6f0a4c9e1b7d3a5f8c2e6b0d4a9f"
)

// adminRevocations sends a request to the revocations endpoint of the
// admin API of s, with token as bearer token unless it is empty.
func (s *testServer) adminRevocations(method, token, body string) response {
	s.t.Helper()
	req, err := http.NewRequest(method, "http://"+s.adminAddr+"/usersig/revocations", strings.NewReader(body))
	if err != nil {
		s.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s /usersig/revocations: %v", method, err)
	}
	defer resp.Body.Close()
	content, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatal(err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(content)}
}

// expectAdminError checks the status of an admin API error and that its
// message contains want.
func expectAdminError(t *testing.T, resp response, status int, want string) {
	t.Helper()
	if resp.status != status {
		t.Errorf("status = %d, want %d (body %q)", resp.status, status, resp.body)
	}
	var body struct{ Error string }
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	if !strings.Contains(body.Error, want) {
		t.Errorf("error %q does not contain %q", body.Error, want)
	}
}

// listedRevocations decodes the body of a GET.
func listedRevocations(t *testing.T, resp response) []revocationEntry {
	t.Helper()
	if resp.status != http.StatusOK {
		t.Fatalf("GET: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	var body revocationsResponse
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	return body.Revocations
}

// registerTestRevocations registers revocation state as a provisioned
// gateway would, until the test ends.
func registerTestRevocations(t *testing.T, cfg revocationConfig) *revocations {
	t.Helper()
	rv, err := newRevocations(cfg, zap.NewNop())
	if err != nil {
		t.Fatalf("newRevocations: %v", err)
	}
	registerRevocations(rv)
	t.Cleanup(func() { unregisterRevocations(rv) })
	return rv
}

func TestAdminRevocationsDisabledWithoutToken(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	if n := len(registeredRevocations()); n != 0 {
		t.Fatalf("%d gateways registered before the test, want 0", n)
	}
	expectAdminError(t, s.adminRevocations(http.MethodGet, testAdminToken, ""), http.StatusNotFound, "no usersig gateway has a revocation_admin_token")
	expectAdminError(t, s.adminRevocations(http.MethodPost, testAdminToken, `{"sdkappid":1400000001,"before":1}`), http.StatusNotFound, "no usersig gateway")
}

func TestAdminRevocationsRequireToken(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	registerTestRevocations(t, revocationConfig{adminToken: testAdminToken, apps: []uint64{testAppID}})

	for _, tc := range []struct {
		name          string
		authorization string
	}{
		{"none", ""},
		{"wrong token", "Bearer " + otherAdminToken},
		{"token prefix", "Bearer " + testAdminToken[:16]},
		{"basic scheme", "Basic " + testAdminToken},
		{"no token", "Bearer "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodGet, "http://"+s.adminAddr+"/usersig/revocations", nil)
			if err != nil {
				t.Fatal(err)
			}
			if tc.authorization != "" {
				req.Header.Set("Authorization", tc.authorization)
			}
			resp, err := s.client.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized {
				t.Errorf("status = %d, want 401 (body %q)", resp.StatusCode, body)
			}
			if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer realm="usersig"` {
				t.Errorf("WWW-Authenticate = %q, want Bearer realm=\"usersig\"", got)
			}
			if strings.Contains(string(body), testAdminToken) {
				t.Error("the response holds the admin token")
			}
		})
	}

	if resp := s.adminRevocations(http.MethodGet, testAdminToken+" extra", ""); resp.status != http.StatusUnauthorized {
		t.Errorf("a token with extra text: status = %d, want 401", resp.status)
	}
	expectAdminError(t, s.adminRevocations(http.MethodDelete, testAdminToken, ""), http.StatusMethodNotAllowed, "method DELETE not allowed")
}

func TestAdminRevocationsPostAppendsToFile(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	writeRevocationFile(t, path, "# managed by the admin API\n"+`{"sdkappid":1400000001,"userid":"bob","before":1000}`+"\n", time.Now().Add(-time.Hour))
	rv := registerTestRevocations(t, revocationConfig{file: path, adminToken: testAdminToken, apps: []uint64{testAppID}})

	resp := s.adminRevocations(http.MethodPost, testAdminToken, `{"sdkappid":1400000001,"userid":"alice","before":1733300000}`)
	if resp.status != http.StatusOK {
		t.Fatalf("POST: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	var posted postResponse
	if err := json.Unmarshal([]byte(resp.body), &posted); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	if posted.Gateways != 1 || len(posted.Files) != 1 || posted.Files[0] != path {
		t.Errorf("POST response = %+v, want 1 gateway and the file %s", posted, path)
	}

	// The revocation applies at once, before any poll of the file.
	if !rv.list.Load().revoked(testAppID, "alice", 1733299999) {
		t.Error("alice is not revoked right after the POST")
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(content), "\n"+`{"sdkappid":1400000001,"userid":"alice","before":1733300000}`+"\n") {
		t.Errorf("the file does not end with the posted line:\n%s", content)
	}
	list, err := readRevocationFile(path)
	if err != nil {
		t.Fatalf("the file after the POST does not parse: %v", err)
	}
	if list.len() != 2 {
		t.Errorf("the file holds %d entries, want 2", list.len())
	}

	entries := listedRevocations(t, s.adminRevocations(http.MethodGet, testAdminToken, ""))
	want := []revocationEntry{
		{SDKAppID: testAppID, UserID: "alice", Before: 1733300000},
		{SDKAppID: testAppID, UserID: "bob", Before: 1000},
	}
	if len(entries) != len(want) || entries[0] != want[0] || entries[1] != want[1] {
		t.Errorf("GET = %+v, want %+v", entries, want)
	}
}

func TestAdminRevocationsPostWithoutFile(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	rv := registerTestRevocations(t, revocationConfig{adminToken: testAdminToken, apps: []uint64{testAppID}})

	resp := s.adminRevocations(http.MethodPost, testAdminToken, `{"sdkappid":1400000001,"before":1733300000}`)
	if resp.status != http.StatusOK {
		t.Fatalf("POST: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	if !strings.Contains(resp.body, `"files":[]`) {
		t.Errorf("POST response %q names a file, want none", resp.body)
	}
	if !rv.list.Load().revoked(testAppID, "anyone", 1733299999) {
		t.Error("the app-wide revocation is not in force")
	}
}

func TestAdminRevocationsPostErrors(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	rv := registerTestRevocations(t, revocationConfig{adminToken: testAdminToken, apps: []uint64{testAppID}})

	tests := []struct {
		name string
		body string
		want string
	}{
		{"empty body", ``, "invalid revocation: invalid JSON object"},
		{"missing before", `{"sdkappid":1400000001,"userid":"alice"}`, "invalid revocation: missing before"},
		{"milliseconds", `{"sdkappid":1400000001,"before":1733300000000}`, "not milliseconds"},
		{"unknown member", `{"sdkappid":1400000001,"before":1733300000,"reason":"leak"}`, `unknown field "reason"`},
		{"app not served", `{"sdkappid":1400000009,"before":1733300000}`, "SDKAppID 1400000009 is not configured in a usersig gateway with this token"},
		{"body too large", `{"sdkappid":1400000001,"userid":"` + strings.Repeat("a", maxAdminBodySize) + `","before":1}`, "reading the request body"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectAdminError(t, s.adminRevocations(http.MethodPost, testAdminToken, tc.body), http.StatusBadRequest, tc.want)
		})
	}
	if n := rv.list.Load().len(); n != 0 {
		t.Errorf("%d entries after rejected POSTs, want 0", n)
	}
}

func TestAdminRevocationsTokenSelectsGateways(t *testing.T) {
	s := startCaddy(t, `respond "site"`)
	dir := t.TempDir()
	shared := filepath.Join(dir, "shared.jsonl")
	first := registerTestRevocations(t, revocationConfig{file: shared, adminToken: testAdminToken, apps: []uint64{testAppID}})
	second := registerTestRevocations(t, revocationConfig{file: shared, adminToken: testAdminToken, apps: []uint64{testAppID, otherAppID}})
	other := registerTestRevocations(t, revocationConfig{adminToken: otherAdminToken, apps: []uint64{testAppID}})

	resp := s.adminRevocations(http.MethodPost, testAdminToken, `{"sdkappid":1400000001,"userid":"alice","before":2000}`)
	if resp.status != http.StatusOK {
		t.Fatalf("POST: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	if !first.list.Load().revoked(testAppID, "alice", 1) || !second.list.Load().revoked(testAppID, "alice", 1) {
		t.Error("a gateway with the token did not apply the revocation")
	}
	if other.list.Load().revoked(testAppID, "alice", 1) {
		t.Error("the gateway with another token applied the revocation")
	}
	// Two gateways share the file, which gets the line once.
	content, err := os.ReadFile(shared)
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(content), "alice"); n != 1 {
		t.Errorf("the shared file holds the revocation %d times, want once:\n%s", n, content)
	}

	// Only the second gateway serves the other app.
	resp = s.adminRevocations(http.MethodPost, testAdminToken, `{"sdkappid":1400000002,"before":3000}`)
	if resp.status != http.StatusOK || !strings.Contains(resp.body, `"gateways":1`) {
		t.Errorf("POST for the other app = %d %q, want 200 with 1 gateway", resp.status, resp.body)
	}
	if first.list.Load().revoked(otherAppID, "bob", 1) || !second.list.Load().revoked(otherAppID, "bob", 1) {
		t.Error("the revocation of the other app did not go to the gateway serving it only")
	}

	if entries := listedRevocations(t, s.adminRevocations(http.MethodGet, otherAdminToken, "")); len(entries) != 0 {
		t.Errorf("GET with the other token = %+v, want no entries", entries)
	}
}

// adminSite is a gateway whose revocations the admin API manages, with
// revocation_file left to the caller.
func adminSite(file string) string {
	return fmt.Sprintf(`
	usersig {
		app %d %s
		revocation_admin_token {env.USERSIG_TEST_ADMIN_TOKEN}%s
	}
	reverse_proxy {backend}`, testAppID, testKey, file)
}

func TestGatewayAdminRevocationRejectsCachedTokenAtOnce(t *testing.T) {
	t.Setenv("USERSIG_TEST_ADMIN_TOKEN", testAdminToken)
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	site := adminSite("\n\t\trevocation_file " + path)
	s := startCaddy(t, site)

	issuedAt := time.Now().Add(-time.Minute)
	alice := credentialsQuery(testAppID, "alice", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "alice", Time: issuedAt}))
	s.cacheToken(alice)

	verifications := verifyCalls.Load()
	before := time.Now().Unix()
	resp := s.adminRevocations(http.MethodPost, testAdminToken, fmt.Sprintf(`{"sdkappid":%d,"userid":"alice","before":%d}`, testAppID, before))
	if resp.status != http.StatusOK {
		t.Fatalf("POST: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	// No waiting: the POST applies to the next request, also when the
	// token is cached.
	expectRejection(t, s.get("/", alice, nil), http.StatusUnauthorized, CodeRevoked)
	if n := verifyCalls.Load() - verifications; n != 0 {
		t.Errorf("%d verifications while the token was cached, want 0", n)
	}

	// The file created by the POST carries the revocation over a reload.
	if n := len(registeredRevocations()); n != 1 {
		t.Errorf("%d gateways registered before the reload, want 1", n)
	}
	s.reload(site)
	if n := len(registeredRevocations()); n != 1 {
		t.Errorf("%d gateways registered after the reload, want 1: the old gateway was not removed", n)
	}
	expectRejection(t, s.get("/", alice, nil), http.StatusUnauthorized, CodeRevoked)
	entries := listedRevocations(t, s.adminRevocations(http.MethodGet, testAdminToken, ""))
	if want := (revocationEntry{SDKAppID: testAppID, UserID: "alice", Before: before}); len(entries) != 1 || entries[0] != want {
		t.Errorf("GET after the reload = %+v, want [%+v]", entries, want)
	}
}

func TestGatewayAdminRevocationInMemoryEndsWithConfig(t *testing.T) {
	t.Setenv("USERSIG_TEST_ADMIN_TOKEN", testAdminToken)
	site := adminSite("")
	s := startCaddy(t, site)

	issuedAt := time.Now().Add(-time.Minute)
	bob := credentialsQuery(testAppID, "bob", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "bob", Time: issuedAt}))
	resp := s.adminRevocations(http.MethodPost, testAdminToken, fmt.Sprintf(`{"sdkappid":%d,"before":%d}`, testAppID, time.Now().Unix()))
	if resp.status != http.StatusOK {
		t.Fatalf("POST: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
	expectRejection(t, s.get("/", bob, nil), http.StatusUnauthorized, CodeRevoked)

	s.reload(site)
	if resp := s.get("/", bob, nil); resp.status != http.StatusOK {
		t.Errorf("after a reload: status = %d, want 200: an in-memory revocation lives as long as its config", resp.status)
	}
}

// reload loads the Caddyfile for site again through the admin API. The
// Cache-Control header makes Caddy replace the config even when it is
// unchanged, so every module is provisioned anew.
func (s *testServer) reload(site string) {
	s.t.Helper()
	req, err := http.NewRequest(http.MethodPost, "http://"+s.adminAddr+"/load", bytes.NewReader(s.adapt(site)))
	if err != nil {
		s.t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Cache-Control", "must-revalidate")
	req.Close = true // Caddy may close admin connections while it applies a config
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("reloading: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("reloading: status %d: %s", resp.StatusCode, body)
	}
	// The old config's server closes its connections, so the next request
	// must not reuse an idle one.
	s.client.CloseIdleConnections()
}
