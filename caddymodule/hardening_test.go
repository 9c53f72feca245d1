package caddymodule

import (
	"bufio"
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// The tests in this file send hostile input to a real Caddy server over
// HTTP on 127.0.0.1. Each request must get a 4xx: from the gateway with
// the Tencent error code of its first failed check, or from Go's HTTP
// server for input that the server rejects before Caddy. Caddy runs at
// debug level, and watchLogs scans its log entries for secrets.

func init() {
	caddy.RegisterModule(leakCheckWriter{})
}

// leakCheckWriter is a Caddy log writer for tests, the module
// caddy.logging.writers.leakcheck ("output leakcheck" in a Caddyfile). It
// passes every log entry to logScanner and discards it.
type leakCheckWriter struct{}

func (leakCheckWriter) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{
		ID:  "caddy.logging.writers.leakcheck",
		New: func() caddy.Module { return new(leakCheckWriter) },
	}
}

func (leakCheckWriter) String() string    { return "leakcheck" }
func (leakCheckWriter) WriterKey() string { return "leakcheck" }

func (leakCheckWriter) OpenWriter() (io.WriteCloser, error) { return scannerWriter{}, nil }

// UnmarshalCaddyfile reads "output leakcheck", which takes no arguments.
func (leakCheckWriter) UnmarshalCaddyfile(d *caddyfile.Dispenser) error {
	d.Next() // the writer name
	if d.NextArg() {
		return d.ArgErr()
	}
	return nil
}

type scannerWriter struct{}

func (scannerWriter) Write(p []byte) (int, error) {
	logScanner.scan(p)
	return len(p), nil
}

func (scannerWriter) Close() error { return nil }

// minSecretLength is the minimum length of a registered secret, because
// shorter strings could appear in a log by chance.
const minSecretLength = 32

// secretScanner looks for registered secrets (keys and UserSigs) in log
// entries. It finds a secret written as is, percent-encoded, or with CR
// and LF (raw or JSON-escaped) inserted, as a UserSig may carry them.
type secretScanner struct {
	mu      sync.RWMutex
	active  bool
	secrets map[string]string // secret → label used in failure messages
	lengths []int             // distinct lengths of the secrets, ascending

	entries atomic.Int64
	leaksMu sync.Mutex
	leaks   []string // label, logger and message of each leak, never the secret
}

var logScanner = &secretScanner{}

// start clears the secrets and the findings and starts scanning.
func (s *secretScanner) start() {
	s.mu.Lock()
	s.active = true
	s.secrets = make(map[string]string)
	s.lengths = nil
	s.mu.Unlock()
	s.entries.Store(0)
	s.leaksMu.Lock()
	s.leaks = nil
	s.leaksMu.Unlock()
}

// stop ends scanning and returns the number of entries scanned, the
// number of secrets and the leaks found.
func (s *secretScanner) stop() (entries int64, secrets int, leaks []string) {
	s.mu.Lock()
	s.active = false
	secrets = len(s.secrets)
	s.mu.Unlock()
	s.leaksMu.Lock()
	leaks = s.leaks
	s.leaksMu.Unlock()
	return s.entries.Load(), secrets, leaks
}

// add registers a secret. label names it in failure messages.
func (s *secretScanner) add(label, secret string) {
	if len(secret) < minSecretLength {
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.secrets == nil {
		s.secrets = make(map[string]string)
	}
	if _, ok := s.secrets[secret]; ok {
		return
	}
	s.secrets[secret] = label
	if !slices.Contains(s.lengths, len(secret)) {
		s.lengths = append(s.lengths, len(secret))
		slices.Sort(s.lengths)
	}
}

func (s *secretScanner) scan(entry []byte) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if !s.active {
		return
	}
	s.entries.Add(1)
	label, found := s.find(string(entry))
	if !found {
		return
	}

	// Report where the secret was, not the entry, which contains it.
	var fields struct {
		Logger string `json:"logger"`
		Msg    string `json:"msg"`
	}
	_ = json.Unmarshal(entry, &fields)
	s.leaksMu.Lock()
	s.leaks = append(s.leaks, fmt.Sprintf("%s in the entry %q of logger %q", label, fields.Msg, fields.Logger))
	s.leaksMu.Unlock()
}

// find returns the label of a secret contained in text. The caller holds
// s.mu.
func (s *secretScanner) find(text string) (string, bool) {
	if label, ok := s.findRaw(text); ok {
		return label, true
	}
	if !strings.ContainsAny(text, `%\`+"\r\n") {
		return "", false
	}
	return s.findRaw(normalizeLogText(text))
}

// findRaw looks for a secret in the runs of text made of the characters
// of keys and UserSigs. The caller holds s.mu.
func (s *secretScanner) findRaw(text string) (string, bool) {
	if len(s.lengths) == 0 {
		return "", false
	}
	shortest := s.lengths[0]
	for start := 0; start < len(text); {
		if !isSecretByte(text[start]) {
			start++
			continue
		}
		end := start
		for end < len(text) && isSecretByte(text[end]) {
			end++
		}
		run := text[start:end]
		start = end
		if len(run) < shortest {
			continue
		}
		for _, n := range s.lengths {
			for i := 0; i+n <= len(run); i++ {
				if label, ok := s.secrets[run[i:i+n]]; ok {
					return label, true
				}
			}
		}
	}
	return "", false
}

// isSecretByte reports whether c may occur in a secret key or a UserSig,
// in Tencent's alphabet or in standard base64.
func isSecretByte(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	return strings.IndexByte("*-_+/=", c) >= 0
}

// normalizeLogText removes JSON-escaped and raw CR and LF and decodes
// percent-encoding, so that a secret written in a URI, or with line
// breaks as a UserSig may carry them, reads as one run.
func normalizeLogText(text string) string {
	text = strings.NewReplacer(`\r`, "", `\n`, "").Replace(text)
	var b strings.Builder
	for i := 0; i < len(text); i++ {
		c := text[i]
		if c == '%' && i+2 < len(text) && isHex(text[i+1]) && isHex(text[i+2]) {
			c = unhex(text[i+1])<<4 | unhex(text[i+2])
			i += 2
		}
		if c != '\r' && c != '\n' {
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c <= '9':
		return c - '0'
	case c <= 'F':
		return c - 'A' + 10
	}
	return c - 'a' + 10
}

// watchLogs scans every log entry written until the test ends for the
// secrets registered with watchSecret, and fails the test if one holds a
// secret. Call it before starting Caddy, so that the check runs after
// Caddy has stopped and written its last entries.
func watchLogs(t *testing.T) {
	t.Helper()
	logScanner.start()
	t.Cleanup(func() {
		entries, secrets, leaks := logScanner.stop()
		t.Logf("scanned %d log entries for %d secrets", entries, secrets)
		if entries == 0 {
			t.Error("no log entry was scanned: the server does not log to the leakcheck writer")
		}
		for _, leak := range leaks {
			t.Errorf("a log entry contains a secret: %s", leak)
		}
	})
}

// watchSecret registers a secret for the log scan of the running test.
func watchSecret(label, secret string) {
	logScanner.add(label, secret)
}

// issueWatched issues a token signed with key and registers it as a
// secret.
func issueWatched(t *testing.T, label, key string, p usersig.Params) string {
	t.Helper()
	token := issue(t, key, p)
	watchSecret(label, token)
	return token
}

// debugLogFilter is the log filter of docs/configuration.md, which keeps
// the UserSig of the query and of the X-UserSig header out of logs, plus
// the header X_UserSig. The gateway does not read that header, but Go's
// HTTP server keeps it apart from X-UserSig (as "X_usersig"), so a token
// that a client sends in it would otherwise be logged.
const debugLogFilter = `
		format filter {
			request>uri query {
				replace usersig REDACTED
			}
			request>headers>X-Usersig delete
			request>headers>X_usersig delete
		}`

// debugCaddyfile returns a Caddyfile for site that runs Caddy at debug
// level, with the server log and the access log of the site written to
// the leakcheck writer through debugLogFilter. serverOptions, when not
// empty, is the body of the global servers option.
func (s *testServer) debugCaddyfile(site, serverOptions string) string {
	site = strings.ReplaceAll(site, "{backend}", strings.TrimPrefix(s.backend.srv.URL, "http://"))
	var b strings.Builder
	fmt.Fprintf(&b, "{\n\tadmin %s\n\tpersist_config off\n\tauto_https off\n\tgrace_period 5s\n\tdebug\n", s.adminAddr)
	if serverOptions != "" {
		fmt.Fprintf(&b, "\tservers {\n\t\t%s\n\t}\n", serverOptions)
	}
	fmt.Fprintf(&b, "\tlog {\n\t\toutput leakcheck\n\t\tlevel DEBUG%s\n\t}\n}\n\n", debugLogFilter)
	fmt.Fprintf(&b, "%s {\n\tlog {\n\t\toutput leakcheck\n\t\tlevel DEBUG%s\n\t}\n%s\n}\n", s.siteURL, debugLogFilter, site)
	return b.String()
}

// adaptDebug converts debugCaddyfile(site, serverOptions) to JSON.
func (s *testServer) adaptDebug(site, serverOptions string) []byte {
	s.t.Helper()
	text := s.debugCaddyfile(site, serverOptions)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		s.t.Fatalf("adapting the Caddyfile: %v", err)
	}
	return cfgJSON
}

// startDebugCaddy starts Caddy for site at debug level, with its logs
// scanned for secrets until the test ends. serverOptions is passed to
// debugCaddyfile.
func startDebugCaddy(t *testing.T, site, serverOptions string) *testServer {
	t.Helper()
	watchLogs(t)
	s := newTestServer(t)
	s.load(s.adaptDebug(site, serverOptions))
	return s
}

// hostileSite reads each credential from several sources, so that a
// request can carry them in two places at once.
var hostileSite = fmt.Sprintf(`
	usersig {
		app %d %s %s
		app %d %s
		sdkappid_from query:sdkappid header:X-SDKAppID
		userid_from query:identifier query:userid header:X-UserID
		usersig_from query:usersig header:X-UserSig cookie:usersig
	}
	reverse_proxy {backend}`, testAppID, testKey, testOldKey, otherAppID, otherAppKey)

// watchTestKeys registers the secret keys of the test apps.
func watchTestKeys() {
	watchSecret("secret key of the test app", testKey)
	watchSecret("previous secret key of the test app", testOldKey)
	watchSecret("secret key of the other app", otherAppKey)
}

// send sends a request with the header names exactly as given (no
// canonical form) and returns the response, or the transport error.
func (s *testServer) send(target string, header http.Header) (response, error) {
	req, err := http.NewRequest(http.MethodGet, s.siteURL+target, nil)
	if err != nil {
		return response{}, err
	}
	for name, values := range header {
		req.Header[name] = values
	}
	resp, err := s.client.Do(req)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

// rawExchange writes request to a new connection to addr and reads the
// response. It writes and reads at the same time, so that a response sent
// before the whole request was read (431, for example) is still read.
func rawExchange(addr, request string) (response, error) {
	conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return response{}, err
	}
	defer conn.Close()
	if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		return response{}, err
	}

	go func() {
		// A write error means that the server closed the connection,
		// and the response, if any, gives the reason.
		_, _ = io.WriteString(conn, request)
	}()
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return response{}, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return response{}, err
	}
	return response{status: resp.StatusCode, header: resp.Header, body: string(body)}, nil
}

// checkAnyRejection checks a response to input that Go's HTTP server may
// reject before Caddy: any 4xx, and the expected error code when the
// response comes from the gateway (401 or 403 with its JSON body).
func checkAnyRejection(t *testing.T, resp response, code int) {
	t.Helper()
	if resp.status < 400 || resp.status > 499 {
		t.Fatalf("status = %d, want a 4xx (body %.200q)", resp.status, resp.body)
	}
	if resp.header.Get("Content-Type") != "application/json" {
		t.Logf("rejected before the gateway: %d %.80q", resp.status, resp.body)
		return
	}
	var body tencentError
	if err := json.Unmarshal([]byte(resp.body), &body); err != nil {
		t.Fatalf("JSON body %.200q: %v", resp.body, err)
	}
	if body.ErrorCode != code {
		t.Errorf("ErrorCode = %d, want %d (ErrorInfo %q)", body.ErrorCode, code, body.ErrorInfo)
	}
}

// checkForwarded checks what the backend received for an accepted request:
// one identity header with userID, no copy of the identity headers in
// another spelling, and none of the genuine tokens.
func checkForwarded(t *testing.T, s *testServer, userID string, genuine ...string) {
	t.Helper()
	header, rawQuery, uri, _ := s.backend.last()
	if got := header.Values("X-UserSig-UserID"); len(got) != 1 || got[0] != userID {
		t.Errorf("backend X-UserSig-UserID = %q, want [%q]", got, userID)
	}
	for name := range header {
		spoofedUserID := name != "X-Usersig-Userid" && sameHeaderName(name, "X-UserSig-UserID")
		spoofedSDKAppID := name != "X-Usersig-Sdkappid" && sameHeaderName(name, "X-UserSig-SDKAppID")
		if spoofedUserID || spoofedSDKAppID {
			t.Errorf("backend received the spoofed identity header %q", name)
		}
	}
	decodedQuery := normalizeLogText(rawQuery)
	for i, token := range genuine {
		if strings.Contains(decodedQuery, token) || strings.Contains(normalizeLogText(uri), token) {
			t.Errorf("backend query contains genuine token %d", i)
		}
		for name, values := range header {
			for _, v := range values {
				if strings.Contains(v, token) {
					t.Errorf("backend header %q contains genuine token %d", name, i)
				}
			}
		}
	}
}

// hostileCase is a request sent through Go's HTTP client, with header
// names sent exactly as written.
type hostileCase struct {
	name   string
	target string // path and query, sent as written
	header http.Header
	status int // 200 when the request must reach the backend
	code   int // Tencent error code of a rejection
}

func TestHostileCredentials(t *testing.T) {
	s := startDebugCaddy(t, hostileSite, "")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	oldKey := issueWatched(t, "UserSig signed with the previous key", testOldKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issueWatched(t, "forged UserSig", otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	const app = "sdkappid=1400000001"
	const user = "identifier=alice"
	creds := app + "&" + user
	split := len(genuine) / 2

	tests := []hostileCase{
		{"genuine in query", "/?" + creds + "&usersig=" + genuine, nil, 200, 0},
		{"previous key in query", "/?" + creds + "&usersig=" + oldKey, nil, 200, 0},

		// A credential in two places at once.
		{"query and header differ", "/?" + creds + "&usersig=" + genuine, http.Header{"X-UserSig": {forged}}, 401, 70003},
		{"query and header equal", "/?" + creds + "&usersig=" + genuine, http.Header{"X-UserSig": {genuine}}, 200, 0},
		{"header and cookie differ", "/?" + creds, http.Header{"X-UserSig": {genuine}, "Cookie": {"usersig=" + forged}}, 401, 70003},
		{"cookie only", "/?" + creds, http.Header{"Cookie": {"usersig=" + genuine}}, 200, 0},
		{"query header cookie equal", "/?" + creds + "&usersig=" + genuine, http.Header{"X-UserSig": {genuine}, "Cookie": {"usersig=" + genuine}}, 200, 0},
		{"two keys of one app in two places", "/?" + creds + "&usersig=" + genuine, http.Header{"X-UserSig": {oldKey}}, 401, 70003},
		{"SDKAppID query and header differ", "/?" + creds + "&usersig=" + genuine, http.Header{"X-SDKAppID": {"1400000002"}}, 401, 70003},
		{"UserID query and header differ", "/?" + creds + "&usersig=" + genuine, http.Header{"X-UserID": {"bob"}}, 401, 70003},

		// Duplicated query parameters.
		{"two UserSig parameters", "/?" + creds + "&usersig=" + genuine + "&usersig=" + forged, nil, 401, 70003},
		{"UserSig parameter twice", "/?" + creds + "&usersig=" + genuine + "&usersig=" + genuine, nil, 200, 0},
		{"second UserSig parameter empty", "/?" + creds + "&usersig=" + genuine + "&usersig=", nil, 200, 0},
		{"two identifier parameters", "/?" + app + "&identifier=alice&identifier=bob&usersig=" + genuine, nil, 401, 70003},
		{"identifier and userid differ", "/?" + creds + "&userid=bob&usersig=" + genuine, nil, 401, 70003},
		{"two sdkappid parameters", "/?" + creds + "&sdkappid=1400000002&usersig=" + genuine, nil, 401, 70003},
		{"percent-encoded parameter name", "/?" + creds + "&user%73ig=" + forged + "&usersig=" + genuine, nil, 401, 70003},
		{"only a percent-encoded name", "/?" + creds + "&%75sersig=" + genuine, nil, 200, 0},
		{"semicolon after the token", "/?" + creds + "&usersig=" + genuine + ";identifier=bob", nil, 401, 70003},
		{"semicolon after the UserID", "/?" + app + "&identifier=alice;userid=bob&usersig=" + genuine, nil, 401, 70013},

		// Invalid UTF-8, NUL and other bytes, percent-encoded.
		{"CR LF inside the token", "/?" + creds + "&usersig=" + genuine[:split] + "%0D%0A" + genuine[split:], nil, 200, 0},
		{"space inside the token", "/?" + creds + "&usersig=" + genuine[:split] + "%20" + genuine[split:], nil, 401, 70003},
		{"NUL after the token", "/?" + creds + "&usersig=" + genuine + "%00", nil, 401, 70003},
		{"NUL token", "/?" + creds + "&usersig=%00", nil, 401, 70003},
		{"invalid UTF-8 token", "/?" + creds + "&usersig=%FF%FE", nil, 401, 70003},
		{"invalid UTF-8 UserID", "/?" + app + "&identifier=%FF%FEalice&usersig=" + genuine, nil, 401, 70013},
		{"NUL after the UserID", "/?" + app + "&identifier=alice%00&usersig=" + genuine, nil, 401, 70013},
		{"NUL UserID", "/?" + app + "&identifier=%00&usersig=" + genuine, nil, 401, 70013},
		{"NUL SDKAppID", "/?" + user + "&sdkappid=%00&usersig=" + genuine, nil, 401, 70020},
		{"NUL after the SDKAppID", "/?" + user + "&sdkappid=1400000001%00&usersig=" + genuine, nil, 401, 70020},
		{"fullwidth digit in SDKAppID", "/?" + user + "&sdkappid=%EF%BC%91400000001&usersig=" + genuine, nil, 401, 70020},
		{"plus sign in SDKAppID", "/?" + user + "&sdkappid=%2B1400000001&usersig=" + genuine, nil, 401, 70020},
		{"negative SDKAppID", "/?" + user + "&sdkappid=-1400000001&usersig=" + genuine, nil, 401, 70020},
		{"SDKAppID above 64 bits", "/?" + user + "&sdkappid=18446744073709551617&usersig=" + genuine, nil, 401, 70020},
		{"SDKAppID with a fraction", "/?" + user + "&sdkappid=1400000001.0&usersig=" + genuine, nil, 401, 70020},
		{"SDKAppID of the other app", "/?" + user + "&sdkappid=1400000002&usersig=" + genuine, nil, 401, 70014},
		{"invalid UTF-8 UserID header", "/?" + app + "&usersig=" + genuine, http.Header{"X-UserID": {"\xffalice"}}, 401, 70013},

		// Header names in odd case and with '_'.
		{"lower-case token header", "/?" + creds, http.Header{"x-usersig": {genuine}}, 200, 0},
		{"upper-case token header", "/?" + creds, http.Header{"X-USERSIG": {genuine}}, 200, 0},
		{"token header in two cases", "/?" + creds, http.Header{"X-USERSIG": {genuine}, "x-usersig": {forged}}, 401, 70003},
		{"token header with underscores", "/?" + creds, http.Header{"X_UserSig": {genuine}}, 401, 70002},
		{"forged token under underscores", "/?" + creds + "&usersig=" + genuine, http.Header{"X_UserSig": {forged}}, 200, 0},
		{"lower-case UserID header", "/?" + creds + "&usersig=" + genuine, http.Header{"x-userid": {"bob"}}, 401, 70003},
		{"UserID header with underscore", "/?" + creds + "&usersig=" + genuine, http.Header{"X_UserID": {"bob"}}, 200, 0},
		{"spoofed identity headers", "/?" + creds + "&usersig=" + genuine, http.Header{
			"X_UserSig_UserID":   {"mallory"},
			"x-usersig-userid":   {"mallory"},
			"X-USERSIG-SDKAPPID": {"1"},
			"x_usersig_sdkappid": {"1"},
		}, 200, 0},
		{"spaces around the header token", "/?" + creds, http.Header{"X-UserSig": {"  " + genuine + "\t"}}, 200, 0},

		// Cookies.
		{"two UserSig cookies", "/?" + creds, http.Header{"Cookie": {"usersig=" + genuine + "; usersig=" + forged}}, 401, 70003},
		{"two Cookie headers", "/?" + creds, http.Header{"Cookie": {"usersig=" + genuine, "usersig=" + forged}}, 401, 70003},
		{"quoted cookie", "/?" + creds, http.Header{"Cookie": {`usersig="` + genuine + `"`}}, 200, 0},
		{"cookie with an invalid byte", "/?" + creds, http.Header{"Cookie": {"usersig=" + genuine + "\xff"}}, 401, 70002},
		{"percent-encoded NUL cookie", "/?" + creds, http.Header{"Cookie": {"usersig=%00"}}, 401, 70003},
		{"cookie name in another case", "/?" + creds, http.Header{"Cookie": {"UserSig=" + genuine}}, 401, 70002},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			resp, err := s.send(tc.target, tc.header)
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			_, _, _, after := s.backend.last()
			if tc.status == http.StatusOK {
				if resp.status != http.StatusOK || resp.body != "backend" {
					t.Fatalf("response = %d %.200q, want 200 from the backend", resp.status, resp.body)
				}
				checkForwarded(t, s, testUserID, genuine, oldKey)
				return
			}
			expectRejection(t, resp, tc.status, tc.code)
			if after != before {
				t.Error("the backend received the rejected request")
			}
		})
	}
}

// TestHostileUndecodableCredentials sends credential values that do not
// percent-decode. Go's url.ParseQuery drops such a value, but Python's
// urllib.parse.parse_qs and Node's URLSearchParams keep it as written
// ("%ZZbob"), so a backend in those languages could read a second UserID
// or SDKAppID. The gateway rejects the request as conflicting (70003).
func TestHostileUndecodableCredentials(t *testing.T) {
	s := startDebugCaddy(t, hostileSite, "")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	tests := []struct{ name, query string }{
		{"second identifier undecodable", "sdkappid=1400000001&identifier=alice&identifier=%ZZbob&usersig=" + genuine},
		{"second identifier ends in percent", "sdkappid=1400000001&identifier=alice&identifier=bob%&usersig=" + genuine},
		{"userid undecodable", "sdkappid=1400000001&identifier=alice&userid=%ZZ&usersig=" + genuine},
		{"second sdkappid undecodable", "sdkappid=1400000001&sdkappid=1400000002%ZZ&identifier=alice&usersig=" + genuine},
		{"second UserSig undecodable", "sdkappid=1400000001&identifier=alice&usersig=" + genuine + "&usersig=%ZZ"},
		{"lone UserSig undecodable", "sdkappid=1400000001&identifier=alice&usersig=%ZZ"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			resp, err := s.send("/?"+tc.query, nil)
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			expectRejection(t, resp, http.StatusUnauthorized, usersig.CodeMalformed)
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("the backend received the request")
			}
		})
	}
}

// rawCase is a request written to a TCP connection as is, for input that
// Go's HTTP client does not send. {creds} is replaced by the query
// parameters sdkappid and identifier, {token} by a genuine token and
// {host} by the server's address.
type rawCase struct {
	name    string
	request string
	code    int // error code required when the gateway rejects the request
}

func TestHostileRawRequests(t *testing.T) {
	s := startDebugCaddy(t, hostileSite, "")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	addr := strings.TrimPrefix(s.siteURL, "http://")
	half := len(genuine) / 2

	tests := []rawCase{
		{"NUL in the request target", "GET /?{creds}&usersig=\x00{token} HTTP/1.1\r\nHost: {host}\r\n\r\n", 70003},
		{"space in the query", "GET /?{creds}&usersig={token} x HTTP/1.1\r\nHost: {host}\r\n\r\n", 70003},
		{"raw invalid UTF-8 in the UserID", "GET /?sdkappid=1400000001&identifier=\xffalice&usersig={token} HTTP/1.1\r\nHost: {host}\r\n\r\n", 70013},
		{"NUL in a header value", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig: {token}\x00\r\n\r\n", 70003},
		{"NUL in a header name", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-User\x00Sig: {token}\r\n\r\n", 70002},
		{"space before the colon", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig : {token}\r\n\r\n", 70002},
		{"CR alone in a header value", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig: " + genuine[:half] + "\r" + genuine[half:] + "\r\n\r\n", 70003},
		{"folded header line", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig: " + genuine[:half] + "\r\n " + genuine[half:] + "\r\n\r\n", 70003},
		{"two Host headers", "GET /?{creds}&usersig={token} HTTP/1.1\r\nHost: {host}\r\nHost: other.example\r\n\r\n", 0},
		{"header line of 20 KB", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig: " + strings.Repeat("A", 20<<10) + "\r\n\r\n", 70003},
		{"token header of 100 KB", "GET /?{creds} HTTP/1.1\r\nHost: {host}\r\nX-UserSig: " + strings.Repeat("A", 100<<10) + "\r\n\r\n", 70003},
	}
	replacer := strings.NewReplacer("{creds}", "sdkappid=1400000001&identifier=alice", "{token}", genuine, "{host}", addr)
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			resp, err := rawExchange(addr, replacer.Replace(tc.request))
			if err != nil {
				t.Fatalf("exchange failed: %v", err)
			}
			checkAnyRejection(t, resp, tc.code)
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("the backend received the rejected request")
			}
		})
	}
}

// largeInput is an oversized request: the query, header or cookie holds
// size bytes.
type largeInput struct {
	name   string
	target string
	header http.Header
}

func largeInputs(genuine string) []largeInput {
	const mb = 1 << 20
	const kb100 = 100 << 10
	creds := "sdkappid=1400000001&identifier=alice"
	bigToken := "eJy" + strings.Repeat("A", mb)
	return []largeInput{
		{"1 MB token in the query", "/?" + creds + "&usersig=" + bigToken, nil},
		{"1 MB token in a header", "/?" + creds, http.Header{"X-UserSig": {bigToken}}},
		{"1 MB token in a cookie", "/?" + creds, http.Header{"Cookie": {"usersig=" + bigToken}}},
		{"1 MB of CR LF around a genuine token", "/?" + creds + "&usersig=" + strings.Repeat("%0A", mb/3) + genuine, nil},
		{"100 KB token in the query", "/?" + creds + "&usersig=" + bigToken[:kb100], nil},
		{"100 KB UserID", "/?sdkappid=1400000001&identifier=" + strings.Repeat("a", kb100) + "&usersig=" + genuine, nil},
		{"100 KB of separators", "/?" + creds + strings.Repeat("&", kb100) + "&usersig=" + genuine, nil},
		{"100 KB of other parameters", "/?" + creds + strings.Repeat("&room=1234567", kb100/13) + "&usersig=" + genuine, nil},
		{"20000 parameters", "/?" + creds + strings.Repeat("&a=1", 20000) + "&usersig=" + genuine, nil},
		{"500 copies of the token", "/?" + creds + strings.Repeat("&usersig="+genuine, 500), nil},
		{"5000 UserIDs then another", "/?sdkappid=1400000001" + strings.Repeat("&identifier=alice", 5000) + "&identifier=bob&usersig=" + genuine, nil},
	}
}

// TestHostileLargeInputsDefaultLimit sends large requests to a server with
// Caddy's default header limit (16 KB in Caddy 2.11), which Go's HTTP
// server applies to the request line and headers before Caddy.
func TestHostileLargeInputsDefaultLimit(t *testing.T) {
	s := startDebugCaddy(t, hostileSite, "")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	addr := strings.TrimPrefix(s.siteURL, "http://")

	for _, tc := range largeInputs(genuine) {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, before := s.backend.last()
			var head strings.Builder
			fmt.Fprintf(&head, "GET %s HTTP/1.1\r\nHost: %s\r\n", tc.target, addr)
			for name, values := range tc.header {
				for _, v := range values {
					fmt.Fprintf(&head, "%s: %s\r\n", name, v)
				}
			}
			head.WriteString("\r\n")
			resp, err := rawExchange(addr, head.String())
			if err != nil {
				t.Fatalf("exchange failed: %v", err)
			}
			if resp.status < 400 || resp.status > 499 {
				t.Fatalf("status = %d, want a 4xx (body %.200q)", resp.status, resp.body)
			}
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("the backend received the request")
			}
		})
	}
}

// TestHostileLargeInputsRaisedLimit sends the same requests to a server
// whose header limit (4 MB) lets them reach the gateway.
func TestHostileLargeInputsRaisedLimit(t *testing.T) {
	s := startDebugCaddy(t, hostileSite, "max_header_size 4MB")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	want := map[string]struct{ status, code int }{
		"1 MB token in the query":              {401, 70003},
		"1 MB token in a header":               {401, 70003},
		"1 MB token in a cookie":               {401, 70003},
		"1 MB of CR LF around a genuine token": {401, 70003},
		"100 KB token in the query":            {401, 70003},
		"100 KB UserID":                        {401, 70013},
		"100 KB of separators":                 {200, 0},
		"100 KB of other parameters":           {200, 0},
		"20000 parameters":                     {200, 0},
		"500 copies of the token":              {200, 0},
		"5000 UserIDs then another":            {401, 70003},
	}
	for _, tc := range largeInputs(genuine) {
		t.Run(tc.name, func(t *testing.T) {
			w, ok := want[tc.name]
			if !ok {
				t.Fatal("no expected result for this input")
			}
			_, _, _, before := s.backend.last()
			resp, err := s.send(tc.target, tc.header)
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			if w.status == http.StatusOK {
				if resp.status != http.StatusOK || resp.body != "backend" {
					t.Fatalf("response = %d %.200q, want 200 from the backend", resp.status, resp.body)
				}
				checkForwarded(t, s, testUserID, genuine)
				return
			}
			expectRejection(t, resp, w.status, w.code)
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("the backend received the rejected request")
			}
		})
	}
}

// vector is a line of usersig/testdata/usersig-v2.jsonl.
type vector struct {
	Case     string `json:"case"`
	UserSig  string `json:"usersig"`
	SDKAppID uint64 `json:"sdkappid"`
	Key      string `json:"key"`
	UserID   string `json:"userid"`
	Expect   string `json:"expect"`
}

// malformedVectors returns the lines of the vector file that expect
// "malformed".
func malformedVectors(t *testing.T) []vector {
	t.Helper()
	data, err := os.ReadFile("../usersig/testdata/usersig-v2.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	var vectors []vector
	for line := range strings.SplitSeq(strings.TrimSpace(string(data)), "\n") {
		var v vector
		if err := json.Unmarshal([]byte(line), &v); err != nil {
			t.Fatalf("vector line %.80q: %v", line, err)
		}
		if v.Expect == "malformed" {
			vectors = append(vectors, v)
		}
	}
	return vectors
}

func TestHostileMalformedVectors(t *testing.T) {
	vectors := malformedVectors(t)
	if len(vectors) < 30 {
		t.Fatalf("found %d malformed vectors, want at least 30", len(vectors))
	}

	// All malformed vectors use one app and key.
	app, key := vectors[0].SDKAppID, vectors[0].Key
	for _, v := range vectors {
		if v.SDKAppID != app || v.Key != key {
			t.Fatalf("vector %s uses app %d and another key, want app %d", v.Case, v.SDKAppID, app)
		}
	}
	s := startDebugCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		usersig_from query:usersig header:X-UserSig cookie:usersig
	}
	reverse_proxy {backend}`, app, key), "max_header_size 1MB")
	watchSecret("secret key of the vector app", key)

	for _, v := range vectors {
		t.Run(v.Case, func(t *testing.T) {
			code := usersig.CodeMalformed
			if v.UserSig == "" {
				code = usersig.CodeEmpty
			}
			query := url.Values{"sdkappid": {strconv.FormatUint(v.SDKAppID, 10)}, "identifier": {v.UserID}}
			_, _, _, before := s.backend.last()

			inQuery := url.Values{"usersig": {v.UserSig}}
			for name, values := range query {
				inQuery[name] = values
			}
			resp, err := s.send("/?"+inQuery.Encode(), nil)
			if err != nil {
				t.Fatalf("token in the query: %v", err)
			}
			expectRejection(t, resp, http.StatusUnauthorized, code)

			// The same token in a header, where Go's client can send it.
			if v.UserSig != "" && !strings.ContainsAny(v.UserSig, "\x00\r\n") {
				resp, err = s.send("/?"+query.Encode(), http.Header{"X-UserSig": {v.UserSig}})
				if err != nil {
					t.Fatalf("token in a header: %v", err)
				}
				if strings.TrimSpace(v.UserSig) != v.UserSig {
					checkAnyRejection(t, resp, code)
				} else {
					expectRejection(t, resp, http.StatusUnauthorized, code)
				}
			}
			if _, _, _, after := s.backend.last(); after != before {
				t.Error("the backend received a malformed token")
			}
		})
	}
}

// inflateBomb returns a correctly signed token whose JSON document holds
// padding bytes of whitespace before its members: it inflates to more than
// padding bytes although the token is at most usersig.MaxTokenLength
// characters long.
func inflateBomb(t *testing.T, key string, p usersig.Params, padding int) string {
	t.Helper()
	now := time.Now().Unix()
	message := fmt.Sprintf("TLS.identifier:%s\nTLS.sdkappid:%d\nTLS.time:%d\nTLS.expire:%d\n", p.UserID, p.SDKAppID, now, p.Expire)
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(message))
	sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))

	var z bytes.Buffer
	w, err := zlib.NewWriterLevel(&z, zlib.BestCompression)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Write(bytes.Repeat([]byte(" "), padding)); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(w, `{"TLS.ver":"2.0","TLS.identifier":%q,"TLS.sdkappid":%d,"TLS.expire":%d,"TLS.time":%d,"TLS.sig":%q}`,
		p.UserID, p.SDKAppID, p.Expire, now, sig)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	token := strings.NewReplacer("+", "*", "/", "-", "=", "_").Replace(base64.StdEncoding.EncodeToString(z.Bytes()))
	if len(token) > usersig.MaxTokenLength {
		t.Fatalf("the bomb is %d characters long, more than the limit of %d", len(token), usersig.MaxTokenLength)
	}
	return token
}

// TestHostileInflateBombMemory sends inflate bombs that fit the token
// length limit and measures what each rejected bomb allocates in the whole
// process (client, Caddy and backend), against a malformed token of the
// same length that inflates to nothing.
func TestHostileInflateBombMemory(t *testing.T) {
	s := startDebugCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		cache_size 0
		negative_cache_size 0
	}
	reverse_proxy {backend}`, testAppID, testKey), "")
	watchTestKeys()

	const padding = 6_000_000
	bomb := inflateBomb(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, padding)
	watchSecret("inflate bomb", bomb)

	// The same construction with little padding is a genuine token, so
	// the bomb fails for its size alone.
	verifier, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{})
	if err != nil {
		t.Fatal(err)
	}
	small := inflateBomb(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime}, 1000)
	if _, err := verifier.Verify(small, usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: time.Now()}); err != nil {
		t.Fatalf("the bomb construction with 1000 bytes of padding does not verify: %v", err)
	}
	_, err = usersig.Decode(bomb, false)
	if err == nil || !strings.Contains(err.Error(), "inflated document larger") {
		t.Fatalf("usersig.Decode on the bomb: error %v, want the inflated document size error", err)
	}
	filler := "eJy" + strings.Repeat("A", len(bomb)-3)

	measure := func(token string, requests int) (perRequest uint64, verifications int64) {
		query := "/?" + credentialsQuery(testAppID, testUserID, token).Encode()
		for range 5 { // warm up the pools and connections
			if resp, err := s.send(query, nil); err != nil || resp.status != http.StatusUnauthorized {
				t.Fatalf("warm-up: response %d, error %v", resp.status, err)
			}
		}
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		calls := verifyCalls.Load()
		for range requests {
			resp, err := s.send(query, nil)
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			expectRejection(t, resp, http.StatusUnauthorized, usersig.CodeMalformed)
		}
		runtime.ReadMemStats(&after)
		return (after.TotalAlloc - before.TotalAlloc) / uint64(requests), verifyCalls.Load() - calls
	}

	const requests = 200
	fillerCost, _ := measure(filler, requests)
	bombCost, calls := measure(bomb, requests)
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	t.Logf("inflate bomb: %d characters, inflates to more than %d bytes; allocated per rejected request: bomb %d bytes, same-length malformed token %d bytes; HeapInuse after %d MB",
		len(bomb), padding, bombCost, fillerCost, m.HeapInuse>>20)

	if calls != requests {
		t.Errorf("the gateway verified %d of %d bombs, want all (caches disabled)", calls, requests)
	}
	// Inflating the whole bomb would allocate at least padding bytes
	// per request. The library stops at usersig.MaxDocumentSize and
	// pools its buffers, so a bomb must cost about as much as a
	// malformed token of the same length.
	const maxExtra = 64 << 10
	if bombCost > fillerCost+maxExtra {
		t.Errorf("a rejected bomb allocates %d bytes, more than a malformed token of the same length (%d bytes) plus %d", bombCost, fillerCost, maxExtra)
	}
}

// TestDebugLogsHoldNoSecrets runs the paths that log request data at
// debug level (rejections, handle_errors routes, the reverse proxy,
// keep_usersig, the admin API) and checks that no log entry holds a key or
// a UserSig. The other tests of this file and of soak_test.go scan their
// logs the same way.
func TestDebugLogsHoldNoSecrets(t *testing.T) {
	site := fmt.Sprintf(`
	usersig /keep/* {
		app %d %s
		usersig_from query:usersig header:X-UserSig cookie:usersig
		keep_usersig
	}
	usersig {
		app %d %s %s
		usersig_from query:usersig header:X-UserSig cookie:usersig
	}
	reverse_proxy {backend}
	handle_errors 401 403 {
		respond "{http.auth.usersig.error_code}" {http.error.status_code}
	}`, testAppID, testKey, testAppID, testKey, testOldKey)
	s := startDebugCaddy(t, site, "max_header_size 1MB")
	watchTestKeys()
	genuine := issueWatched(t, "genuine UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issueWatched(t, "forged UserSig", otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	expired := issueWatched(t, "expired UserSig", testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: time.Now().Add(-2 * time.Hour), Expire: 60})
	split := len(genuine) / 2

	tests := []struct {
		name   string
		target string
		header http.Header
		status int
		body   string
	}{
		{"genuine", "/?" + credentialsQuery(testAppID, testUserID, genuine).Encode(), nil, 200, "backend"},
		{"forged", "/?" + credentialsQuery(testAppID, testUserID, forged).Encode(), nil, 401, "70009"},
		{"expired", "/?" + credentialsQuery(testAppID, testUserID, expired).Encode(), nil, 401, "70001"},
		{"wrong user", "/?" + credentialsQuery(testAppID, "bob", genuine).Encode(), nil, 401, "70013"},
		{"token in a header", "/?sdkappid=1400000001&identifier=alice", http.Header{"x-usersig": {forged}}, 401, "70009"},
		{"token in a cookie", "/?sdkappid=1400000001&identifier=alice", http.Header{"Cookie": {"usersig=" + forged}}, 401, "70009"},
		{"encoded parameter name", "/?sdkappid=1400000001&identifier=alice&user%73ig=" + forged, nil, 401, "70009"},
		{"token with CR LF", "/?sdkappid=1400000001&identifier=alice&usersig=" + forged[:split] + "%0D%0A" + forged[split:], nil, 401, "70009"},
		{"undecodable parameter beside", "/?sdkappid=1400000001&identifier=alice&usersig=" + forged + "&x=%ZZ", nil, 401, "70009"},
		{"20000 parameters", "/?sdkappid=1400000001&identifier=alice" + strings.Repeat("&a", 20000) + "&usersig=" + forged, nil, 401, "70009"},
		{"kept token goes upstream", "/keep/?" + credentialsQuery(testAppID, testUserID, genuine).Encode(), nil, 200, "backend"},
		{"kept token in a header", "/keep/?sdkappid=1400000001&identifier=alice", http.Header{"X-UserSig": {genuine}}, 200, "backend"},
		{"conflicting tokens", "/?sdkappid=1400000001&identifier=alice&usersig=" + genuine, http.Header{"X-UserSig": {forged}}, 401, "70003"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			resp, err := s.send(tc.target, tc.header)
			if err != nil {
				t.Fatalf("request failed: %v", err)
			}
			if resp.status != tc.status || resp.body != tc.body {
				t.Errorf("response = %d %.100q, want %d %q", resp.status, resp.body, tc.status, tc.body)
			}
		})
	}

	// A reload through the admin API logs the request at debug level,
	// and the config it carries contains the keys. Caddy skips a reload
	// to the same config unless the request has Cache-Control:
	// must-revalidate.
	reload, err := http.NewRequest(http.MethodPost, "http://"+s.adminAddr+"/load", bytes.NewReader(s.adaptDebug(site, "max_header_size 1MB")))
	if err != nil {
		t.Fatal(err)
	}
	reload.Header.Set("Content-Type", "application/json")
	reload.Header.Set("Cache-Control", "must-revalidate")
	reload.Close = true // Caddy may close admin connections while it applies a config
	resp, err := s.client.Do(reload)
	if err != nil {
		t.Fatalf("reload: %v", err)
	}
	_, _ = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("reload: admin API status %d", resp.StatusCode)
	}
	// The old config's server closes its connections, so the next request
	// must not reuse an idle one.
	s.client.CloseIdleConnections()
	target := "/?" + credentialsQuery(testAppID, testUserID, genuine).Encode()
	resp2, err := s.send(target, nil)
	if err != nil {
		// NOTE: Linux may reset a new connection queued on the old
		// config's SO_REUSEPORT socket; that request reached no handler.
		t.Logf("after the reload: %v; retrying once", err)
		resp2, err = s.send(target, nil)
	}
	if err != nil || resp2.status != http.StatusOK {
		t.Errorf("after the reload: response %d, error %v, want 200", resp2.status, err)
	}
}

// TestLeakScannerFindsEncodedSecrets checks that the log scan finds a
// secret in each form a log entry may hold it, so that the tests that rely
// on it can fail.
func TestLeakScannerFindsEncodedSecrets(t *testing.T) {
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	scanner := &secretScanner{}
	scanner.start()
	scanner.add("token", token)
	scanner.add("key", testKey)
	split := len(token) / 2

	found := []struct{ name, entry string }{
		{"as is", `{"msg":"x","uri":"/?usersig=` + token + `"}`},
		{"percent-encoded", `{"uri":"/?usersig=` + url.QueryEscape(token) + `&a=b"}`},
		{"all bytes percent-encoded", `{"uri":"` + percentEncodeAll(token) + `"}`},
		{"JSON-escaped CR LF inside", `{"v":"` + token[:split] + `\r\n` + token[split:] + `"}`},
		{"encoded CR LF inside", `{"v":"` + token[:split] + `%0D%0A` + token[split:] + `"}`},
		{"inside a longer run", `{"v":"xx` + token + `yy"}`},
		{"key in a config", `{"keys":["` + testKey + `"]}`},
	}
	for _, tc := range found {
		scanner.scan([]byte(tc.entry))
		_, _, leaks := scanner.stop()
		if len(leaks) != 1 {
			t.Errorf("%s: %d leaks found, want 1", tc.name, len(leaks))
		}
		scanner.start()
		scanner.add("token", token)
		scanner.add("key", testKey)
	}

	clean := []string{
		`{"uri":"/?usersig=REDACTED"}`,
		`{"v":"` + token[:len(token)-1] + `"}`,
		`{"v":"` + testKey[1:] + `"}`,
	}
	for _, entry := range clean {
		scanner.scan([]byte(entry))
	}
	if _, _, leaks := scanner.stop(); len(leaks) != 0 {
		t.Errorf("found leaks in entries without a whole secret: %q", leaks)
	}
}

func percentEncodeAll(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		fmt.Fprintf(&b, "%%%02X", s[i])
	}
	return b.String()
}
