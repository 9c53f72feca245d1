package caddymodule

import (
	"bufio"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// readLogEntries parses a file of JSON log lines.
func readLogEntries(t *testing.T, path string) []map[string]any {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatalf("opening log: %v", err)
	}
	defer f.Close()

	var entries []map[string]any
	scanner := bufio.NewScanner(f)
	scanner.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for scanner.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(scanner.Bytes(), &entry); err != nil {
			t.Fatalf("log line %q is not JSON: %v", scanner.Text(), err)
		}
		entries = append(entries, entry)
	}
	if err := scanner.Err(); err != nil {
		t.Fatalf("reading log: %v", err)
	}
	return entries
}

// TestLogsKeepSecretsOut runs the log configuration of
// docs/configuration.md at debug level: the demo key gets a warning, a
// rejection is a debug entry, and no log holds a key or a UserSig.
func TestLogsKeepSecretsOut(t *testing.T) {
	dir := t.TempDir()
	serverLog := filepath.Join(dir, "caddy.log")
	accessLog := filepath.Join(dir, "access.log")
	redact := `
		format filter {
			request>uri query {
				replace usersig REDACTED
			}
			request>headers>X-Usersig delete
		}`

	s := newTestServer(t)
	s.globalLog = "\t\toutput file " + serverLog + "\n\t\tlevel DEBUG" + redact
	s.load(s.adapt(fmt.Sprintf(`
	log {
		output file %s%s
	}
	usersig {
		app %d %s
		usersig_from query:usersig header:X-UserSig
	}
	reverse_proxy {backend}
	handle_errors {
		respond "{http.auth.usersig.error_code}" {http.error.status_code}
	}`, accessLog, redact, testAppID, DemoKey)))

	genuine := issue(t, DemoKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	if resp := s.get("/", credentialsQuery(testAppID, testUserID, genuine), nil); resp.status != http.StatusOK {
		t.Errorf("genuine token: status = %d, want 200", resp.status)
	}
	if resp := s.get("/", credentialsQuery(testAppID, testUserID, forged), nil); resp.status != http.StatusUnauthorized || resp.body != "70009" {
		t.Errorf("forged token: response = %d %q, want 401 70009", resp.status, resp.body)
	}
	inHeader := issue(t, DemoKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime + 1})
	query := credentialsQuery(testAppID, testUserID, "")
	query.Del("usersig")
	if resp := s.get("/", query, http.Header{"X-Usersig": {inHeader}}); resp.status != http.StatusOK {
		t.Errorf("token in a header: status = %d, want 200", resp.status)
	}

	var warned, rejected bool
	for _, entry := range readLogEntries(t, serverLog) {
		msg, _ := entry["msg"].(string)
		level, _ := entry["level"].(string)
		if level == "error" {
			t.Errorf("error-level entry: %v", entry)
		}
		if strings.Contains(msg, "demo secret key") && level == "warn" && entry["sdkappid"] == float64(testAppID) {
			warned = true
		}
		if msg == "UserSig rejected" {
			rejected = true
			if level != "debug" {
				t.Errorf("rejection logged at %q, want debug", level)
			}
			if entry["result"] != "invalid-signature" || entry["code"] != float64(usersig.CodeInvalidSignature) || entry["userid"] != testUserID {
				t.Errorf("rejection entry = %v, want result invalid-signature, code 70009, userid alice", entry)
			}
		}
	}
	if !warned {
		t.Error("no warning about the demo key")
	}
	if !rejected {
		t.Error("no debug entry for the rejected UserSig")
	}

	access, err := os.ReadFile(accessLog)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(access), "usersig=REDACTED") {
		t.Errorf("access log has no redacted usersig parameter:\n%s", access)
	}
	for _, path := range []string{serverLog, accessLog} {
		text, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		secrets := map[string]string{"secret key": DemoKey, "genuine UserSig": genuine, "forged UserSig": forged, "UserSig from a header": inHeader}
		for name, secret := range secrets {
			if strings.Contains(string(text), secret) {
				t.Errorf("%s contains the %s", filepath.Base(path), name)
			}
		}
	}
}
