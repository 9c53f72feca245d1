package caddymodule

import (
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// newTestLockout returns a lockout of c with the defaults filled in.
func newTestLockout(t *testing.T, c LockoutConfig) *lockout {
	t.Helper()
	if err := c.validate(); err != nil {
		t.Fatal(err)
	}
	c.provision()
	l, err := newLockout(&c)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

func TestLockoutAfterMaxFailures(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 3, Window: caddy.Duration(time.Minute), Duration: caddy.Duration(5 * time.Minute)})
	start := time.Unix(1733300000, 0)

	for i := range 2 {
		l.failed("192.0.2.1", testAppID, "alice", start.Add(time.Duration(i)*time.Second))
		if blocked, _ := l.blocked("192.0.2.1", testAppID, "alice", start.Add(time.Duration(i)*time.Second)); blocked {
			t.Fatalf("blocked after %d failures, want 3", i+1)
		}
	}
	third := start.Add(2 * time.Second)
	l.failed("192.0.2.1", testAppID, "alice", third)

	blocked, wait := l.blocked("192.0.2.1", testAppID, "alice", third)
	if !blocked || wait != 5*time.Minute {
		t.Errorf("after 3 failures: blocked = %v for %s, want true for 5m", blocked, wait)
	}
	if blocked, _ := l.blocked("192.0.2.2", testAppID, "alice", third); blocked {
		t.Error("another address is blocked, and by ip counts addresses only")
	}
	if blocked, wait := l.blocked("192.0.2.1", testAppID, "alice", third.Add(5*time.Minute-time.Nanosecond)); !blocked || wait != time.Nanosecond {
		t.Errorf("just before the end: blocked = %v for %s, want true for 1ns", blocked, wait)
	}
	if blocked, _ := l.blocked("192.0.2.1", testAppID, "alice", third.Add(5*time.Minute)); blocked {
		t.Error("still blocked when the duration has passed")
	}

	// After the lockout, counting starts again from zero.
	after := third.Add(5 * time.Minute)
	l.failed("192.0.2.1", testAppID, "alice", after)
	if blocked, _ := l.blocked("192.0.2.1", testAppID, "alice", after); blocked {
		t.Error("blocked again after one failure following a lockout")
	}
}

func TestLockoutCountsWithinWindow(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 3, Window: caddy.Duration(time.Minute)})
	start := time.Unix(1733300000, 0)

	// Failures 40s apart: no three fall within one window of a minute.
	for i := range 6 {
		now := start.Add(time.Duration(i) * 40 * time.Second)
		l.failed("192.0.2.1", 0, "", now)
		if blocked, _ := l.blocked("192.0.2.1", 0, "", now); blocked {
			t.Fatalf("blocked after failure %d, but no three fall within one minute", i+1)
		}
	}
}

func TestLockoutIgnoresFailuresDuringLockout(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 2, Window: caddy.Duration(time.Hour), Duration: caddy.Duration(time.Minute)})
	start := time.Unix(1733300000, 0)
	l.failed("192.0.2.1", 0, "", start)
	l.failed("192.0.2.1", 0, "", start)
	for i := range 10 {
		l.failed("192.0.2.1", 0, "", start.Add(time.Duration(i)*time.Second))
	}
	if blocked, _ := l.blocked("192.0.2.1", 0, "", start.Add(time.Minute)); blocked {
		t.Error("failures during the lockout extended it")
	}
}

func TestLockoutByUserID(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 2, By: lockoutByUserID})
	now := time.Unix(1733300000, 0)
	l.failed("192.0.2.1", testAppID, "alice", now)
	l.failed("192.0.2.2", testAppID, "alice", now)

	if blocked, _ := l.blocked("192.0.2.3", testAppID, "alice", now); !blocked {
		t.Error("alice is not blocked after failures from two addresses")
	}
	if blocked, _ := l.blocked("192.0.2.1", testAppID, "bob", now); blocked {
		t.Error("bob is blocked, and by userid counts UserIDs only")
	}
	if blocked, _ := l.blocked("192.0.2.1", otherAppID, "alice", now); blocked {
		t.Error("alice of another app is blocked")
	}

	// A very long UserID is kept as its hash, and still counted.
	long := strings.Repeat("x", 10000)
	l.failed("192.0.2.1", testAppID, long, now)
	l.failed("192.0.2.1", testAppID, long, now)
	if blocked, _ := l.blocked("192.0.2.1", testAppID, long, now); !blocked {
		t.Error("a long UserID is not blocked")
	}
	if blocked, _ := l.blocked("192.0.2.1", testAppID, long+"y", now); blocked {
		t.Error("another long UserID is blocked")
	}
}

func TestLockoutByBoth(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 2, By: lockoutByBoth})
	now := time.Unix(1733300000, 0)
	l.failed("192.0.2.1", testAppID, "alice", now)
	l.failed("192.0.2.1", testAppID, "bob", now)
	if blocked, _ := l.blocked("192.0.2.1", testAppID, "carol", now); !blocked {
		t.Error("the address is not blocked after two failures")
	}
	if blocked, _ := l.blocked("192.0.2.9", testAppID, "alice", now); blocked {
		t.Error("alice is blocked after one failure")
	}
	l.failed("192.0.2.7", testAppID, "alice", now)
	if blocked, _ := l.blocked("192.0.2.9", testAppID, "alice", now); !blocked {
		t.Error("alice is not blocked after two failures")
	}
	addresses, users := l.tableLen()
	if addresses != 2 || users != 2 {
		t.Errorf("tables hold %d addresses and %d users, want 2 and 2", addresses, users)
	}
}

func TestLockoutTablesAreBounded(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{MaxFailures: 1, By: lockoutByBoth, TableSize: 100})
	now := time.Unix(1733300000, 0)
	for i := range 1000 {
		l.failed("10.0."+strconv.Itoa(i/256)+"."+strconv.Itoa(i%256), testAppID, "user"+strconv.Itoa(i), now)
	}
	addresses, users := l.tableLen()
	if addresses != 100 || users != 100 {
		t.Errorf("tables hold %d addresses and %d users, want 100 each", addresses, users)
	}
	// The oldest entries were evicted, lockout included: the trade-off of
	// a bounded table.
	if blocked, _ := l.blocked("10.0.0.0", 0, "", now); blocked {
		t.Error("the first address is still locked out after 999 newer ones")
	}
	if blocked, _ := l.blocked("10.0.3.231", 0, "", now); !blocked {
		t.Error("the last address is not locked out")
	}
}

func TestLockoutAddress(t *testing.T) {
	tests := []struct{ ip, want string }{
		{"192.0.2.1", "192.0.2.1"},
		{"2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"},
		{"2001:db8:1:2::ffff", "2001:db8:1:2::/64"},
		{"2001:db8:1:3::1", "2001:db8:1:3::/64"},
		{"::ffff:192.0.2.1", "192.0.2.1"},
		{"fe80::1%eth0", "fe80::/64"},
		{"not-an-address:x", "not-an-address:x"},
	}
	for _, tc := range tests {
		if got := lockoutAddress(tc.ip); got != tc.want {
			t.Errorf("lockoutAddress(%q) = %q, want %q", tc.ip, got, tc.want)
		}
	}
}

func TestLockoutBlockedDoesNotAllocate(t *testing.T) {
	l := newTestLockout(t, LockoutConfig{By: lockoutByBoth})
	now := time.Unix(1733300000, 0)
	l.failed("192.0.2.1", testAppID, "alice", now)
	ip, userID := strings.Clone("192.0.2.1"), strings.Clone("alice")
	allocs := testing.AllocsPerRun(1000, func() {
		l.blocked(ip, testAppID, userID, now)
	})
	if allocs != 0 {
		t.Errorf("blocked allocates %.1f times per call, want 0", allocs)
	}
}

func TestRetryAfter(t *testing.T) {
	tests := []struct {
		wait time.Duration
		want string
	}{
		{time.Nanosecond, "1"},
		{time.Second, "1"},
		{time.Second + time.Nanosecond, "2"},
		{5 * time.Minute, "300"},
	}
	for _, tc := range tests {
		if got := retryAfter(tc.wait); got != tc.want {
			t.Errorf("retryAfter(%s) = %q, want %q", tc.wait, got, tc.want)
		}
	}
}

func TestCountsTowardLockout(t *testing.T) {
	tests := []struct {
		fail *failure
		want bool
	}{
		{failConflicting, true},
		{failUnknownAppID, true},
		{failMissingUserID, true},
		{failSDKAppIDMismatch, true},
		{failUserIDMismatch, true},
		{failExpired, false},
		{failIssuedInFuture, false},
		{failRevoked, false},
		{failLockedOut, false},
		{failPrivateMapKey, false},
		{failPlainUserSig, false},
	}
	for _, tc := range tests {
		if got := countsTowardLockout(tc.fail); got != tc.want {
			t.Errorf("countsTowardLockout(%s) = %v, want %v", tc.fail.result, got, tc.want)
		}
	}
	if !countsTowardLockout(&failure{http.StatusUnauthorized, usersig.CodeInvalidSignature, "invalid-signature", "x"}) {
		t.Error("an invalid signature does not count")
	}
}

func TestUnmarshalLockout(t *testing.T) {
	d := caddyfile.NewTestDispenser(`lockout {
		max_failures 5
		window 30s
		duration 10m
		by both
		table_size 500
	}`)
	d.Next()
	c, err := unmarshalLockout(d)
	if err != nil {
		t.Fatalf("unmarshalLockout: %v", err)
	}
	want := &LockoutConfig{MaxFailures: 5, Window: caddy.Duration(30 * time.Second), Duration: caddy.Duration(10 * time.Minute), By: "both", TableSize: 500}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("parsed %+v, want %+v", c, want)
	}

	d = caddyfile.NewTestDispenser(`lockout`)
	d.Next()
	if c, err := unmarshalLockout(d); err != nil || !reflect.DeepEqual(c, &LockoutConfig{}) {
		t.Errorf("an empty lockout = %+v, %v; want the zero config", c, err)
	}

	errors := []struct{ input, want string }{
		{"lockout {\n max_failures 0\n}", `max_failures: "0" is not a number of at least 1`},
		{"lockout {\n table_size many\n}", `table_size: "many" is not a number of at least 1`},
		{"lockout {\n window soon\n}", `window: invalid duration "soon"`},
		{"lockout {\n by subnet\n}", `by: unknown value "subnet"`},
		{"lockout {\n by ip\n by userid\n}", "by: set more than once"},
		{"lockout {\n ban 1h\n}", `unknown subdirective "ban"`},
		{"lockout 10", "wrong argument count"},
	}
	for _, tc := range errors {
		d := caddyfile.NewTestDispenser(tc.input)
		d.Next()
		_, err := unmarshalLockout(d)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("unmarshalLockout(%q) error = %v, want %q", tc.input, err, tc.want)
		}
	}
}

func TestLockoutConfigValidate(t *testing.T) {
	tests := []struct {
		config LockoutConfig
		want   string
	}{
		{LockoutConfig{MaxFailures: -1}, "lockout: max_failures -1 is negative"},
		{LockoutConfig{Window: -1}, "lockout: window -1ns is negative"},
		{LockoutConfig{Duration: -1}, "lockout: duration -1ns is negative"},
		{LockoutConfig{TableSize: -1}, "lockout: table_size -1 is negative"},
		{LockoutConfig{By: "subnet"}, `lockout: by: unknown value "subnet"`},
	}
	for _, tc := range tests {
		err := tc.config.validate()
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("validate(%+v) = %v, want %q", tc.config, err, tc.want)
		}
	}
}

// trustLocalProxies makes Caddy take the client address from
// X-Forwarded-For, so that one test client can act as many addresses.
const trustLocalProxies = "\tservers {\n\t\ttrusted_proxies static 127.0.0.1/8\n\t}"

// startCaddyWithGlobals is startCaddy with more global options.
func startCaddyWithGlobals(t *testing.T, globals, site string) *testServer {
	t.Helper()
	s := newTestServer(t)
	text := strings.Replace(s.caddyfile(site), "{\n", "{\n"+globals+"\n", 1)
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(text), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		t.Fatalf("adapting the Caddyfile: %v\n%s", err, text)
	}
	s.load(cfgJSON)
	return s
}

// runningGateways returns the usersig handlers of the running config.
func runningGateways(t *testing.T) []*Handler {
	t.Helper()
	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		t.Fatalf("finding the http app: %v", err)
	}
	var found []*Handler
	var walk func(routes caddyhttp.RouteList)
	walk = func(routes caddyhttp.RouteList) {
		for _, route := range routes {
			for _, h := range route.Handlers {
				switch h := h.(type) {
				case *Handler:
					found = append(found, h)
				case *caddyhttp.Subroute:
					walk(h.Routes)
				}
			}
		}
	}
	for _, srv := range app.(*caddyhttp.App).Servers {
		walk(srv.Routes)
	}
	return found
}

// from returns a header that makes the request come from ip.
func from(ip string) http.Header {
	return http.Header{"X-Forwarded-For": {ip}}
}

func TestGatewayLockoutAfterForgedTokens(t *testing.T) {
	s := startCaddyWithGlobals(t, trustLocalProxies, fmt.Sprintf(`
	usersig {
		app %d %s
		lockout {
			max_failures 3
			window 1m
			duration 2s
		}
	}
	reverse_proxy {backend}`, testAppID, testKey))
	genuine := credentialsQuery(testAppID, testUserID, issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}))
	forged := credentialsQuery(testAppID, testUserID, issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}))
	const attacker = "203.0.113.7"

	for i := range 3 {
		resp := s.get("/", forged, from(attacker))
		if resp.status != http.StatusUnauthorized || !strings.Contains(resp.body, "70009") {
			t.Fatalf("forged token %d: response = %d %q, want 401 with 70009", i+1, resp.status, resp.body)
		}
	}

	verifications := verifyCalls.Load()
	for _, query := range []url.Values{forged, genuine} {
		resp := s.get("/", query, from(attacker))
		body := expectRejection(t, resp, http.StatusTooManyRequests, CodeLockedOut)
		if body.ErrorInfo != "too many failed attempts, retry later" {
			t.Errorf("ErrorInfo = %q, want %q", body.ErrorInfo, "too many failed attempts, retry later")
		}
		if wait, err := strconv.Atoi(resp.header.Get("Retry-After")); err != nil || wait < 1 || wait > 2 {
			t.Errorf("Retry-After = %q, want 1 or 2 seconds", resp.header.Get("Retry-After"))
		}
	}
	if n := verifyCalls.Load() - verifications; n != 0 {
		t.Errorf("%d verifications for locked-out requests, want 0", n)
	}
	if resp := s.get("/", genuine, from("203.0.113.8")); resp.status != http.StatusOK {
		t.Errorf("another address: status = %d, want 200", resp.status)
	}

	// The lockout ends after its duration.
	deadline := time.Now().Add(10 * time.Second)
	resp := s.get("/", genuine, from(attacker))
	for resp.status == http.StatusTooManyRequests && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		resp = s.get("/", genuine, from(attacker))
	}
	if resp.status != http.StatusOK {
		t.Errorf("after the lockout: status = %d, want 200 (body %q)", resp.status, resp.body)
	}
}

func TestGatewayLockoutByUserID(t *testing.T) {
	s := startCaddyWithGlobals(t, trustLocalProxies, fmt.Sprintf(`
	usersig {
		app %d %s
		lockout {
			max_failures 2
			by userid
		}
	}
	reverse_proxy {backend}`, testAppID, testKey))
	forged := credentialsQuery(testAppID, "alice", issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: "alice"}))
	expired := credentialsQuery(testAppID, "bob", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "bob", Time: time.Now().Add(-48 * time.Hour)}))

	s.get("/", forged, from("198.51.100.1"))
	s.get("/", forged, from("198.51.100.2"))
	aliceToken := credentialsQuery(testAppID, "alice", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "alice"}))
	expectRejection(t, s.get("/", aliceToken, from("198.51.100.3")), http.StatusTooManyRequests, CodeLockedOut)

	// Expired tokens are genuine, so retrying one does not lock bob out.
	for range 5 {
		expectRejection(t, s.get("/", expired, from("198.51.100.4")), http.StatusUnauthorized, usersig.CodeExpired)
	}
	bobToken := credentialsQuery(testAppID, "bob", issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: "bob"}))
	if resp := s.get("/", bobToken, from("198.51.100.4")); resp.status != http.StatusOK {
		t.Errorf("bob after retrying an expired token: status = %d, want 200", resp.status)
	}
}

// TestGatewayLockoutMemoryBounded sends forged tokens from 50,000
// addresses through a lockout whose table holds 1000.
func TestGatewayLockoutMemoryBounded(t *testing.T) {
	s := startCaddyWithGlobals(t, trustLocalProxies, fmt.Sprintf(`
	usersig {
		app %d %s
		lockout {
			max_failures 2
			table_size 1000
		}
	}
	reverse_proxy {backend}`, testAppID, testKey))
	forged := s.siteURL + "/?" + credentialsQuery(testAppID, testUserID, issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})).Encode()
	gateways := runningGateways(t)
	if len(gateways) != 1 || gateways[0].lockout == nil {
		t.Fatalf("found %d usersig handlers, want 1 with a lockout", len(gateways))
	}

	// The first address is locked out, then pushed out of the table.
	s.get("/", credentialsQuery(testAppID, testUserID, "eJyrVgrxCdYrSy1SslIy"), from("10.255.255.1"))
	s.get("/", credentialsQuery(testAppID, testUserID, "eJyrVgrxCdYrSy1SslIy"), from("10.255.255.1"))
	if blocked, _ := gateways[0].lockout.blocked("10.255.255.1", 0, "", time.Now()); !blocked {
		t.Fatal("the first address is not locked out")
	}

	const addresses = 50000
	const workers = 4
	var unexpected atomic.Int64
	var wg sync.WaitGroup
	for w := range workers {
		wg.Go(func() {
			for i := w; i < addresses; i += workers {
				req, err := http.NewRequest(http.MethodGet, forged, nil)
				if err != nil {
					unexpected.Add(1)
					continue
				}
				req.Header.Set("X-Forwarded-For", fmt.Sprintf("10.%d.%d.%d", i>>16, (i>>8)&0xff, i&0xff))
				resp, err := s.client.Do(req)
				if err != nil {
					unexpected.Add(1)
					continue
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					unexpected.Add(1)
				}
			}
		})
	}
	wg.Wait()
	if n := unexpected.Load(); n != 0 {
		t.Errorf("%d of %d requests failed or did not get 401", n, addresses)
	}

	size, _ := gateways[0].lockout.tableLen()
	if size != 1000 {
		t.Errorf("the address table holds %d entries after %d addresses, want its size, 1000", size, addresses)
	}
	if blocked, _ := gateways[0].lockout.blocked("10.255.255.1", 0, "", time.Now()); blocked {
		t.Error("the first address is still in the table after 50,000 newer ones")
	}
}

// TestProviderLockout checks the lockout of the authentication provider,
// whose rejections the authentication handler writes as 401.
func TestProviderLockout(t *testing.T) {
	s := newTestServer(t)
	s.load([]byte(fmt.Sprintf(`{
		"admin": {"listen": %q, "config": {"persist": false}},
		"logging": {"logs": {"default": {"writer": {"output": "discard"}}}},
		"apps": {"http": {"servers": {"test": {
			"listen": [%q],
			"automatic_https": {"disable": true},
			"routes": [{"handle": [
				{"handler": "authentication", "providers": {"usersig": {
					"apps": [{"sdkappid": %d, "keys": [%q]}],
					"lockout": {"max_failures": 2, "duration": "1h"}
				}}},
				{"handler": "static_response", "body": "ok"}
			]}],
			"errors": {"routes": [{"handle": [
				{"handler": "static_response", "status_code": "{http.error.status_code}", "body": "code={http.auth.usersig.error_code}"}
			]}]}
		}}}}
	}`, s.adminAddr, strings.TrimPrefix(s.siteURL, "http://"), testAppID, testKey)))
	forged := credentialsQuery(testAppID, testUserID, issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}))
	genuine := credentialsQuery(testAppID, testUserID, issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}))

	s.get("/", forged, nil)
	s.get("/", forged, nil)
	resp := s.get("/", genuine, nil)
	if resp.status != http.StatusUnauthorized || resp.body != "code=70050" {
		t.Errorf("after two failures: response = %d %q, want 401 code=70050", resp.status, resp.body)
	}
	if got := resp.header.Get("Retry-After"); got == "" {
		t.Error("no Retry-After header")
	}
}

func TestGatewayLockoutLoadErrors(t *testing.T) {
	app := `"apps":[{"sdkappid":1400000001,"keys":["k"]}]`
	tests := []struct {
		name    string
		lockout string
		want    string
	}{
		{"unknown by", `{"by":"subnet"}`, `lockout: by: unknown value "subnet"`},
		{"negative table size", `{"table_size":-1}`, "lockout: table_size -1 is negative"},
		{"negative duration", `{"duration":-1}`, "lockout: duration -1ns is negative"},
		{"unknown field", `{"ban_time":"1h"}`, `unknown field "ban_time"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			expectLoadError(t, `{"handler":"usersig",`+app+`,"lockout":`+tc.lockout+`}`, tc.want)
		})
	}
}
