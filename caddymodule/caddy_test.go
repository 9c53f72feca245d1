package caddymodule

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// Test apps and keys. The keys are random and used nowhere else.
const (
	testAppID    = 1400000001
	testKey      = "9c1e7a0b3f5d48e2a6c4b8d0f2e4a6c8b0d2f4e6a8c0b2d4f6e8a0c2b4d6f8e0"
	testOldKey   = "1b3d5f7a9c2e4a6c8e0b2d4f6a8c0e2b4d6f8a0c2e4b6d8f0a2c4e6b8d0f2a4c"
	otherAppID   = 1400000002
	otherAppKey  = "77a3c5e7b9d1f3a5c7e9b1d3f5a7c9e1b3d5f7a9c1e3b5d7f9a1c3e5b7d9f1a3"
	testUserID   = "alice"
	testLifetime = 3600 // seconds
)

// testServer is a Caddy instance started from a Caddyfile for one test,
// in front of a backend that records what it receives.
type testServer struct {
	t         *testing.T
	siteURL   string // http://127.0.0.1:<port>
	adminAddr string // 127.0.0.1:<port>
	backend   *recordingBackend
	client    *http.Client

	// globalLog is the body of the global log option. The default
	// discards Caddy's own log.
	globalLog string
}

// recordingBackend is the upstream of the test site. It responds 200 with
// the text "backend" and keeps the last request it received.
type recordingBackend struct {
	srv *httptest.Server

	mu       sync.Mutex
	requests int
	header   http.Header
	rawQuery string
	uri      string
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	b := &recordingBackend{}
	b.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.mu.Lock()
		b.requests++
		b.header = r.Header.Clone()
		b.rawQuery = r.URL.RawQuery
		b.uri = r.RequestURI
		b.mu.Unlock()
		_, _ = io.WriteString(w, "backend")
	}))
	t.Cleanup(b.srv.Close)
	return b
}

// last returns a copy of what the backend received last.
func (b *recordingBackend) last() (header http.Header, rawQuery, uri string, requests int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.header.Clone(), b.rawQuery, b.uri, b.requests
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("finding a free port: %v", err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	if err := l.Close(); err != nil {
		t.Fatalf("closing the port probe: %v", err)
	}
	return port
}

// startCaddy runs Caddy with a Caddyfile made of the test's global
// options and site body. In site, {backend} stands for the backend's
// address. Caddy is stopped when the test ends.
func startCaddy(t *testing.T, site string) *testServer {
	t.Helper()
	s := newTestServer(t)
	s.load(s.adapt(site))
	return s
}

// newTestServer picks the ports and starts the backend, without Caddy.
func newTestServer(t *testing.T) *testServer {
	t.Helper()
	return &testServer{
		t:         t,
		backend:   newRecordingBackend(t),
		adminAddr: "127.0.0.1:" + strconv.Itoa(freePort(t)),
		siteURL:   "http://127.0.0.1:" + strconv.Itoa(freePort(t)),
		client:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}, Timeout: 10 * time.Second},
		globalLog: "output discard",
	}
}

// load runs Caddy with a JSON config until the test ends.
func (s *testServer) load(cfgJSON []byte) {
	s.t.Helper()
	if err := caddy.Load(cfgJSON, true); err != nil {
		s.t.Fatalf("loading the Caddy config: %v\n%s", err, cfgJSON)
	}
	s.t.Cleanup(func() {
		s.client.CloseIdleConnections()
		if err := caddy.Stop(); err != nil {
			s.t.Errorf("stopping Caddy: %v", err)
		}
	})
}

// caddyfile returns the whole Caddyfile for site.
func (s *testServer) caddyfile(site string) string {
	site = strings.ReplaceAll(site, "{backend}", strings.TrimPrefix(s.backend.srv.URL, "http://"))
	return "{\n" +
		"\tadmin " + s.adminAddr + "\n" +
		"\tpersist_config off\n" +
		"\tauto_https off\n" +
		"\tgrace_period 5s\n" +
		"\tlog {\n" + s.globalLog + "\n\t}\n" +
		"}\n\n" +
		s.siteURL + " {\n" + site + "\n}\n"
}

// adapt converts the Caddyfile for site to JSON.
func (s *testServer) adapt(site string) []byte {
	s.t.Helper()
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(s.caddyfile(site)), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		s.t.Fatalf("adapting the Caddyfile: %v\n%s", err, s.caddyfile(site))
	}
	return cfgJSON
}

// response is what the client got.
type response struct {
	status int
	header http.Header
	body   string
}

// get sends a GET to the site with the query parameters and headers given.
func (s *testServer) get(path string, query url.Values, header http.Header) response {
	s.t.Helper()
	target := s.siteURL + path
	if len(query) > 0 {
		target += "?" + query.Encode()
	}
	return s.do(http.MethodGet, target, header)
}

// cacheToken sends a request with a genuine token twice and checks that
// both pass, so that the gateway's cache holds the token: the cache
// stores a token from its second request.
func (s *testServer) cacheToken(query url.Values) {
	s.t.Helper()
	for i := range 2 {
		if resp := s.get("/", query, nil); resp.status != http.StatusOK {
			s.t.Fatalf("request %d of a new token: status = %d, want 200 (body %q)", i+1, resp.status, resp.body)
		}
	}
}

func (s *testServer) do(method, target string, header http.Header) response {
	s.t.Helper()
	req, err := http.NewRequest(method, target, nil)
	if err != nil {
		s.t.Fatalf("creating request: %v", err)
	}
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := s.client.Do(req)
	if err != nil && req.GetBody == nil {
		// NOTE: right after a reload, Linux may reset a new connection
		// that was queued on the old config's SO_REUSEPORT socket before
		// Caddy closed it. Such a request never reached a handler, so it
		// is sent once more.
		s.t.Logf("%s %s: %v; retrying once on a new connection", method, target, err)
		s.client.CloseIdleConnections()
		resp, err = s.client.Do(req)
	}
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, target, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("reading response: %v", err)
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// tencentError is the JSON body of a rejection.
type tencentError struct {
	ActionStatus string
	ErrorCode    int
	ErrorInfo    string
}

// expectRejection checks the status, the JSON body and the
// WWW-Authenticate header of a rejection.
func expectRejection(t *testing.T, resp response, status, code int) tencentError {
	t.Helper()
	if resp.status != status {
		t.Errorf("status = %d, want %d (body %q)", resp.status, status, resp.body)
	}
	if ct := resp.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q, want application/json", ct)
	}
	var body tencentError
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("body %q is not JSON: %v", resp.body, err)
	}
	if body.ActionStatus != "FAIL" {
		t.Errorf("ActionStatus = %q, want FAIL", body.ActionStatus)
	}
	if body.ErrorCode != code {
		t.Errorf("ErrorCode = %d, want %d (ErrorInfo %q)", body.ErrorCode, code, body.ErrorInfo)
	}
	if body.ErrorInfo == "" {
		t.Error("ErrorInfo is empty")
	}
	challenge := resp.header.Get("WWW-Authenticate")
	if status == http.StatusUnauthorized && challenge != `UserSig realm="usersig"` {
		t.Errorf("WWW-Authenticate = %q, want UserSig realm=\"usersig\"", challenge)
	}
	return body
}

// issue returns a UserSig signed with key.
func issue(t testing.TB, key string, p usersig.Params) string {
	t.Helper()
	if p.Expire == 0 {
		p.Expire = testLifetime
	}
	signer, err := usersig.NewSigner(key)
	if err != nil {
		t.Fatalf("creating signer: %v", err)
	}
	token, err := signer.Issue(p)
	if err != nil {
		t.Fatalf("issuing token: %v", err)
	}
	return token
}

// credentialsQuery returns the default query parameters for a request.
func credentialsQuery(sdkAppID int, userID, token string) url.Values {
	return url.Values{
		"sdkappid":   {strconv.Itoa(sdkAppID)},
		"identifier": {userID},
		"usersig":    {token},
	}
}
