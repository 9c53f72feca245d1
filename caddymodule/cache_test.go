package caddymodule

import (
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

func TestCacheHitRejectsExpiredToken(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		clock_skew 1s
	}
	reverse_proxy {backend}`, testAppID, testKey))
	issued := time.Now().Truncate(time.Second)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: issued, Expire: 1})
	query := credentialsQuery(testAppID, testUserID, token)

	if resp := s.get("/", query, nil); resp.status != http.StatusOK {
		t.Fatalf("fresh token: status = %d, want 200 (body %q)", resp.status, resp.body)
	}

	// The token is valid through issued+1s plus 1s of skew.
	time.Sleep(time.Until(issued.Add(3*time.Second + 100*time.Millisecond)))
	before := verifyCalls.Load()
	cached := expectRejection(t, s.get("/", query, nil), http.StatusUnauthorized, usersig.CodeExpired)
	if calls := verifyCalls.Load() - before; calls != 0 {
		t.Errorf("expired cache hit made %d verifications, want 0", calls)
	}

	// The hit dropped the entry, so the next request verifies again and
	// gets the same failure from the usersig package.
	uncached := expectRejection(t, s.get("/", query, nil), http.StatusUnauthorized, usersig.CodeExpired)
	if calls := verifyCalls.Load() - before; calls != 1 {
		t.Errorf("request after the expired hit made %d verifications, want 1", calls)
	}
	if cached != uncached {
		t.Errorf("cached rejection %+v differs from uncached %+v", cached, uncached)
	}
}

func TestCacheHitChecksClaimedIdentity(t *testing.T) {
	s := startCaddy(t, proxySite)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	if resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil); resp.status != http.StatusOK {
		t.Fatalf("first request: status = %d, want 200 (body %q)", resp.status, resp.body)
	}

	tests := []struct {
		name     string
		sdkAppID int
		userID   string
		code     int
	}{
		{"other UserID", testAppID, "bob", usersig.CodeIdentifierMismatch},
		{"other SDKAppID", otherAppID, testUserID, usersig.CodeSDKAppIDMismatch},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := verifyCalls.Load()
			cached := expectRejection(t, s.get("/", credentialsQuery(tc.sdkAppID, tc.userID, token), nil), http.StatusUnauthorized, tc.code)
			if calls := verifyCalls.Load() - before; calls != 0 {
				t.Errorf("cache hit made %d verifications, want 0", calls)
			}

			// A token never seen before gets its failure from the usersig
			// package, and the cached failure must be the same.
			fresh := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime + 1})
			uncached := expectRejection(t, s.get("/", credentialsQuery(tc.sdkAppID, tc.userID, fresh), nil), http.StatusUnauthorized, tc.code)
			if cached != uncached {
				t.Errorf("cached rejection %+v differs from uncached %+v", cached, uncached)
			}
		})
	}

	before := verifyCalls.Load()
	if resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil); resp.status != http.StatusOK {
		t.Errorf("genuine request after the mismatches: status = %d, want 200", resp.status)
	}
	if calls := verifyCalls.Load() - before; calls != 0 {
		t.Errorf("genuine cache hit made %d verifications, want 0", calls)
	}
}

func TestCacheConcurrentMissesVerifyOnce(t *testing.T) {
	s := startCaddy(t, proxySite)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})
	const clients = 16

	// The first verification waits until every other request is waiting
	// for it, so the requests overlap whatever the scheduling. Without the
	// single flight, each request would verify and wait on its own until
	// the bounded wait ends, and the count below would be wrong.
	var waiting atomic.Int32
	follow := func() { waiting.Add(1) }
	verify := func() {
		deadline := time.Now().Add(5 * time.Second)
		for waiting.Load() < clients-1 && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	testHookFollow.Store(&follow)
	testHookVerify.Store(&verify)
	t.Cleanup(func() {
		testHookFollow.Store(nil)
		testHookVerify.Store(nil)
	})

	before := verifyCalls.Load()
	var wg sync.WaitGroup
	statuses := make([]int, clients)
	for i := range clients {
		wg.Go(func() {
			statuses[i] = s.get("/", credentialsQuery(testAppID, testUserID, token), nil).status
		})
	}
	wg.Wait()

	if calls := verifyCalls.Load() - before; calls != 1 {
		t.Errorf("%d concurrent requests made %d verifications, want 1", clients, calls)
	}
	if got := waiting.Load(); got != clients-1 {
		t.Errorf("%d requests waited for the first verification, want %d", got, clients-1)
	}
	for i, status := range statuses {
		if status != http.StatusOK {
			t.Errorf("request %d: status = %d, want 200", i, status)
		}
	}
}

func TestCacheRepeatedBadTokenVerifiesOnce(t *testing.T) {
	s := startCaddy(t, proxySite)
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	tests := []struct {
		name  string
		token string
		code  int
	}{
		{"forged", forged, usersig.CodeInvalidSignature},
		{"malformed", "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwhWZiflZpXlQqeKU7MSCgswUJStDEwMogMiUZOamKlkZ", usersig.CodeMalformed},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			before := verifyCalls.Load()
			for range 5 {
				expectRejection(t, s.get("/", credentialsQuery(testAppID, testUserID, tc.token), nil), http.StatusUnauthorized, tc.code)
			}
			if calls := verifyCalls.Load() - before; calls != 1 {
				t.Errorf("5 requests with one bad token made %d verifications, want 1", calls)
			}
		})
	}

	// A stored bad signature must not hide the failure that another
	// claimed UserID gets, because the usersig package compares the
	// UserID first.
	before := verifyCalls.Load()
	expectRejection(t, s.get("/", credentialsQuery(testAppID, "bob", forged), nil), http.StatusUnauthorized, usersig.CodeIdentifierMismatch)
	if calls := verifyCalls.Load() - before; calls != 0 {
		t.Errorf("negative cache hit with another UserID made %d verifications, want 0", calls)
	}
}

func TestCacheDisabled(t *testing.T) {
	s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		cache_size 0
		negative_cache_size 0
	}
	reverse_proxy {backend}`, testAppID, testKey))
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID})

	before := verifyCalls.Load()
	for range 3 {
		if resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil); resp.status != http.StatusOK {
			t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
		}
	}
	if calls := verifyCalls.Load() - before; calls != 3 {
		t.Errorf("3 requests without a cache made %d verifications, want 3", calls)
	}
}

// TestCachedFailuresMatchLibrary checks that the failures the cache makes
// without calling the verifier carry the code, verdict and reason that the
// usersig package gives for the same check.
func TestCachedFailuresMatchLibrary(t *testing.T) {
	v, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{MaxSkew: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	genuine := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now})
	expired := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now.Add(-time.Hour), Expire: 60})
	future := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: now.Add(time.Hour)})

	tests := []struct {
		name  string
		token string
		req   usersig.Request
		want  *failure
	}{
		{"SDKAppID mismatch", genuine, usersig.Request{SDKAppID: otherAppID, UserID: testUserID, Now: now}, failSDKAppIDMismatch},
		{"UserID mismatch", genuine, usersig.Request{SDKAppID: testAppID, UserID: "bob", Now: now}, failUserIDMismatch},
		{"expired", expired, usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: now}, failExpired},
		{"issued in future", future, usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: now}, failIssuedInFuture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token, tc.req)
			if err == nil {
				t.Fatal("Verify accepted the token")
			}
			got := failureFromError(err)
			if *got != *tc.want {
				t.Errorf("usersig package gives %+v, the cache gives %+v", *got, *tc.want)
			}
		})
	}
}
