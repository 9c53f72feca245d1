package usersigcmd_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	// The tests run a binary built from source, which the test cache does
	// not see. Linking the package under test makes a change to it, to
	// usersig or to Caddy invalidate cached results.
	_ "github.com/caddy-usersig/caddy-usersig/caddymodule/usersigcmd"
)

// demoKey is the demo secret key of the documentation; it is no real key.
const demoKey = "5f7a3b2c9d1e4f60a8b7c6d5e4f3a2b1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5"

// secondKey and thirdKey are further test keys, for key rotation.
const (
	secondKey = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
	thirdKey  = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

const (
	testSDKAppID = "1400000000"
	testTime     = 1700000000
)

// caddyBinary is the gateway binary that TestMain builds from ./cmd/caddy.
var caddyBinary string

func TestMain(m *testing.M) {
	os.Exit(buildAndRun(m))
}

func buildAndRun(m *testing.M) int {
	dir, err := os.MkdirTemp("", "usersigcmd-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "creating a temporary directory:", err)
		return 1
	}
	defer os.RemoveAll(dir)

	caddyBinary = filepath.Join(dir, "caddy")
	build := exec.Command("go", "build", "-o", caddyBinary, "./cmd/caddy")
	build.Dir = filepath.Join("..", "..") // the module root
	build.Stdout = os.Stderr
	build.Stderr = os.Stderr
	if err := build.Run(); err != nil {
		fmt.Fprintln(os.Stderr, "building ./cmd/caddy:", err)
		return 1
	}
	return m.Run()
}

// run is one invocation of "caddy usersig ...".
type run struct {
	args  []string
	key   string // USERSIG_KEY; unset when empty
	stdin string
}

type result struct {
	stdout   string
	stderr   string
	exitCode int
}

// execute runs the binary with the environment of the test minus any
// USERSIG_KEY, plus r.key.
func (r run) execute(t *testing.T) result {
	t.Helper()

	// A bound so that a hung process cannot stall the test run; it is no
	// assertion on speed.
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()

	cmd := exec.CommandContext(ctx, caddyBinary, append([]string{"usersig"}, r.args...)...)
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "USERSIG_KEY=") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	if r.key != "" {
		cmd.Env = append(cmd.Env, "USERSIG_KEY="+r.key)
	}
	cmd.Stdin = strings.NewReader(r.stdin)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr

	err := cmd.Run()
	res := result{stdout: stdout.String(), stderr: stderr.String()}
	var exitErr *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exitErr):
		res.exitCode = exitErr.ExitCode()
	default:
		t.Fatalf("running %v: %v", r.args, err)
	}
	return res
}

// verifyOutput is the JSON that "usersig verify" prints.
type verifyOutput struct {
	Result   string  `json:"result"`
	Code     *int    `json:"code"`
	Message  string  `json:"message"`
	KeyIndex *int    `json:"key_index"`
	Claims   *claims `json:"claims"`
}

// decodeOutput is the JSON that "usersig decode" prints.
type decodeOutput struct {
	Verified  *bool   `json:"verified"`
	Result    string  `json:"result"`
	Code      int     `json:"code"`
	Message   string  `json:"message"`
	Version   string  `json:"version"`
	Claims    *claims `json:"claims"`
	Expired   *bool   `json:"expired"`
	Signature string  `json:"sig"`
}

type claims struct {
	SDKAppID          uint64        `json:"sdkappid"`
	UserID            string        `json:"userid"`
	Time              int64         `json:"time"`
	Expire            int64         `json:"expire"`
	ExpiresAt         int64         `json:"expires_at"`
	UserBuf           *string       `json:"userbuf_b64"`
	PrivilegeMap      *privilegeMap `json:"privilege_map"`
	PrivilegeMapError string        `json:"privilege_map_error"`
}

type privilegeMap struct {
	Version        uint8  `json:"version"`
	Account        string `json:"account"`
	SDKAppID       uint32 `json:"sdkappid"`
	RoomID         uint32 `json:"room_id"`
	RoomStr        string `json:"room_str"`
	ExpireAt       uint32 `json:"expire_at"`
	Privileges     uint32 `json:"privileges"`
	PrivilegeNames string `json:"privilege_names"`
	AccountType    uint32 `json:"account_type"`
	AccountHex     string `json:"account_hex"`
	RoomStrHex     string `json:"room_str_hex"`
}

// parseJSON decodes stdout strictly into v: one object, no unknown members.
func parseJSON(t *testing.T, stdout string, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("stdout is not the expected JSON object: %v\n%s", err, stdout)
	}
	if dec.More() {
		t.Fatalf("stdout contains more than one JSON value:\n%s", stdout)
	}
}

// assertNoKey fails when any secret key text shows in the output. Keys
// shorter than 8 characters (one vector uses the key "k") are skipped,
// because they occur in any text.
func assertNoKey(t *testing.T, res result, keys ...string) {
	t.Helper()
	for _, key := range keys {
		if len(key) < 8 {
			continue
		}
		if strings.Contains(res.stdout, key) {
			t.Errorf("stdout contains a secret key")
		}
		if strings.Contains(res.stderr, key) {
			t.Errorf("stderr contains a secret key")
		}
	}
}

// gen issues a token and fails the test unless that succeeds.
func gen(t *testing.T, key string, args ...string) string {
	t.Helper()
	res := run{args: append([]string{"gen"}, args...), key: key}.execute(t)
	if res.exitCode != 0 {
		t.Fatalf("gen %v: exit status %d, stderr: %s", args, res.exitCode, res.stderr)
	}
	assertNoKey(t, res, key)
	token, ok := strings.CutSuffix(res.stdout, "\n")
	if !ok || token == "" || strings.Contains(token, "\n") {
		t.Fatalf("gen output is not one line: %q", res.stdout)
	}
	return token
}

// verify runs "usersig verify" and decodes its JSON output.
func verify(t *testing.T, r run) (verifyOutput, result) {
	t.Helper()
	r.args = append([]string{"verify"}, r.args...)
	res := r.execute(t)
	var out verifyOutput
	parseJSON(t, res.stdout, &out)
	assertNoKey(t, res, r.key, demoKey, secondKey, thirdKey)
	return out, res
}

// vector is one line of usersig/testdata/usersig-v2.jsonl.
type vector struct {
	UserSig          string  `json:"usersig"`
	SDKAppID         uint64  `json:"sdkappid"`
	Key              string  `json:"key"`
	UserID           string  `json:"userid"`
	Now              int64   `json:"now"`
	VerifyMode       string  `json:"verify_mode"`
	ExpectUserBufB64 *string `json:"expect_userbuf_b64"`
	Expect           string  `json:"expect"`

	CaseID string `json:"case_id"` // lines from an official generator
	Impl   string `json:"impl"`
	Case   string `json:"case"` // hand-made lines

	// UserBufParsed is the privilege map of a PrivateMapKey line.
	UserBufParsed *struct {
		Version     uint8   `json:"version"`
		AccountHex  string  `json:"account_hex"`
		SDKAppID    uint32  `json:"sdkappid"`
		RoomID      uint32  `json:"roomid"`
		ExpireAt    uint32  `json:"expire_at"`
		Privileges  uint32  `json:"privilege_map"`
		AccountType uint32  `json:"account_type"`
		RoomStrHex  *string `json:"roomstr_hex"`
	} `json:"userbuf_parsed"`
}

func (v vector) name(line int) string {
	if v.Case != "" {
		return fmt.Sprintf("line%03d-%s", line, v.Case)
	}
	return fmt.Sprintf("line%03d-%s-%s", line, v.Impl, v.CaseID)
}

func readVectors(t *testing.T) []vector {
	t.Helper()
	f, err := os.Open(filepath.Join("..", "..", "usersig", "testdata", "usersig-v2.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()

	var vectors []vector
	scanner := bufio.NewScanner(f)
	scanner.Buffer(nil, 1<<20)
	for scanner.Scan() {
		var v vector
		if err := json.Unmarshal(scanner.Bytes(), &v); err != nil {
			t.Fatalf("line %d: %v", len(vectors)+1, err)
		}
		vectors = append(vectors, v)
	}
	if err := scanner.Err(); err != nil {
		t.Fatal(err)
	}
	return vectors
}

func TestVerifyVectors(t *testing.T) {
	vectors := readVectors(t)
	if len(vectors) != 457 {
		t.Fatalf("read %d vectors, want 457", len(vectors))
	}

	// Four workers keep the 457 runs of the binary short on a small
	// machine. t.Run may be called from several goroutines at once.
	const workers = 4
	lines := make(chan int)
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for i := range lines {
				v := vectors[i]
				t.Run(v.name(i+1), func(t *testing.T) { checkVector(t, v) })
			}
		})
	}
	for i := range vectors {
		lines <- i
	}
	close(lines)
	wg.Wait()
}

func checkVector(t *testing.T, v vector) {
	args := []string{
		"--sdkappid=" + strconv.FormatUint(v.SDKAppID, 10),
		"--userid=" + v.UserID,
		"--now=" + strconv.FormatInt(v.Now, 10),
	}
	switch v.VerifyMode {
	case "usersig":
	case "with_userbuf":
		args = append(args, "--with-userbuf")
		if v.ExpectUserBufB64 != nil {
			args = append(args, "--expect-userbuf-b64="+*v.ExpectUserBufB64)
		}
	default:
		t.Fatalf("unknown verify_mode %q", v.VerifyMode)
	}
	args = append(args, "--", v.UserSig)

	out, res := verify(t, run{args: args, key: v.Key})
	if out.Result != v.Expect {
		t.Errorf("result = %q (%s), want %q", out.Result, out.Message, v.Expect)
	}
	wantExit := 1
	if v.Expect == "valid" {
		wantExit = 0
	}
	if res.exitCode != wantExit {
		t.Errorf("exit status = %d, want %d; stderr: %s", res.exitCode, wantExit, res.stderr)
	}
	if v.Expect == "valid" && (out.KeyIndex == nil || *out.KeyIndex != 0) {
		t.Errorf("key_index = %v, want 0", out.KeyIndex)
	}
	if v.Expect == "valid" && (out.Claims == nil || out.Claims.UserID != v.UserID) {
		t.Errorf("claims = %+v, want userid %q", out.Claims, v.UserID)
	}
	if v.UserBufParsed != nil {
		checkPrivilegeMap(t, out.Claims, v)
	}
	assertNoKey(t, res, v.Key)
}

// checkPrivilegeMap compares the privilege map that verify printed with
// the one recorded in the vector. Account and room string are compared as
// bytes, because the Java, Node and Python libraries do not write them in
// UTF-8.
func checkPrivilegeMap(t *testing.T, c *claims, v vector) {
	t.Helper()
	if c == nil || c.PrivilegeMap == nil {
		t.Errorf("claims = %+v, want a privilege map", c)
		return
	}
	got := c.PrivilegeMap
	want := v.UserBufParsed

	accountHex := got.AccountHex
	if accountHex == "" {
		accountHex = hex.EncodeToString([]byte(got.Account))
	}
	if accountHex != want.AccountHex {
		t.Errorf("privilege map account = %s in hex, want %s", accountHex, want.AccountHex)
	}
	roomStrHex := got.RoomStrHex
	if roomStrHex == "" {
		roomStrHex = hex.EncodeToString([]byte(got.RoomStr))
	}
	if want.RoomStrHex != nil && roomStrHex != *want.RoomStrHex {
		t.Errorf("privilege map room_str = %s in hex, want %s", roomStrHex, *want.RoomStrHex)
	}
	if got.Version != want.Version {
		t.Errorf("privilege map version = %d, want %d", got.Version, want.Version)
	}
	if got.SDKAppID != want.SDKAppID {
		t.Errorf("privilege map sdkappid = %d, want %d", got.SDKAppID, want.SDKAppID)
	}
	if got.RoomID != want.RoomID {
		t.Errorf("privilege map room_id = %d, want %d", got.RoomID, want.RoomID)
	}
	if got.ExpireAt != want.ExpireAt {
		t.Errorf("privilege map expire_at = %d, want %d", got.ExpireAt, want.ExpireAt)
	}
	if got.Privileges != want.Privileges {
		t.Errorf("privilege map privileges = %d, want %d", got.Privileges, want.Privileges)
	}
	if got.AccountType != want.AccountType {
		t.Errorf("privilege map account_type = %d, want %d", got.AccountType, want.AccountType)
	}
}

func TestGenVerifyRoundTrip(t *testing.T) {
	common := []string{"--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime), "--expire", "3600"}
	verifyArgs := []string{"--sdkappid", testSDKAppID, "--userid", "alice", "--now", strconv.Itoa(testTime + 60)}

	t.Run("plain", func(t *testing.T) {
		token := gen(t, demoKey, common...)
		out, res := verify(t, run{args: append(verifyArgs, token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Fatalf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
		if out.Code == nil || *out.Code != 0 {
			t.Errorf("code = %v, want 0", out.Code)
		}
		if out.KeyIndex == nil || *out.KeyIndex != 0 {
			t.Errorf("key_index = %v, want 0", out.KeyIndex)
		}
		want := claims{SDKAppID: 1400000000, UserID: "alice", Time: testTime, Expire: 3600, ExpiresAt: testTime + 3600}
		if out.Claims == nil || *out.Claims != want {
			t.Errorf("claims = %+v, want %+v", out.Claims, want)
		}
	})

	t.Run("default expire", func(t *testing.T) {
		token := gen(t, demoKey, "--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime))
		out, _ := verify(t, run{args: append(verifyArgs, token), key: demoKey})
		if out.Claims == nil || out.Claims.Expire != 15552000 {
			t.Errorf("claims = %+v, want expire 15552000", out.Claims)
		}
	})

	t.Run("privmap numeric room", func(t *testing.T) {
		token := gen(t, demoKey, append(common, "--privmap", "--room-id", "1234", "--privilege", "enter,send-audio,recv-audio")...)
		out, res := verify(t, run{args: append(verifyArgs, "--with-userbuf", token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Fatalf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
		if out.Claims == nil || out.Claims.PrivilegeMap == nil {
			t.Fatalf("claims = %+v, want a privilege map", out.Claims)
		}
		want := privilegeMap{
			Version: 0, Account: "alice", SDKAppID: 1400000000, RoomID: 1234,
			ExpireAt: testTime + 3600, Privileges: 14, PrivilegeNames: "enter,send-audio,receive-audio",
		}
		if got := *out.Claims.PrivilegeMap; got != want {
			t.Errorf("privilege_map = %+v, want %+v", got, want)
		}
	})

	t.Run("privmap string room", func(t *testing.T) {
		token := gen(t, demoKey, append(common, "--privmap", "--room-str", "room-α", "--privilege", "255")...)
		out, res := verify(t, run{args: append(verifyArgs, "--with-userbuf", token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Fatalf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
		if out.Claims == nil || out.Claims.PrivilegeMap == nil {
			t.Fatalf("claims = %+v, want a privilege map", out.Claims)
		}
		want := privilegeMap{
			Version: 1, Account: "alice", SDKAppID: 1400000000, RoomStr: "room-α",
			ExpireAt: testTime + 3600, Privileges: 255,
			PrivilegeNames: "create,enter,send-audio,receive-audio,send-video,receive-video,send-screen,receive-screen",
		}
		if got := *out.Claims.PrivilegeMap; got != want {
			t.Errorf("privilege_map = %+v, want %+v", got, want)
		}
	})

	t.Run("privmap in plain mode", func(t *testing.T) {
		token := gen(t, demoKey, append(common, "--privmap", "--room-id", "1", "--privilege", "all")...)
		out, res := verify(t, run{args: append(verifyArgs, token), key: demoKey})
		if out.Result != "unexpected-userbuf" || res.exitCode != 1 {
			t.Errorf("result %q, exit status %d, want unexpected-userbuf and 1", out.Result, res.exitCode)
		}
		if out.Code == nil || *out.Code != 70003 {
			t.Errorf("code = %v, want 70003", out.Code)
		}
		if out.KeyIndex == nil || *out.KeyIndex != 0 {
			t.Errorf("key_index = %v, want 0 because the signature matched", out.KeyIndex)
		}
	})

	t.Run("userbuf", func(t *testing.T) {
		token := gen(t, demoKey, append(common, "--userbuf-b64", "aGVsbG8gd29ybGQ=")...)
		out, res := verify(t, run{args: append(verifyArgs, "--with-userbuf", "--expect-userbuf-b64", "aGVsbG8gd29ybGQ=", token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Fatalf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
		if out.Claims == nil || out.Claims.UserBuf == nil || *out.Claims.UserBuf != "aGVsbG8gd29ybGQ=" {
			t.Errorf("claims = %+v, want userbuf_b64 aGVsbG8gd29ybGQ=", out.Claims)
		}
		if out.Claims != nil && (out.Claims.PrivilegeMap != nil || out.Claims.PrivilegeMapError == "") {
			t.Errorf("claims = %+v, want no privilege map and a privilege_map_error", out.Claims)
		}

		out, res = verify(t, run{args: append(verifyArgs, "--with-userbuf", "--expect-userbuf-b64", "b3RoZXI=", token), key: demoKey})
		if out.Result != "userbuf-mismatch" || res.exitCode != 1 {
			t.Errorf("with another expected userbuf: result %q, exit status %d, want userbuf-mismatch and 1", out.Result, res.exitCode)
		}
	})

	t.Run("empty userbuf", func(t *testing.T) {
		token := gen(t, demoKey, append(common, "--userbuf-b64=")...)
		out, res := verify(t, run{args: append(verifyArgs, "--with-userbuf", token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Fatalf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
		if out.Claims == nil || out.Claims.UserBuf == nil || *out.Claims.UserBuf != "" {
			t.Errorf("claims = %+v, want an empty userbuf_b64", out.Claims)
		}
	})

	t.Run("key file", func(t *testing.T) {
		keyFile := writeKeyFile(t, demoKey+"\n")
		token := gen(t, "", append(common, "--key-file", keyFile)...)
		out, res := verify(t, run{args: append(verifyArgs, token), key: demoKey})
		if res.exitCode != 0 || out.Result != "valid" {
			t.Errorf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
		}
	})
}

func TestVerifyRejections(t *testing.T) {
	token := gen(t, demoKey, "--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime), "--expire", "3600")

	tests := []struct {
		name     string
		args     []string
		key      string
		result   string
		code     int
		keyIndex bool // whether key_index must be present
	}{
		{"expired", []string{"--now", strconv.Itoa(testTime + 3601)}, demoKey, "expired", 70001, true},
		{"expiry boundary", []string{"--now", strconv.Itoa(testTime + 3600)}, demoKey, "valid", 0, true},
		{"wrong key", []string{"--now", strconv.Itoa(testTime)}, secondKey, "invalid-signature", 70009, false},
		{"wrong userid", []string{"--now", strconv.Itoa(testTime), "--userid", "bob"}, demoKey, "identifier-mismatch", 70013, false},
		{"wrong sdkappid", []string{"--now", strconv.Itoa(testTime), "--sdkappid", "1400000001"}, demoKey, "sdkappid-mismatch", 70014, false},
		{"plain in userbuf mode", []string{"--now", strconv.Itoa(testTime), "--with-userbuf"}, demoKey, "userbuf-mismatch", 70003, true},
		{"issued in future", []string{"--now", strconv.Itoa(testTime - 600), "--max-skew", "5m"}, demoKey, "issued-in-future", 70003, true},
		{"future within skew", []string{"--now", strconv.Itoa(testTime - 60), "--max-skew", "5m"}, demoKey, "valid", 0, true},
		{"expired within skew", []string{"--now", strconv.Itoa(testTime + 3660), "--max-skew", "5m"}, demoKey, "valid", 0, true},
		{"lifetime too long", []string{"--now", strconv.Itoa(testTime), "--max-lifetime", "30m"}, demoKey, "lifetime-too-long", 70003, true},
		{"lifetime at limit", []string{"--now", strconv.Itoa(testTime), "--max-lifetime", "1h"}, demoKey, "valid", 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--sdkappid", testSDKAppID, "--userid", "alice"}, tt.args...)
			out, res := verify(t, run{args: append(args, token), key: tt.key})
			if out.Result != tt.result {
				t.Errorf("result = %q (%s), want %q", out.Result, out.Message, tt.result)
			}
			if out.Code == nil || *out.Code != tt.code {
				t.Errorf("code = %v, want %d", out.Code, tt.code)
			}
			wantExit := 1
			if tt.result == "valid" {
				wantExit = 0
			}
			if res.exitCode != wantExit {
				t.Errorf("exit status = %d, want %d", res.exitCode, wantExit)
			}
			if tt.keyIndex != (out.KeyIndex != nil) {
				t.Errorf("key_index = %v, want present: %v", out.KeyIndex, tt.keyIndex)
			}
			if out.Claims == nil || out.Claims.UserID != "alice" || out.Claims.ExpiresAt != testTime+3600 {
				t.Errorf("claims = %+v, want the decoded claims of the token", out.Claims)
			}
		})
	}

	t.Run("malformed", func(t *testing.T) {
		out, res := verify(t, run{args: []string{"--sdkappid", testSDKAppID, "--userid", "alice", "not+a+token"}, key: demoKey})
		if out.Result != "malformed" || res.exitCode != 1 {
			t.Errorf("result %q, exit status %d, want malformed and 1", out.Result, res.exitCode)
		}
		if out.Claims != nil || out.KeyIndex != nil {
			t.Errorf("claims = %+v, key_index = %v, want neither for an undecodable token", out.Claims, out.KeyIndex)
		}
	})

	t.Run("empty", func(t *testing.T) {
		out, res := verify(t, run{args: []string{"--sdkappid", testSDKAppID, "--userid", "alice", ""}, key: demoKey})
		if out.Result != "malformed" || out.Code == nil || *out.Code != 70002 || res.exitCode != 1 {
			t.Errorf("result %q, code %v, exit status %d, want malformed, 70002 and 1", out.Result, out.Code, res.exitCode)
		}
	})

	t.Run("lenient base64", func(t *testing.T) {
		standard := strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(token)
		args := []string{"--sdkappid", testSDKAppID, "--userid", "alice", "--now", strconv.Itoa(testTime)}
		out, _ := verify(t, run{args: append(args, standard), key: demoKey})
		if out.Result != "malformed" {
			t.Errorf("standard base64 without --lenient-base64: result %q, want malformed", out.Result)
		}
		out, _ = verify(t, run{args: append(args, "--lenient-base64", standard), key: demoKey})
		if out.Result != "valid" {
			t.Errorf("standard base64 with --lenient-base64: result %q, want valid", out.Result)
		}
	})
}

func TestVerifyStdin(t *testing.T) {
	token := gen(t, demoKey, "--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime))
	args := []string{"--sdkappid", testSDKAppID, "--userid", "alice", "--now", strconv.Itoa(testTime), "-"}

	for name, stdin := range map[string]string{
		"no newline": token,
		"LF":         token + "\n",
		"CRLF":       token + "\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			out, res := verify(t, run{args: args, key: demoKey, stdin: stdin})
			if out.Result != "valid" || res.exitCode != 0 {
				t.Errorf("result %q, exit status %d, want valid and 0", out.Result, res.exitCode)
			}
		})
	}

	t.Run("two newlines", func(t *testing.T) {
		// Only one line ending is removed; the verifier itself ignores CR
		// and LF inside a token, so the token still verifies.
		out, _ := verify(t, run{args: args, key: demoKey, stdin: token + "\n\n"})
		if out.Result != "valid" {
			t.Errorf("result %q, want valid", out.Result)
		}
	})

	t.Run("oversized", func(t *testing.T) {
		res := run{args: append([]string{"verify"}, args...), key: demoKey, stdin: strings.Repeat("A", 70000)}.execute(t)
		if res.exitCode != 2 || !strings.Contains(res.stderr, "standard input") {
			t.Errorf("exit status %d, stderr %q, want 2 and a message about standard input", res.exitCode, res.stderr)
		}
	})
}

func TestKeyRotation(t *testing.T) {
	// Blank lines and whitespace around the keys are ignored.
	keyFile := writeKeyFile(t, "\n  "+demoKey+"  \r\n\n\t"+secondKey+"\n\n")
	common := []string{"--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime), "--expire", "3600"}
	verifyArgs := []string{"--key-file", keyFile, "--sdkappid", testSDKAppID, "--userid", "alice"}

	tests := []struct {
		name     string
		signKey  string
		now      int
		result   string
		keyIndex int // -1 for none
	}{
		{"first key", demoKey, testTime, "valid", 0},
		{"second key", secondKey, testTime, "valid", 1},
		{"second key expired", secondKey, testTime + 3601, "expired", 1},
		{"unknown key", thirdKey, testTime, "invalid-signature", -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			token := gen(t, tt.signKey, common...)
			out, _ := verify(t, run{args: append(verifyArgs, "--now", strconv.Itoa(tt.now), token)})
			if out.Result != tt.result {
				t.Errorf("result = %q, want %q", out.Result, tt.result)
			}
			switch {
			case tt.keyIndex < 0 && out.KeyIndex != nil:
				t.Errorf("key_index = %d, want none", *out.KeyIndex)
			case tt.keyIndex >= 0 && (out.KeyIndex == nil || *out.KeyIndex != tt.keyIndex):
				t.Errorf("key_index = %v, want %d", out.KeyIndex, tt.keyIndex)
			}
		})
	}

	t.Run("key file takes precedence", func(t *testing.T) {
		token := gen(t, secondKey, common...)
		out, _ := verify(t, run{args: append(verifyArgs, "--now", strconv.Itoa(testTime), token), key: thirdKey})
		if out.Result != "valid" {
			t.Errorf("result = %q, want valid with the keys of --key-file", out.Result)
		}
	})
}

func TestDecode(t *testing.T) {
	token := gen(t, demoKey, "--sdkappid", testSDKAppID, "--userid", "alice", "--time", strconv.Itoa(testTime),
		"--expire", "3600", "--privmap", "--room-id", "42", "--privilege", "enter")

	for name, r := range map[string]run{
		"argument": {args: []string{"decode", "--now", strconv.Itoa(testTime), token}},
		"stdin":    {args: []string{"decode", "--now", strconv.Itoa(testTime), "-"}, stdin: token + "\n"},
	} {
		t.Run(name, func(t *testing.T) {
			res := r.execute(t)
			if res.exitCode != 0 {
				t.Fatalf("exit status %d, stderr: %s", res.exitCode, res.stderr)
			}
			if !strings.Contains(res.stderr, "does not verify") {
				t.Errorf("stderr = %q, want a note that the signature was not verified", res.stderr)
			}

			var out decodeOutput
			parseJSON(t, res.stdout, &out)
			if out.Verified == nil || *out.Verified {
				t.Errorf("verified = %v, want false", out.Verified)
			}
			if out.Version != "2.0" {
				t.Errorf("version = %q, want 2.0", out.Version)
			}
			if out.Expired == nil || *out.Expired {
				t.Errorf("expired = %v, want false", out.Expired)
			}
			if len(out.Signature) != 44 {
				t.Errorf("sig = %q, want 44 characters of base64", out.Signature)
			}
			if out.Claims == nil {
				t.Fatal("claims missing")
			}
			if out.Claims.SDKAppID != 1400000000 || out.Claims.UserID != "alice" || out.Claims.Time != testTime ||
				out.Claims.Expire != 3600 || out.Claims.ExpiresAt != testTime+3600 {
				t.Errorf("claims = %+v, want the issued values", out.Claims)
			}
			wantMap := privilegeMap{Account: "alice", SDKAppID: 1400000000, RoomID: 42,
				ExpireAt: testTime + 3600, Privileges: 2, PrivilegeNames: "enter"}
			if out.Claims.PrivilegeMap == nil || *out.Claims.PrivilegeMap != wantMap {
				t.Errorf("privilege_map = %+v, want %+v", out.Claims.PrivilegeMap, wantMap)
			}
		})
	}

	t.Run("expired", func(t *testing.T) {
		res := run{args: []string{"decode", "--now", strconv.Itoa(testTime + 3601), token}}.execute(t)
		var out decodeOutput
		parseJSON(t, res.stdout, &out)
		if res.exitCode != 0 || out.Expired == nil || !*out.Expired {
			t.Errorf("exit status %d, expired %v, want 0 and true", res.exitCode, out.Expired)
		}
	})

	t.Run("wrong key still decodes", func(t *testing.T) {
		other := gen(t, thirdKey, "--sdkappid", testSDKAppID, "--userid", "mallory")
		res := run{args: []string{"decode", other}}.execute(t)
		var out decodeOutput
		parseJSON(t, res.stdout, &out)
		if res.exitCode != 0 || out.Claims == nil || out.Claims.UserID != "mallory" || *out.Verified {
			t.Errorf("exit status %d, output %+v, want 0, userid mallory and verified false", res.exitCode, out)
		}
	})

	t.Run("malformed", func(t *testing.T) {
		res := run{args: []string{"decode", "eJy*broken"}}.execute(t)
		var out decodeOutput
		parseJSON(t, res.stdout, &out)
		if res.exitCode != 1 {
			t.Errorf("exit status = %d, want 1", res.exitCode)
		}
		if out.Result != "malformed" || out.Code != 70003 || out.Message == "" || out.Claims != nil {
			t.Errorf("output = %+v, want result malformed, code 70003, a message and no claims", out)
		}
		if out.Verified == nil || *out.Verified {
			t.Errorf("verified = %v, want false", out.Verified)
		}
	})
}

func TestUsageErrors(t *testing.T) {
	dir := t.TempDir()
	emptyKeyFile := writeKeyFile(t, "\n   \n\t\n")
	twoKeysOnALine := writeKeyFile(t, demoKey+" "+secondKey+"\n")
	missingFile := filepath.Join(dir, "missing.txt")

	genArgs := []string{"gen", "--sdkappid", testSDKAppID, "--userid", "alice"}
	verifyArgs := []string{"verify", "--sdkappid", testSDKAppID, "--userid", "alice"}
	// Clipped, so that each append below copies instead of sharing one
	// backing array.
	privmap := slices.Clip(append(slices.Clone(genArgs), "--privmap"))

	tests := []struct {
		name string
		args []string
		key  string
		want []string // substrings of the error, naming the flag
	}{
		{"gen missing sdkappid", []string{"gen", "--userid", "alice"}, demoKey, []string{"--sdkappid"}},
		{"gen missing userid", []string{"gen", "--sdkappid", testSDKAppID}, demoKey, []string{"--userid"}},
		{"gen sdkappid zero", []string{"gen", "--sdkappid", "0", "--userid", "alice"}, demoKey, []string{"--sdkappid", "1 to 4294967295"}},
		{"gen sdkappid too large", []string{"gen", "--sdkappid", "4294967296", "--userid", "alice"}, demoKey, []string{"--sdkappid"}},
		{"gen sdkappid hexadecimal", []string{"gen", "--sdkappid", "0x10", "--userid", "alice"}, demoKey, []string{"--sdkappid"}},
		{"verify sdkappid too large", []string{"verify", "--sdkappid", "4294967296", "--userid", "alice", "x"}, demoKey, []string{"--sdkappid"}},
		{"verify missing sdkappid", []string{"verify", "--userid", "alice", "x"}, demoKey, []string{"--sdkappid"}},
		{"verify missing userid", []string{"verify", "--sdkappid", testSDKAppID, "x"}, demoKey, []string{"--userid"}},
		{"non-numeric expire", append(genArgs, "--expire", "1d"), demoKey, []string{"--expire"}},
		{"expire too large", append(genArgs, "--expire", "9223372036854775808"), demoKey, []string{"--expire"}},
		{"negative time", append(genArgs, "--time", "-1"), demoKey, []string{"--time"}},
		{"non-numeric now", append(verifyArgs, "--now", "today", "x"), demoKey, []string{"--now"}},
		{"unknown privilege name", append(privmap, "--room-id", "1", "--privilege", "enter,fly"), demoKey, []string{"--privilege", "fly"}},
		{"room id too large", append(privmap, "--room-id", "4294967296", "--privilege", "all"), demoKey, []string{"--room-id"}},
		{"room id and room str", append(privmap, "--room-id", "1", "--room-str", "r", "--privilege", "all"), demoKey, []string{"--room-id", "--room-str"}},
		{"privmap without room", append(privmap, "--privilege", "all"), demoKey, []string{"--room-id"}},
		{"privmap without privilege", append(privmap, "--room-id", "1"), demoKey, []string{"--privilege"}},
		{"room id without privmap", append(genArgs, "--room-id", "1"), demoKey, []string{"--room-id", "--privmap"}},
		{"privmap with userbuf", append(privmap, "--room-id", "1", "--privilege", "all", "--userbuf-b64", "AA=="), demoKey, []string{"--userbuf-b64"}},
		{"invalid userbuf base64", append(genArgs, "--userbuf-b64", "not base64"), demoKey, []string{"--userbuf-b64"}},
		{"expected userbuf without mode", append(verifyArgs, "--expect-userbuf-b64", "AA==", "x"), demoKey, []string{"--expect-userbuf-b64", "--with-userbuf"}},
		{"negative skew", append(verifyArgs, "--max-skew", "-5m", "x"), demoKey, []string{"--max-skew"}},
		{"invalid lifetime", append(verifyArgs, "--max-lifetime", "1d", "x"), demoKey, []string{"--max-lifetime"}},
		{"gen missing key", genArgs, "", []string{"--key-file", "USERSIG_KEY"}},
		{"verify missing key", append(verifyArgs, "x"), "", []string{"--key-file", "USERSIG_KEY"}},
		{"two keys in USERSIG_KEY", genArgs, demoKey + "\n" + secondKey, []string{"USERSIG_KEY"}},
		{"unreadable key file", append(genArgs, "--key-file", missingFile), demoKey, []string{"--key-file", "no such file"}},
		{"key file is a directory", append(verifyArgs, "--key-file", dir, "x"), demoKey, []string{"--key-file"}},
		{"empty key file", append(genArgs, "--key-file", emptyKeyFile), demoKey, []string{"--key-file", "no secret key"}},
		{"two keys on one line", append(genArgs, "--key-file", twoKeysOnALine), demoKey, []string{"--key-file", "line 1"}},
		{"unknown flag", append(genArgs, "--bogus"), demoKey, []string{"--bogus"}},
		{"key on the command line", append(genArgs, "--key", demoKey), demoKey, []string{"--key"}},
		{"verify without token", verifyArgs, demoKey, []string{"TOKEN"}},
		{"verify with two tokens", append(verifyArgs, "a", "b"), demoKey, []string{"TOKEN"}},
		{"decode without token", []string{"decode"}, "", []string{"TOKEN"}},
		{"gen with an argument", append(genArgs, demoKey), demoKey, []string{"argument"}},
		{"unknown subcommand", []string{"sign"}, demoKey, []string{"subcommand"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res := run{args: tt.args, key: tt.key}.execute(t)
			if res.exitCode != 2 {
				t.Errorf("exit status = %d, want 2", res.exitCode)
			}
			if res.stdout != "" {
				t.Errorf("stdout = %q, want nothing", res.stdout)
			}
			if lines := strings.Split(strings.TrimSuffix(res.stderr, "\n"), "\n"); len(lines) != 1 {
				t.Errorf("stderr has %d lines, want one: %q", len(lines), res.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(res.stderr, want) {
					t.Errorf("stderr = %q, want it to contain %q", res.stderr, want)
				}
			}
			assertNoKey(t, res, demoKey, secondKey)
		})
	}
}

func TestHelp(t *testing.T) {
	tests := []struct {
		subcommand string
		want       []string // flags, units and defaults
	}{
		{"gen", []string{
			"--sdkappid", "--userid", "--expire SECONDS", "15552000", "--time UNIX", "current time",
			"--privmap", "--room-id", "--room-str", "--privilege", "--userbuf-b64", "--key-file PATH", "USERSIG_KEY",
		}},
		{"verify", []string{
			"--sdkappid", "--userid", "--now UNIX", "current time", "--with-userbuf", "--expect-userbuf-b64",
			"--max-skew DURATION", "--max-lifetime DURATION", "default 0s", "--lenient-base64", "--key-file PATH",
			"Exit status",
		}},
		{"decode", []string{"--now UNIX", "--lenient-base64", "verified", "Exit status"}},
	}
	for _, tt := range tests {
		t.Run(tt.subcommand, func(t *testing.T) {
			res := run{args: []string{tt.subcommand, "--help"}}.execute(t)
			if res.exitCode != 0 {
				t.Fatalf("exit status %d, stderr: %s", res.exitCode, res.stderr)
			}
			for _, want := range tt.want {
				if !strings.Contains(res.stdout, want) {
					t.Errorf("help does not mention %q", want)
				}
			}
		})
	}
}

// writeKeyFile writes a key file into a temporary directory of the test.
func writeKeyFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "keys.txt")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}
