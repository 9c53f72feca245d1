package caddymodule

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

func TestParseRevocations(t *testing.T) {
	file := "\uFEFF# revoked after the incident of 2024-12-04\n" +
		"\n" +
		`{"sdkappid":1400000001,"userid":"alice","before":1733300000}` + "\r\n" +
		"   # an indented comment\n" +
		`  {"sdkappid":1400000001,"userid":"alice","before":1733200000}  ` + "\n" +
		`{"sdkappid":1400000002,"before":1733400000}` + "\n" +
		`{"before":1733500000,"userid":"用户","sdkappid":1400000001}` // no final newline

	list, err := parseRevocations(strings.NewReader(file))
	if err != nil {
		t.Fatalf("parseRevocations: %v", err)
	}
	if n := list.len(); n != 3 {
		t.Errorf("%d entries, want 3", n)
	}
	// Of two lines for one user, the later time wins.
	if got := list.users[appUserKey{1400000001, "alice"}]; got != 1733300000 {
		t.Errorf("alice: before = %d, want 1733300000", got)
	}
	if got := list.apps[1400000002]; got != 1733400000 {
		t.Errorf("app 1400000002: before = %d, want 1733400000", got)
	}
	if got := list.users[appUserKey{1400000001, "用户"}]; got != 1733500000 {
		t.Errorf("用户: before = %d, want 1733500000", got)
	}
}

func TestParseRevocationsErrors(t *testing.T) {
	tests := []struct {
		name string
		line string
		want string
	}{
		{"not JSON", `sdkappid=1400000001`, "invalid JSON object"},
		{"unknown member", `{"sdkappid":1400000001,"user":"alice","before":1733300000}`, `unknown field "user"`},
		{"missing sdkappid", `{"userid":"alice","before":1733300000}`, "missing sdkappid"},
		{"null sdkappid", `{"sdkappid":null,"before":1733300000}`, "missing sdkappid"},
		{"zero sdkappid", `{"sdkappid":0,"before":1733300000}`, "sdkappid 0 out of range"},
		{"large sdkappid", `{"sdkappid":4294967296,"before":1733300000}`, "sdkappid 4294967296 out of range"},
		{"string sdkappid", `{"sdkappid":"1400000001","before":1733300000}`, "invalid JSON object"},
		{"missing before", `{"sdkappid":1400000001,"userid":"alice"}`, "missing before"},
		{"negative before", `{"sdkappid":1400000001,"before":-5}`, "before -5 is not a positive Unix time"},
		{"fractional before", `{"sdkappid":1400000001,"before":1733300000.5}`, "invalid JSON object"},
		{"milliseconds", `{"sdkappid":1400000001,"before":1733300000000}`, "expected Unix seconds, not milliseconds"},
		{"empty userid", `{"sdkappid":1400000001,"userid":"","before":1733300000}`, "userid is empty: omit it"},
		{"two objects", `{"sdkappid":1400000001,"before":1733300000}{"sdkappid":1,"before":1}`, "unexpected data after the JSON object"},
		{"array", `[{"sdkappid":1400000001,"before":1733300000}]`, "invalid JSON object"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			file := "# first line\n" + `{"sdkappid":1400000001,"before":1733300000}` + "\n\n" + tc.line + "\n"
			_, err := parseRevocations(strings.NewReader(file))
			if err == nil {
				t.Fatalf("parseRevocations accepted %q", tc.line)
			}
			if !strings.HasPrefix(err.Error(), "line 4: ") {
				t.Errorf("error %q does not start with the line number 4", err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

func TestParseRevocationsLongLine(t *testing.T) {
	file := `{"sdkappid":1400000001,"before":1733300000}` + "\n" + strings.Repeat(" ", maxRevocationLine+1) + "\n"
	_, err := parseRevocations(strings.NewReader(file))
	if err == nil || !strings.Contains(err.Error(), "line 2: longer than") {
		t.Errorf("error = %v, want line 2 too long", err)
	}
}

func TestRevocationListRevoked(t *testing.T) {
	list := newRevocationList()
	for _, e := range []revocationEntry{
		{SDKAppID: 1400000001, UserID: "alice", Before: 1000},
		{SDKAppID: 1400000002, Before: 2000},
	} {
		if err := list.add(e); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name     string
		sdkAppID uint64
		userID   string
		issuedAt int64
		want     bool
	}{
		{"user before", 1400000001, "alice", 999, true},
		{"user at the time", 1400000001, "alice", 1000, false},
		{"user after", 1400000001, "alice", 1001, false},
		{"other user", 1400000001, "bob", 1, false},
		{"same user in another app", 1400000003, "alice", 1, false},
		{"app-wide before", 1400000002, "anyone", 1999, true},
		{"app-wide at the time", 1400000002, "anyone", 2000, false},
		{"UserID differs in case", 1400000001, "Alice", 1, false},
	}
	for _, tc := range tests {
		if got := list.revoked(tc.sdkAppID, tc.userID, tc.issuedAt); got != tc.want {
			t.Errorf("%s: revoked(%d, %q, %d) = %v, want %v", tc.name, tc.sdkAppID, tc.userID, tc.issuedAt, got, tc.want)
		}
	}

	var none *revocationList
	if none.revoked(1400000001, "alice", 1) {
		t.Error("a nil list revokes a token")
	}
}

func TestRevocationListRevokedDoesNotAllocate(t *testing.T) {
	list := newRevocationList()
	for i := range 1000 {
		if err := list.add(revocationEntry{SDKAppID: 1400000001, UserID: "user" + string(rune('a'+i%26)) + strings.Repeat("x", i%7), Before: 1000}); err != nil {
			t.Fatal(err)
		}
	}
	userID := strings.Clone("userc")
	allocs := testing.AllocsPerRun(1000, func() {
		list.revoked(1400000001, userID, 500)
		list.revoked(1400000009, userID, 500)
	})
	if allocs != 0 {
		t.Errorf("revoked allocates %.1f times per call, want 0", allocs)
	}
}

func TestRevocationListEntryLimit(t *testing.T) {
	list := newRevocationList()
	for id := range uint64(maxRevocationEntries) {
		list.apps[id+1] = 1000
	}
	if err := list.add(revocationEntry{SDKAppID: 1, Before: 2000}); err != nil {
		t.Errorf("updating an entry of a full list: %v", err)
	}
	if err := list.add(revocationEntry{SDKAppID: 1, UserID: "alice", Before: 2000}); err != errRevocationListFull {
		t.Errorf("adding to a full list: error = %v, want %v", err, errRevocationListFull)
	}
	if _, err := list.with(revocationEntry{SDKAppID: maxRevocationEntries + 1, Before: 2000}); err != errRevocationListFull {
		t.Errorf("copying a full list with a new entry: error = %v, want %v", err, errRevocationListFull)
	}
}

// writeRevocationFile replaces the file at path and sets its modification
// time to mtime, so that a change is seen whatever the resolution of the
// file system's times.
func writeRevocationFile(t *testing.T, path, content string, mtime time.Time) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chtimes(path, mtime, mtime); err != nil {
		t.Fatal(err)
	}
}

func TestRevocationsFollowFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	start := time.Now()
	writeRevocationFile(t, path, `{"sdkappid":1400000001,"userid":"alice","before":1000}`+"\n", start.Add(-time.Hour))

	core, logs := observer.New(zapcore.DebugLevel)
	rv, err := newRevocations(revocationConfig{file: path, poll: 10 * time.Second, apps: []uint64{1400000001}}, zap.New(core))
	if err != nil {
		t.Fatalf("newRevocations: %v", err)
	}
	if !rv.revoked(1400000001, "alice", 999, start) {
		t.Error("alice is not revoked after the first read")
	}

	// A change is seen at the first request after the poll interval.
	writeRevocationFile(t, path, `{"sdkappid":1400000001,"userid":"bob","before":1000}`+"\n", start.Add(-time.Minute))
	if !rv.revoked(1400000001, "alice", 999, start.Add(time.Second)) {
		t.Error("the file was read again before the poll interval passed")
	}
	later := start.Add(11 * time.Second)
	if rv.revoked(1400000001, "alice", 999, later) || !rv.revoked(1400000001, "bob", 999, later) {
		t.Error("the changed file was not read after the poll interval")
	}

	// A bad line keeps the previous list and is logged with its number,
	// once however many polls find the same file.
	writeRevocationFile(t, path, `{"sdkappid":1400000001,"userid":"carol","before":1000}`+"\n"+`{"sdkappid":1400000001,"userid":"dave"}`+"\n", start.Add(-30*time.Second))
	for i := range 3 {
		later = later.Add(11 * time.Second)
		if !rv.revoked(1400000001, "bob", 999, later) || rv.revoked(1400000001, "carol", 999, later) {
			t.Errorf("poll %d: the previous list is not kept after a bad file", i)
		}
	}
	bad := logs.FilterMessage("invalid revocation file: keeping the previous revocation list")
	if bad.Len() != 1 {
		t.Fatalf("%d log entries for the bad file, want 1", bad.Len())
	}
	if errText := bad.All()[0].ContextMap()["error"]; !strings.Contains(errText.(string), "line 2: missing before") {
		t.Errorf("logged error %q does not name line 2", errText)
	}

	// A removed file keeps the list too.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	later = later.Add(11 * time.Second)
	if !rv.revoked(1400000001, "bob", 999, later) {
		t.Error("the list was dropped when the file was removed")
	}
	if logs.FilterMessageSnippet("revocation file removed").Len() != 1 {
		t.Error("no warning for the removed file")
	}

	// A fixed file is read again.
	writeRevocationFile(t, path, `{"sdkappid":1400000001,"before":1000}`+"\n", start)
	later = later.Add(11 * time.Second)
	if !rv.revoked(1400000001, "anyone", 999, later) || !rv.revoked(1400000001, "bob", 999, later) {
		t.Error("the app-wide entry of the restored file is not in force")
	}
}

func TestRevocationsMissingFileAtStart(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	core, logs := observer.New(zapcore.DebugLevel)
	rv, err := newRevocations(revocationConfig{file: path, poll: time.Second}, zap.New(core))
	if err != nil {
		t.Fatalf("newRevocations with a missing file: %v", err)
	}
	if logs.FilterMessageSnippet("revocation file not found").Len() != 1 {
		t.Error("no warning for the missing file")
	}
	if rv.revoked(1400000001, "alice", 1, time.Now()) {
		t.Error("a token is revoked by a missing file")
	}

	writeRevocationFile(t, path, `{"sdkappid":1400000001,"userid":"alice","before":1000}`, time.Now())
	if !rv.revoked(1400000001, "alice", 1, time.Now().Add(2*time.Second)) {
		t.Error("the file created after the start was not read")
	}
}

func TestRevocationsInvalidFileAtStart(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	writeRevocationFile(t, bad, "# comment\n{\"sdkappid\":1400000001}\n", time.Now())
	_, err := newRevocations(revocationConfig{file: bad}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "line 2: missing before") {
		t.Errorf("error = %v, want line 2: missing before", err)
	}

	large := filepath.Join(dir, "large.jsonl")
	f, err := os.Create(large)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(maxRevocationFileSize + 1); err != nil {
		t.Fatal(err)
	}
	f.Close()
	_, err = newRevocations(revocationConfig{file: large}, zap.NewNop())
	if err == nil || !strings.Contains(err.Error(), "larger than the maximum") {
		t.Errorf("error = %v, want the file size limit", err)
	}
}

func TestAppendRevocation(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	// The last line has no newline, as an editor may leave it.
	writeRevocationFile(t, path, `{"sdkappid":1400000001,"userid":"alice","before":1000}`, time.Now())

	if err := appendRevocation(path, revocationEntry{SDKAppID: 1400000001, UserID: "bob", Before: 2000}); err != nil {
		t.Fatalf("appendRevocation: %v", err)
	}
	if err := appendRevocation(path, revocationEntry{SDKAppID: 1400000002, Before: 3000}); err != nil {
		t.Fatalf("appendRevocation: %v", err)
	}
	content, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"sdkappid":1400000001,"userid":"alice","before":1000}` + "\n" +
		`{"sdkappid":1400000001,"userid":"bob","before":2000}` + "\n" +
		`{"sdkappid":1400000002,"before":3000}` + "\n"
	if string(content) != want {
		t.Errorf("file =\n%s\nwant\n%s", content, want)
	}

	created := filepath.Join(t.TempDir(), "new.jsonl")
	if err := appendRevocation(created, revocationEntry{SDKAppID: 1400000001, Before: 1000}); err != nil {
		t.Fatalf("appendRevocation to a new file: %v", err)
	}
	info, err := os.Stat(created)
	if err != nil {
		t.Fatal(err)
	}
	if perm := info.Mode().Perm(); perm != 0o600 {
		t.Errorf("new file mode = %o, want 600", perm)
	}
}

// waitForStatus repeats a GET until it gets status, for at most ten
// seconds, and returns the last response. It stands for an operator who
// retries until a change of a watched file shows.
func waitForStatus(t *testing.T, s *testServer, query url.Values, status int) response {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp := s.get("/", query, nil)
		if resp.status == status || time.Now().After(deadline) {
			return resp
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestGatewayRevocationFileRejectsCachedToken(t *testing.T) {
	path := filepath.Join(t.TempDir(), "revocations.jsonl")
	writeRevocationFile(t, path, "# no revocation yet\n", time.Now().Add(-time.Hour))
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		revocation_file %s
		revocation_poll 100ms
	}
	reverse_proxy {backend}`, testAppID, testKey, path))

	issuedAt := time.Now().Add(-time.Minute)
	alice := credentialsQuery(testAppID, "alice", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "alice", Time: issuedAt}))
	bob := credentialsQuery(testAppID, "bob", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "bob", Time: issuedAt}))
	for _, query := range []url.Values{alice, bob} {
		s.cacheToken(query)
	}

	// Revoke alice's tokens issued before now, while her token is cached.
	before := time.Now().Unix()
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := fmt.Fprintf(f, `{"sdkappid":%d,"userid":"alice","before":%d}`+"\n", testAppID, before); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	verifications := verifyCalls.Load()
	resp := waitForStatus(t, s, alice, http.StatusUnauthorized)
	body := expectRejection(t, resp, http.StatusUnauthorized, CodeRevoked)
	if body.ErrorInfo != "UserSig has been revoked" {
		t.Errorf("ErrorInfo = %q, want %q", body.ErrorInfo, "UserSig has been revoked")
	}
	if n := verifyCalls.Load() - verifications; n != 0 {
		t.Errorf("%d verifications while the token was cached, want 0: the revocation must apply to cached tokens", n)
	}

	if resp := s.get("/", bob, nil); resp.status != http.StatusOK {
		t.Errorf("bob after alice's revocation: status = %d, want 200", resp.status)
	}
	fresh := credentialsQuery(testAppID, "alice", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "alice", Time: time.Unix(before, 0)}))
	if resp := s.get("/", fresh, nil); resp.status != http.StatusOK {
		t.Errorf("alice's token issued at the revocation time: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
}

func TestGatewayRevocationFileBadLineKeepsList(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "revocations.jsonl")
	serverLog := filepath.Join(dir, "caddy.log")
	writeRevocationFile(t, path, fmt.Sprintf(`{"sdkappid":%d,"before":%d}`+"\n", otherAppID, time.Now().Unix()), time.Now().Add(-time.Hour))
	s := newTestServer(t)
	s.globalLog = "\t\toutput file " + serverLog
	s.load(s.adapt(fmt.Sprintf(`
	usersig {
		app %d %s
		app %d %s
		revocation_file %s
		revocation_poll 100ms
	}
	reverse_proxy {backend}`, testAppID, testKey, otherAppID, otherAppKey, path)))

	issuedAt := time.Now().Add(-time.Minute)
	carol := credentialsQuery(otherAppID, "carol", issue(t, otherAppKey, usersig.Params{SDKAppID: otherAppID, UserID: "carol", Time: issuedAt}))
	alice := credentialsQuery(testAppID, "alice", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "alice", Time: issuedAt}))
	expectRejection(t, s.get("/", carol, nil), http.StatusUnauthorized, CodeRevoked)

	// A bad line after a good one: the whole file is ignored, and the
	// app-wide revocation of the first read stays in force. Requests
	// trigger the check of the file, and the log shows when it ran.
	writeRevocationFile(t, path, fmt.Sprintf(`{"sdkappid":%d,"userid":"alice","before":%d}`+"\n"+`{"sdkappid":"x"}`+"\n", testAppID, time.Now().Unix()), time.Now())
	var logged map[string]any
	for deadline := time.Now().Add(10 * time.Second); logged == nil && time.Now().Before(deadline); {
		s.get("/", alice, nil)
		for _, entry := range readLogEntries(t, serverLog) {
			if entry["msg"] == "invalid revocation file: keeping the previous revocation list" {
				logged = entry
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	if logged == nil {
		t.Fatal("no log entry for the bad revocation file")
	}
	if logged["level"] != "error" || !strings.Contains(fmt.Sprint(logged["error"]), "line 2:") {
		t.Errorf("log entry = %v, want an error naming line 2", logged)
	}

	if resp := s.get("/", alice, nil); resp.status != http.StatusOK {
		t.Errorf("alice after the bad file: status = %d, want 200: the bad file was used", resp.status)
	}
	expectRejection(t, s.get("/", carol, nil), http.StatusUnauthorized, CodeRevoked)
}

func TestGatewayRevocationLoadErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	writeRevocationFile(t, bad, "\n\n{\"sdkappid\":1400000001,\"before\":1733300000000}\n", time.Now())
	t.Setenv("USERSIG_TEST_SHORT_TOKEN", "short")
	t.Setenv("USERSIG_TEST_ADMIN_TOKEN", testAdminToken)

	app := `"apps":[{"sdkappid":1400000001,"keys":["k"]}]`
	tests := []struct {
		name    string
		handler string
		want    string
	}{
		{"bad file", `{"handler":"usersig",` + app + `,"revocation_file":"` + bad + `"}`, "revocation_file " + bad + ": line 3: before 1733300000000 is too large"},
		{"short token", `{"handler":"usersig",` + app + `,"revocation_admin_token":"{env.USERSIG_TEST_SHORT_TOKEN}"}`, "revocation_admin_token: 5 bytes is shorter than the minimum of 16"},
		{"unset token", `{"handler":"usersig",` + app + `,"revocation_admin_token":"{env.USERSIG_TEST_UNSET_TOKEN}"}`, "revocation_admin_token: replacing placeholders"},
		{"poll without file", `{"handler":"usersig",` + app + `,"revocation_poll":"1s"}`, "revocation_poll: revocation_file is also required"},
		{"negative poll", `{"handler":"usersig",` + app + `,"revocation_file":"` + bad + `.new","revocation_poll":-1}`, "revocation_poll: -1ns is negative"},
		{"invalid after registration", `{"handler":"usersig",` + app + `,"revocation_admin_token":"{env.USERSIG_TEST_ADMIN_TOKEN}","clock_skew":"1ms"}`, "clock_skew: 1ms is less than the minimum"},
		{"provider bad file", `{"handler":"authentication","providers":{"usersig":{` + app + `,"revocation_file":"` + bad + `"}}}`, "line 3"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectLoadError(t, tc.handler, tc.want)
		})
	}
	if n := len(registeredRevocations()); n != 0 {
		t.Errorf("%d gateways left registered after failed loads, want 0", n)
	}
}
