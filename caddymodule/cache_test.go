package caddymodule

import (
	"fmt"
	"hash/maphash"
	"math/rand/v2"
	"net/http"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

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
	s.cacheToken(query)

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
	s.cacheToken(credentialsQuery(testAppID, testUserID, token))

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

	// The first request of a token is verified on its own and not
	// stored. The concurrent requests below are the ones that store it.
	if resp := s.get("/", credentialsQuery(testAppID, testUserID, token), nil); resp.status != http.StatusOK {
		t.Fatalf("first request: status = %d, want 200 (body %q)", resp.status, resp.body)
	}

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

func TestCacheRepeatedBadTokenVerifiesTwice(t *testing.T) {
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
			// The first request of the token is verified without
			// storing the failure, the second stores it.
			before := verifyCalls.Load()
			for range 5 {
				expectRejection(t, s.get("/", credentialsQuery(testAppID, testUserID, tc.token), nil), http.StatusUnauthorized, tc.code)
			}
			if calls := verifyCalls.Load() - before; calls != 2 {
				t.Errorf("5 requests with one bad token made %d verifications, want 2", calls)
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

// TestCacheSizesVerifications counts the verifications of one genuine
// token sent several times, through Caddy, for small cache sizes.
func TestCacheSizesVerifications(t *testing.T) {
	tests := []struct {
		name          string
		cacheSize     int
		requests      int
		verifications int64
	}{
		// Without a cache, every request verifies.
		{"disabled", 0, 3, 3},
		// A cache of one entry stores the token from its second request.
		{"one entry", 1, 5, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := startCaddy(t, fmt.Sprintf(`
	usersig {
		app %d %s
		cache_size %d
		negative_cache_size 0
	}
	reverse_proxy {backend}`, testAppID, testKey, tc.cacheSize))
			query := credentialsQuery(testAppID, testUserID, issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID}))

			before := verifyCalls.Load()
			for range tc.requests {
				if resp := s.get("/", query, nil); resp.status != http.StatusOK {
					t.Fatalf("status = %d, want 200 (body %q)", resp.status, resp.body)
				}
			}
			if calls := verifyCalls.Load() - before; calls != tc.verifications {
				t.Errorf("%d requests made %d verifications, want %d", tc.requests, calls, tc.verifications)
			}
		})
	}
}

// TestCachedFailuresMatchLibrary checks that the failures defined for the
// checks of a genuine token carry the code, verdict and reason that the
// usersig package gives for the same check. The negative cache returns the
// two mismatches without calling the verifier, and other tests compare
// responses with the expired and issued-in-future failures.
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

// TestCacheHitMatchesVerify checks that a stored token gives, for each
// request and time, the result that verifying it again gives. The cache
// takes the time from the request, so the test moves the clock without
// waiting.
func TestCacheHitMatchesVerify(t *testing.T) {
	v, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{MaxSkew: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now().Truncate(time.Second)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: issued, Expire: 3600})
	own := usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: issued, Mode: usersig.ModeAny}

	tests := []struct {
		name     string
		sdkAppID uint64
		userID   string
		now      time.Time
		want     *failure // nil for success
	}{
		{"genuine", testAppID, testUserID, issued, nil},
		{"within skew after expiry", testAppID, testUserID, issued.Add(3600*time.Second + time.Minute), nil},
		{"other SDKAppID", otherAppID, testUserID, issued, failSDKAppIDMismatch},
		{"other UserID", testAppID, "bob", issued, failUserIDMismatch},
		{"expired", testAppID, testUserID, issued.Add(3600*time.Second + time.Minute + time.Second), failExpired},
		{"clock moved back", testAppID, testUserID, issued.Add(-time.Minute - time.Second), failIssuedInFuture},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			c := newDefaultCache(t)
			admitAndStore(t, c, v, token, own)
			req := usersig.Request{SDKAppID: tc.sdkAppID, UserID: tc.userID, Now: tc.now, Mode: usersig.ModeAny}

			claims, cached, outcome := c.verify(v, token, &req)
			if outcome != cacheHit {
				t.Errorf("outcome = %d, want a hit (%d)", outcome, cacheHit)
			}
			freshClaims, err := v.Verify(token, req)
			var uncached *failure
			if err != nil {
				uncached = failureFromError(err)
			}

			switch {
			case tc.want == nil:
				if cached != nil || uncached != nil {
					t.Fatalf("cached failure %v, uncached failure %v, want success", cached, uncached)
				}
				if claims.UserID != freshClaims.UserID || claims.SDKAppID != freshClaims.SDKAppID ||
					claims.Time != freshClaims.Time || claims.Expire != freshClaims.Expire {
					t.Errorf("cached claims %+v differ from verified claims %+v", claims, freshClaims)
				}
			case cached == nil || uncached == nil:
				t.Fatalf("cached failure %v, uncached failure %v, want %v from both", cached, uncached, tc.want)
			default:
				if *cached != *uncached {
					t.Errorf("cached failure %+v differs from uncached %+v", *cached, *uncached)
				}
				if *cached != *tc.want {
					t.Errorf("cached failure %+v, want %+v", *cached, *tc.want)
				}
			}
		})
	}
}

// TestCacheDropsExpiredTokenForOtherIdentity checks that a hit on an
// expired token drops the entry even when the request claims another
// UserID, and so gets the mismatch rather than the expiry.
func TestCacheDropsExpiredTokenForOtherIdentity(t *testing.T) {
	v, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{MaxSkew: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	issued := time.Now().Truncate(time.Second)
	token := issue(t, testKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: issued, Expire: 60})
	c := newDefaultCache(t)
	admitAndStore(t, c, v, token, usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: issued, Mode: usersig.ModeAny})

	later := issued.Add(time.Hour)
	_, fail, outcome := c.verify(v, token, &usersig.Request{SDKAppID: testAppID, UserID: "bob", Now: later, Mode: usersig.ModeAny})
	if outcome != cacheHit {
		t.Errorf("request for another UserID: outcome = %d, want a hit (%d)", outcome, cacheHit)
	}
	if fail == nil || *fail != *failUserIDMismatch {
		t.Errorf("request for another UserID: failure = %v, want %v", fail, failUserIDMismatch)
	}
	if n := c.claims.len(); n != 0 {
		t.Errorf("cache holds %d entries after the expired hit, want 0", n)
	}

	before := verifyCalls.Load()
	_, fail, outcome = c.verify(v, token, &usersig.Request{SDKAppID: testAppID, UserID: testUserID, Now: later, Mode: usersig.ModeAny})
	if outcome != cacheMiss {
		t.Errorf("request after the drop: outcome = %d, want a miss (%d)", outcome, cacheMiss)
	}
	if fail == nil || fail.code != usersig.CodeExpired {
		t.Errorf("request after the drop: failure = %v, want code %d", fail, usersig.CodeExpired)
	}
	if calls := verifyCalls.Load() - before; calls != 1 {
		t.Errorf("request after the drop made %d verifications, want 1", calls)
	}
}

// cacheFixture is a verifier with genuine tokens issued under its key,
// each for its own UserID, and the requests that they verify for.
type cacheFixture struct {
	verifier *usersig.Verifier
	tokens   []string
	requests []usersig.Request
}

// newCacheFixture issues n tokens for the UserIDs user000000, user000001
// and so on. Issuing takes about 8 µs a token.
func newCacheFixture(tb testing.TB, n int) *cacheFixture {
	tb.Helper()
	v, err := usersig.NewVerifier([]string{testKey}, usersig.Policy{MaxSkew: defaultClockSkew})
	if err != nil {
		tb.Fatal(err)
	}
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		tb.Fatal(err)
	}

	now := time.Now()
	f := &cacheFixture{verifier: v, tokens: make([]string, n), requests: make([]usersig.Request, n)}
	for i := range n {
		userID := fmt.Sprintf("user%06d", i)
		token, err := signer.Issue(usersig.Params{SDKAppID: testAppID, UserID: userID, Time: now, Expire: testLifetime})
		if err != nil {
			tb.Fatal(err)
		}
		f.tokens[i] = token
		f.requests[i] = usersig.Request{SDKAppID: testAppID, UserID: userID, Now: now, Mode: usersig.ModeAny}
	}
	return f
}

// newDefaultCache returns a cache of the default sizes.
func newDefaultCache(tb testing.TB) *verifyCache {
	tb.Helper()
	c, err := newVerifyCache(defaultCacheSize, defaultNegativeCacheSize, defaultNegativeCacheTTL)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

// fill sends every token of f through c twice, so that the cache holds
// them all.
func (f *cacheFixture) fill(tb testing.TB, c *verifyCache) {
	tb.Helper()
	for i, token := range f.tokens {
		admitAndStore(tb, c, f.verifier, token, f.requests[i])
	}
}

// admitAndStore sends a genuine token through c as a client's first two
// requests: the first only marks the token in the doorkeeper, and the
// second stores its claims. The first must be a miss. The second is a
// hit instead when the doorkeeper took the token for one seen before,
// which happens to a few of many tokens.
func admitAndStore(tb testing.TB, c *verifyCache, v *usersig.Verifier, token string, req usersig.Request) {
	tb.Helper()
	if _, fail, outcome := c.verify(v, token, &req); fail != nil || outcome != cacheMiss {
		tb.Fatalf("first request of a new token: failure %v and outcome %d, want success and a miss", fail, outcome)
	}
	if _, fail, _ := c.verify(v, token, &req); fail != nil {
		tb.Fatalf("second request of a new token: %v", fail)
	}
	if _, ok := c.claims.get(c.key(token)); !ok {
		tb.Fatal("the token is not stored after its second request")
	}
}

func TestShardedCacheSizes(t *testing.T) {
	tests := []struct {
		size   int
		shards int
	}{
		{1, 1},
		{127, 1},
		{128, 2},
		{1000, 8},
		{4096, 64},
		{defaultCacheSize, 64},
		{100_000, 64},
	}
	for _, tc := range tests {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			s, err := newShardedCache[int](tc.size)
			if err != nil {
				t.Fatal(err)
			}
			if len(s.shards) != tc.shards {
				t.Errorf("%d shards, want %d", len(s.shards), tc.shards)
			}

			// Fill the cache twice over with random keys: it must end
			// up holding exactly size entries.
			names := make([]string, 2*tc.size)
			for i := range names {
				names[i] = strconv.Itoa(i)
			}
			for i, key := range keysOf(names...) {
				s.add(key, i)
			}
			if n := s.len(); n != tc.size {
				t.Errorf("after %d adds the cache holds %d entries, want %d", 2*tc.size, n, tc.size)
			}
		})
	}
}

// keysOf returns the cache keys of names under new random seeds.
func keysOf(names ...string) []tokenKey {
	c := &verifyCache{seeds: [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()}}
	keys := make([]tokenKey, len(names))
	for i, name := range names {
		keys[i] = c.key(name)
	}
	return keys
}

// getString returns the value stored under key, or "" when there is none.
func getString(s *shardedCache[string], key tokenKey) string {
	if v, ok := s.get(key); ok {
		return *v
	}
	return ""
}

func TestShardedCacheEvictsUnusedEntry(t *testing.T) {
	s, err := newShardedCache[string](3)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysOf("a", "b", "c", "d")
	a, b, third, fourth := keys[0], keys[1], keys[2], keys[3]

	s.add(a, "a")
	s.add(b, "b")
	s.add(third, "c")
	if got := getString(s, a); got != "a" {
		t.Fatalf("get(a) = %q after three adds, want \"a\"", got)
	}
	if got := getString(s, third); got != "c" {
		t.Fatalf("get(c) = %q after three adds, want \"c\"", got)
	}

	// b is the only entry not looked up since it was stored.
	s.add(fourth, "d")
	if got := getString(s, b); got != "" {
		t.Errorf("get(b) = %q, want it evicted", got)
	}
	for _, tc := range []struct {
		key  tokenKey
		want string
	}{{a, "a"}, {third, "c"}, {fourth, "d"}} {
		if got := getString(s, tc.key); got != tc.want {
			t.Errorf("get(%s) = %q, want %q", tc.want, got, tc.want)
		}
	}
	if n := s.len(); n != 3 {
		t.Errorf("len = %d, want 3", n)
	}
}

func TestShardedCacheRemoveFreesSlot(t *testing.T) {
	s, err := newShardedCache[string](2)
	if err != nil {
		t.Fatal(err)
	}
	keys := keysOf("a", "b", "c")
	a, b, third := keys[0], keys[1], keys[2]

	s.add(a, "a")
	s.add(b, "b")
	s.remove(a)
	if got := getString(s, a); got != "" {
		t.Errorf("get(a) = %q after remove, want a miss", got)
	}

	// The removed entry's slot takes the new entry, so nothing is evicted.
	s.add(third, "c")
	if got := getString(s, b); got != "b" {
		t.Errorf("get(b) = %q, want \"b\": the free slot should have been used", got)
	}
	if got := getString(s, third); got != "c" {
		t.Errorf("get(c) = %q, want \"c\"", got)
	}

	s.purge()
	if n := s.len(); n != 0 {
		t.Errorf("len = %d after purge, want 0", n)
	}
	s.add(a, "a again")
	if got := getString(s, a); got != "a again" {
		t.Errorf("get(a) = %q after purge and add, want \"a again\"", got)
	}
}

// TestShardedCacheComparesWholeKey checks that two keys that differ only
// in hi, or only in lo, are distinguished and can both be stored.
func TestShardedCacheComparesWholeKey(t *testing.T) {
	s, err := newShardedCache[string](10)
	if err != nil {
		t.Fatal(err)
	}
	stored := tokenKey{hi: 42, lo: 1}
	others := []tokenKey{{hi: 42, lo: 2}, {hi: 43, lo: 1}}

	s.add(stored, "stored")
	for _, other := range others {
		if got := getString(s, other); got != "" {
			t.Errorf("get(%v) returned %q, want a miss", other, got)
		}
		s.remove(other)
		if got := getString(s, stored); got != "stored" {
			t.Errorf("after remove(%v), get = %q, want \"stored\"", other, got)
		}
	}

	for i, other := range others {
		s.add(other, "other"+strconv.Itoa(i))
	}
	if got := getString(s, stored); got != "stored" {
		t.Errorf("get(stored) = %q after adding the other keys, want \"stored\"", got)
	}
	for i, other := range others {
		if got, want := getString(s, other), "other"+strconv.Itoa(i); got != want {
			t.Errorf("get(%v) = %q, want %q", other, got, want)
		}
	}
	if n := s.len(); n != 3 {
		t.Errorf("len = %d, want 3", n)
	}
}

// TestShardedCacheTableChurn adds, looks up and removes entries many
// times the size of the cache, so that tombstones fill the tables and
// force rebuilds. After each step it checks that every stored key is found
// with its own value and that removed keys are not. Keys share their low
// bits so that probe sequences overlap.
func TestShardedCacheTableChurn(t *testing.T) {
	const size = 64 // one shard
	s, err := newShardedCache[uint64](size)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	key := func(n uint64) tokenKey { return tokenKey{hi: n * 0x9e3779b97f4a7c15, lo: n % 16} }
	stored := map[uint64]bool{}
	for step := range 20 * size {
		n := uint64(rng.IntN(4 * size))
		switch {
		case rng.IntN(3) == 0:
			s.remove(key(n))
			delete(stored, n)
		case len(stored) < size:
			// While the shard has room, nothing is evicted.
			if got := *s.add(key(n), n); got != n {
				t.Fatalf("step %d: add returned %d, want %d", step, got, n)
			}
			stored[n] = true
		}
		for m := range uint64(4 * size) {
			v, ok := s.get(key(m))
			if ok != stored[m] || (ok && *v != m) {
				t.Fatalf("step %d: get(%d) = %v, %v; want stored = %v", step, m, ok, v, stored[m])
			}
		}
		if n := s.len(); n != len(stored) {
			t.Fatalf("step %d: len = %d, want %d", step, n, len(stored))
		}
	}
}

// TestShardedCacheTableGrows checks that the tables of an empty cache
// are small, since the garbage collector reads them on every cycle, and
// that they grow with the entries to twice the cache's size at most.
func TestShardedCacheTableGrows(t *testing.T) {
	s, err := newShardedCache[int](100_000)
	if err != nil {
		t.Fatal(err)
	}
	slots := func() (total int) {
		for i := range s.shards {
			total += len(s.shards[i].table.Load().slots)
		}
		return total
	}
	if got, want := slots(), len(s.shards)*minSlots; got != want {
		t.Errorf("an empty cache has %d table slots, want %d", got, want)
	}
	names := make([]string, 300_000)
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	for i, key := range keysOf(names...) {
		s.add(key, i)
		if i == 999 {
			// 1,000 entries spread over 64 shards: about 16 each, in
			// tables of 32 or 64 slots.
			if got := slots(); got > 64*64 {
				t.Errorf("after 1,000 adds the tables have %d slots, want at most %d", got, 64*64)
			}
		}
	}
	for i := range s.shards {
		sh := &s.shards[i]
		if n := len(sh.table.Load().slots); n != sh.maxSlots || n > 4*sh.size {
			t.Errorf("shard %d: %d slots for %d entries, want %d", i, n, sh.size, sh.maxSlots)
		}
	}
	if n := s.len(); n != 100_000 {
		t.Errorf("len = %d, want 100000", n)
	}
}

// TestShardedCacheEvictionIsBounded checks that an eviction ends after
// two turns of the ring even when lookups set every flag again at each
// step of the hand, as lookups without a lock can while it turns.
func TestShardedCacheEvictionIsBounded(t *testing.T) {
	const size = 8
	s, err := newShardedCache[int](size)
	if err != nil {
		t.Fatal(err)
	}
	keys := make([]tokenKey, size)
	for i := range keys {
		keys[i] = tokenKey{hi: uint64(i + 1), lo: uint64(i + 1)}
		s.add(keys[i], i)
	}
	steps := 0
	hook := func() {
		steps++
		for _, key := range keys {
			s.get(key)
		}
	}
	testHookEvictStep.Store(&hook)
	t.Cleanup(func() { testHookEvictStep.Store(nil) })

	s.add(tokenKey{hi: 100, lo: 100}, 100)
	if limit := 2*size + 1; steps > limit {
		t.Errorf("the eviction took %d steps, want at most %d", steps, limit)
	}
	if n := s.len(); n != size {
		t.Errorf("len = %d, want %d", n, size)
	}
	if got, ok := s.get(tokenKey{hi: 100, lo: 100}); !ok || *got != 100 {
		t.Errorf("the new entry was not stored")
	}
}

// TestShardedCacheConcurrentLookups runs lookups without a lock against
// writers that add, evict and remove entries, and checks that a lookup
// never returns the value of another key. Run with -race, it also checks
// that lookups and writers share no memory without synchronization.
func TestShardedCacheConcurrentLookups(t *testing.T) {
	s, err := newShardedCache[uint64](256)
	if err != nil {
		t.Fatal(err)
	}
	key := func(n uint64) tokenKey { return tokenKey{hi: n * 0x9e3779b97f4a7c15, lo: n % 64} }
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for w := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(w), 5))
			for i := 0; i < 20000; i++ {
				n := uint64(rng.IntN(1024))
				if rng.IntN(4) == 0 {
					s.remove(key(n))
				} else {
					s.add(key(n), n)
				}
			}
		})
	}
	var wrong atomic.Int64
	for r := range 2 {
		wg.Go(func() {
			rng := rand.New(rand.NewPCG(uint64(r), 6))
			lookUpUntil(stop, s, key, func() uint64 { return uint64(rng.IntN(1024)) }, &wrong)
		})
	}
	time.Sleep(200 * time.Millisecond)
	close(stop)
	wg.Wait()
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d lookups returned the value of another key", n)
	}
	if n := s.len(); n > 256 {
		t.Errorf("len = %d, want at most 256", n)
	}
}

// lookUpUntil looks up the keys that next returns until stop is closed,
// and counts in wrong the lookups that return the value of another key.
func lookUpUntil(stop <-chan struct{}, s *shardedCache[uint64], key func(uint64) tokenKey, next func() uint64, wrong *atomic.Int64) {
	for {
		select {
		case <-stop:
			return
		default:
		}
		n := next()
		if v, ok := s.get(key(n)); ok && *v != n {
			wrong.Add(1)
		}
	}
}

// TestCacheDoesNotPinRequest checks that a stored entry keeps no part of
// the strings of the request that stored it.
func TestCacheDoesNotPinRequest(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := newDefaultCache(t)
	token, req := f.tokens[0], f.requests[0]
	uri := "/?identifier=" + req.UserID + "&usersig=" + token
	req.UserID = uri[len("/?identifier=") : len("/?identifier=")+len(req.UserID)]

	admitAndStore(t, c, f.verifier, uri[len(uri)-len(token):], req)
	claims, _ := c.claims.get(c.key(token))
	start := uintptr(unsafe.Pointer(unsafe.StringData(uri)))
	userID := uintptr(unsafe.Pointer(unsafe.StringData(claims.UserID)))
	if userID >= start && userID < start+uintptr(len(uri)) {
		t.Error("the stored UserID points into the request string")
	}
}

// memoryEntries is the number of cached tokens whose heap the memory test
// and benchmark measure, and maxMemoryBytes the heap they may hold.
const (
	memoryEntries  = 100_000
	maxMemoryBytes = 40 << 20
)

// measureCacheHeap fills a new cache of memoryEntries entries with the
// tokens of f and returns the growth of the live heap. Each request is
// built as the gateway receives it, with the token and the UserID as
// substrings of one request-URI string. An entry that kept either of them
// would keep the whole URI alive, and the growth would show it.
func measureCacheHeap(tb testing.TB, f *cacheFixture) uint64 {
	tb.Helper()
	before := liveHeap()
	c, err := newVerifyCache(memoryEntries, defaultNegativeCacheSize, defaultNegativeCacheTTL)
	if err != nil {
		tb.Fatal(err)
	}

	for i, token := range f.tokens {
		req := f.requests[i]
		prefix := fmt.Sprintf("/v4/rooms?sdkappid=%d&identifier=", req.SDKAppID)
		uri := prefix + req.UserID + "&usersig=" + token
		req.UserID = uri[len(prefix) : len(prefix)+len(req.UserID)]
		admitAndStore(tb, c, f.verifier, uri[len(uri)-len(token):], req)
	}
	// Each shard holds an equal part of the entries, and the keys do not
	// fall on the shards quite evenly, so the fullest shards evict about
	// 1 % of the tokens.
	if n := c.claims.len(); n < memoryEntries*95/100 {
		tb.Fatalf("the cache holds %d entries, want at least 95 %% of %d", n, memoryEntries)
	}

	after := liveHeap()
	// The tokens of f are counted in before, so they must stay live.
	runtime.KeepAlive(c)
	runtime.KeepAlive(f)
	if after < before {
		return 0
	}
	return after - before
}

// liveHeap returns the bytes of live heap objects after a full collection.
// Two collections run, because sync.Pool keeps its objects through one.
func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var stats runtime.MemStats
	runtime.ReadMemStats(&stats)
	return stats.HeapAlloc
}

func TestCacheMemoryBound(t *testing.T) {
	if testing.Short() {
		t.Skip("issues 100,000 tokens, about a second of work")
	}
	f := newCacheFixture(t, memoryEntries)
	heapBytes := measureCacheHeap(t, f)
	t.Logf("%d cached entries hold %.1f MB of heap, %d bytes an entry", memoryEntries, float64(heapBytes)/(1<<20), heapBytes/memoryEntries)
	if heapBytes > maxMemoryBytes {
		t.Errorf("%d cached entries hold %d bytes of heap, want at most %d", memoryEntries, heapBytes, maxMemoryBytes)
	}
}
