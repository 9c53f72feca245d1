package caddymodule

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// scrape fetches the admin API's /metrics and returns the text and the
// value of each series, keyed by the series as the text writes it, such
// as caddy_usersig_requests_total{result="allowed"}.
func (s *testServer) scrape() (string, map[string]float64) {
	s.t.Helper()
	resp, err := s.client.Get("http://" + s.adminAddr + "/metrics")
	if err != nil {
		s.t.Fatalf("scraping metrics: %v", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		s.t.Fatalf("reading metrics: %v", err)
	}
	if resp.StatusCode != http.StatusOK {
		s.t.Fatalf("GET /metrics: status %d: %s", resp.StatusCode, body)
	}

	values := make(map[string]float64)
	for line := range strings.SplitSeq(string(body), "\n") {
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		cut := strings.LastIndexByte(line, ' ')
		if cut < 0 {
			s.t.Fatalf("metrics line %q has no value", line)
		}
		value, err := strconv.ParseFloat(line[cut+1:], 64)
		if err != nil {
			s.t.Fatalf("metrics line %q: %v", line, err)
		}
		values[line[:cut]] = value
	}
	return string(body), values
}

// metricsSite has three usersig handlers: one per room route, one in
// optional mode, and one with a previous key for everything else.
var metricsSite = fmt.Sprintf(`
	handle /rooms/* {
		usersig {
			app %d %s
			require_room query:room
			require_privilege enter
		}
		respond "room"
	}
	handle /optional/* {
		usersig {
			app %d %s
			mode optional
		}
		respond "optional"
	}
	handle {
		usersig {
			app %d %s %s
		}
		respond "default"
	}`, testAppID, testKey, testAppID, testKey, testAppID, testKey, testOldKey)

func TestMetricsCountRequests(t *testing.T) {
	s := startCaddy(t, metricsSite)
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	oldKey := issue(t, testOldKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	forged := issue(t, otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	expired := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: time.Now().Add(-2 * time.Hour), Expire: 60})
	privateMapKey := issuePrivateMapKey(t, 1, usersig.PrivilegeEnterRoom)
	_, before := s.scrape()

	requests := []struct {
		path   string
		query  url.Values
		status int
	}{
		// The cache stores a token from its second request, so each
		// token's first two requests are misses.
		{"/", credentialsQuery(testAppID, testUserID, genuine), http.StatusOK},                                    // miss
		{"/", credentialsQuery(testAppID, testUserID, genuine), http.StatusOK},                                    // miss, stored
		{"/", credentialsQuery(testAppID, testUserID, genuine), http.StatusOK},                                    // hit
		{"/", credentialsQuery(testAppID, testUserID, oldKey), http.StatusOK},                                     // miss, key 1
		{"/", credentialsQuery(testAppID, testUserID, forged), http.StatusUnauthorized},                           // miss
		{"/", credentialsQuery(testAppID, testUserID, forged), http.StatusUnauthorized},                           // miss, stored
		{"/", credentialsQuery(testAppID, testUserID, forged), http.StatusUnauthorized},                           // reject_hit
		{"/", credentialsQuery(testAppID, testUserID, expired), http.StatusUnauthorized},                          // miss
		{"/", nil, http.StatusUnauthorized},                                                                       // no lookup
		{"/rooms/a", withRoom(credentialsQuery(testAppID, testUserID, privateMapKey), "2"), http.StatusForbidden}, // miss
		{"/rooms/a", withRoom(credentialsQuery(testAppID, testUserID, privateMapKey), "1"), http.StatusOK},        // miss, stored
		{"/rooms/a", withRoom(credentialsQuery(testAppID, testUserID, privateMapKey), "1"), http.StatusOK},        // hit
		{"/optional/a", nil, http.StatusOK},                                                                       // no lookup
	}
	for i, req := range requests {
		if resp := s.get(req.path, req.query, nil); resp.status != req.status {
			t.Fatalf("request %d to %s: status = %d, want %d (body %q)", i, req.path, resp.status, req.status, resp.body)
		}
	}
	text, after := s.scrape()

	want := map[string]float64{
		`caddy_usersig_requests_total{result="allowed"}`:                       6,
		`caddy_usersig_requests_total{result="denied"}`:                        6,
		`caddy_usersig_requests_total{result="passed"}`:                        1,
		`caddy_usersig_denied_total{code="70009",reason="invalid-signature"}`:  3,
		`caddy_usersig_denied_total{code="70001",reason="expired"}`:            1,
		`caddy_usersig_denied_total{code="70002",reason="missing-usersig"}`:    1,
		`caddy_usersig_denied_total{code="70003",reason="room-mismatch"}`:      1,
		`caddy_usersig_cache_lookups_total{outcome="miss"}`:                    8,
		`caddy_usersig_cache_lookups_total{outcome="hit"}`:                     2,
		`caddy_usersig_cache_lookups_total{outcome="reject_hit"}`:              1,
		`caddy_usersig_cache_lookups_total{outcome="shared"}`:                  0,
		`caddy_usersig_key_matches_total{key_index="0",sdkappid="1400000001"}`: 6,
		`caddy_usersig_key_matches_total{key_index="1",sdkappid="1400000001"}`: 1,
		`caddy_usersig_verify_duration_seconds_count`:                          8, // one per miss
		`caddy_usersig_verify_duration_seconds_bucket{le="+Inf"}`:              8,
		`caddy_usersig_lockouts_total`:                                         0,
		`caddy_usersig_revocations_total`:                                      0,
	}
	for series, delta := range want {
		got, ok := after[series]
		if !ok {
			t.Errorf("%s is missing from /metrics", series)
			continue
		}
		if got-before[series] != delta {
			t.Errorf("%s rose by %v, want %v", series, got-before[series], delta)
		}
	}

	for _, secret := range []string{testUserID, genuine, forged, privateMapKey, testKey} {
		if strings.Contains(text, secret) {
			t.Errorf("/metrics contains a UserID, token or key: %.20q", secret)
		}
	}
}

func withRoom(query url.Values, room string) url.Values {
	query.Set("room", room)
	return query
}

func TestMetricsLockoutAndRevocationCounters(t *testing.T) {
	s := startCaddy(t, proxySite)
	_, before := s.scrape()

	countLockout()
	countRevocation()
	countRevocation()

	_, after := s.scrape()
	if got := after["caddy_usersig_lockouts_total"] - before["caddy_usersig_lockouts_total"]; got != 1 {
		t.Errorf("lockouts_total rose by %v, want 1", got)
	}
	if got := after["caddy_usersig_revocations_total"] - before["caddy_usersig_revocations_total"]; got != 2 {
		t.Errorf("revocations_total rose by %v, want 2", got)
	}
}

func TestMetricsSurviveReload(t *testing.T) {
	s := startCaddy(t, metricsSite)
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	const allowed = `caddy_usersig_requests_total{result="allowed"}`
	reloaded := s.adapt(strings.Replace(metricsSite, "usersig {", "usersig {\n\t\t\trealm reloaded", 1))

	for i := range 3 {
		if resp := s.get("/", credentialsQuery(testAppID, testUserID, genuine), nil); resp.status != http.StatusOK {
			t.Fatalf("request before reload %d: status = %d, want 200", i, resp.status)
		}
		_, before := s.scrape()

		// Caddy may close admin connections while it applies a config,
		// and the old server closes its own, so neither is reused.
		adminClient := &http.Client{Transport: &http.Transport{DisableKeepAlives: true}}
		resp, err := adminClient.Post("http://"+s.adminAddr+"/load", "application/json", bytes.NewReader(reloaded))
		if err != nil {
			t.Fatalf("reload %d: %v", i, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("reload %d: admin API status %d: %s", i, resp.StatusCode, body)
		}
		s.client.CloseIdleConnections()

		text, after := s.scrape()
		for _, family := range []string{"requests_total", "denied_total", "cache_lookups_total", "key_matches_total", "lockouts_total", "revocations_total", "verify_duration_seconds"} {
			if n := strings.Count(text, "# TYPE caddy_usersig_"+family+" "); n != 1 {
				t.Errorf("reload %d: %d TYPE lines for caddy_usersig_%s, want 1", i, n, family)
			}
		}
		if after[allowed] != before[allowed] {
			t.Errorf("reload %d: %s went from %v to %v, want the count kept", i, allowed, before[allowed], after[allowed])
		}

		if resp := s.get("/", credentialsQuery(testAppID, testUserID, genuine), nil); resp.status != http.StatusOK {
			t.Fatalf("request after reload %d: status = %d, want 200", i, resp.status)
		}
		if _, next := s.scrape(); next[allowed] != after[allowed]+1 {
			t.Errorf("reload %d: %s = %v after one more request, want %v", i, allowed, next[allowed], after[allowed]+1)
		}
	}
}
