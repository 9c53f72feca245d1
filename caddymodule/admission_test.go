package caddymodule

import (
	"fmt"
	"math"
	"sync"
	"testing"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// testKeys returns n distinct token keys that look random, the same on
// every run, from the splitmix64 sequence.
func testKeys(n int) []tokenKey {
	state := uint64(0x9e3779b97f4a7c15)
	next := func() uint64 {
		state += 0x9e3779b97f4a7c15
		z := state
		z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
		z = (z ^ z>>27) * 0x94d049bb133111eb
		return z ^ z>>31
	}
	keys := make([]tokenKey, n)
	for i := range keys {
		keys[i] = tokenKey{hi: next(), lo: next()}
	}
	return keys
}

func TestDoorkeeperRemembersKeys(t *testing.T) {
	d := newDoorkeeper(1000)
	keys := testKeys(2)
	if d.seen(keys[0]) {
		t.Fatal("a new key was seen before")
	}
	if !d.seen(keys[0]) {
		t.Error("a key marked once was not seen")
	}
	if d.seen(keys[1]) {
		t.Error("another new key was seen before")
	}
}

func TestDoorkeeperForgetsAfterLimit(t *testing.T) {
	const entries = 100
	d := newDoorkeeper(entries)
	keys := testKeys(entries + 1)
	for _, key := range keys[:entries] {
		d.seen(key)
	}
	if !d.marked(keys[0]) {
		t.Fatal("the first of as many keys as entries was forgotten")
	}

	// One more new key resets the filter, and is marked after the reset.
	d.seen(keys[entries])
	if d.marked(keys[0]) {
		t.Error("a key was still marked after a reset")
	}
	if !d.marked(keys[entries]) {
		t.Error("the key that reset the filter is not marked")
	}
	if n := d.marks.Load(); n != 1 {
		t.Errorf("%d marks after the reset, want 1", n)
	}
}

func TestDoorkeeperFalsePositives(t *testing.T) {
	// 16384 entries get exactly 16 bits each, the other sizes more,
	// because the filter's size is rounded up to a power of two.
	for _, entries := range []int{1, 100, 10000, 16384, 100000} {
		d := newDoorkeeper(entries)
		keys := testKeys(entries + 10000)
		// The maximum number of marks, as many as entries.
		for _, key := range keys[:entries] {
			d.seen(key)
		}
		// Each key is checked without marking it, so that all are
		// checked against the same filter.
		seen := 0
		for _, key := range keys[entries:] {
			if d.marked(key) {
				seen++
			}
		}
		// With 16 bits a mark, at most about 12 % of the bits are set,
		// and about 1.4 % of new keys pass as seen.
		rate := float64(seen) / 10000
		t.Logf("%d entries: %.2f %% of new keys seen before", entries, 100*rate)
		if rate > 0.03 {
			t.Errorf("%d entries: %.1f %% of new keys were seen before, want at most 3 %%", entries, 100*rate)
		}
	}
}

// TestDoorkeeperConcurrent marks keys from several goroutines while the
// filter resets. Run with -race, it also checks the access to the words.
func TestDoorkeeperConcurrent(t *testing.T) {
	const entries = 64
	d := newDoorkeeper(entries)
	keys := testKeys(4096)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := g; i < len(keys); i += 4 {
				d.seen(keys[i])
			}
		})
	}
	wg.Wait()
	// Every mark past the limit tries to reset, and the last one
	// succeeds, so the count ends within the limit.
	if n := d.marks.Load(); n < 1 || n > entries {
		t.Errorf("%d marks after the goroutines ended, want 1 to %d", n, entries)
	}
}

func TestCacheStoresFromSecondRequest(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := newDefaultCache(t)
	token, req := f.tokens[0], f.requests[0]

	before := verifyCalls.Load()
	for i, want := range []struct {
		outcome cacheOutcome
		entries int
	}{
		{cacheMiss, 0}, // verified, not stored
		{cacheMiss, 1}, // verified and stored
		{cacheHit, 1},
	} {
		_, fail, outcome := c.verify(f.verifier, token, &req)
		if fail != nil || outcome != want.outcome {
			t.Fatalf("request %d: failure %v and outcome %d, want success and outcome %d", i+1, fail, outcome, want.outcome)
		}
		if n := c.claims.len(); n != want.entries {
			t.Errorf("after request %d the cache holds %d entries, want %d", i+1, n, want.entries)
		}
	}
	if calls := verifyCalls.Load() - before; calls != 2 {
		t.Errorf("3 requests made %d verifications, want 2", calls)
	}
}

func TestCacheStoresFailureFromSecondRequest(t *testing.T) {
	f := newCacheFixture(t, 1)
	c := newDefaultCache(t)
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: f.requests[0].UserID})
	for i, want := range []struct {
		outcome cacheOutcome
		entries int
	}{
		{cacheMiss, 0},
		{cacheMiss, 1},
		{cacheRejectHit, 1},
	} {
		_, fail, outcome := c.verify(f.verifier, forged, &f.requests[0])
		if fail == nil || fail.code != usersig.CodeInvalidSignature || outcome != want.outcome {
			t.Fatalf("request %d: failure %v and outcome %d, want code %d and outcome %d", i+1, fail, outcome, usersig.CodeInvalidSignature, want.outcome)
		}
		if n := c.rejects.len(); n != want.entries {
			t.Errorf("after request %d the negative cache holds %d entries, want %d", i+1, n, want.entries)
		}
	}
}

// TestCacheKeepsTokensPastOneOffTokens sends many tokens once each to
// a full cache, as a scanner or a client that issues a token for every
// request would. The cache must keep the tokens it held.
func TestCacheKeepsTokensPastOneOffTokens(t *testing.T) {
	const size, oneOff = 256, 2000
	f := newCacheFixture(t, size+oneOff)
	c, err := newVerifyCache(size, defaultNegativeCacheSize, defaultNegativeCacheTTL)
	if err != nil {
		t.Fatal(err)
	}
	for i := range size {
		admitAndStore(t, c, f.verifier, f.tokens[i], f.requests[i])
	}
	for i := size; i < size+oneOff; i++ {
		if _, fail, _ := c.verify(f.verifier, f.tokens[i], &f.requests[i]); fail != nil {
			t.Fatalf("one-off token %d: %v", i, fail)
		}
	}
	// Under 1.4 % of the one-off tokens pass the doorkeeper as seen
	// before, and each of those pushes out one entry. Without the
	// doorkeeper, none of the tokens would be left.
	stillCached := 0
	for i := range size {
		if _, ok := c.claims.get(c.key(f.tokens[i])); ok {
			stillCached++
		}
	}
	if stillCached < size*3/4 {
		t.Errorf("the cache kept %d of its %d tokens after %d one-off tokens, want at least 3/4", stillCached, size, oneOff)
	}
}

// TestCacheSizeOneStoresToken sends one genuine token three times to a
// cache of one entry without a negative cache. The token fits, so the
// third request must be a hit.
func TestCacheSizeOneStoresToken(t *testing.T) {
	f := newCacheFixture(t, 1)
	c, err := newVerifyCache(1, 0, defaultNegativeCacheTTL)
	if err != nil {
		t.Fatal(err)
	}
	before := verifyCalls.Load()
	var outcomes []cacheOutcome
	for range 3 {
		_, fail, outcome := c.verify(f.verifier, f.tokens[0], &f.requests[0])
		if fail != nil {
			t.Fatalf("genuine token: %v", fail)
		}
		outcomes = append(outcomes, outcome)
	}
	if outcomes[2] != cacheHit {
		t.Errorf("third request: outcome %d, want a hit (%d)", outcomes[2], cacheHit)
	}
	if calls := verifyCalls.Load() - before; calls != 2 {
		t.Errorf("3 requests made %d verifications, want 2", calls)
	}
}

// TestCacheRotationWithinSize sends 4 tokens in turn to a cache of 4
// entries without a negative cache. All fit, so the last round must hit.
func TestCacheRotationWithinSize(t *testing.T) {
	const size = 4
	f := newCacheFixture(t, size)
	c, err := newVerifyCache(size, 0, defaultNegativeCacheTTL)
	if err != nil {
		t.Fatal(err)
	}
	hits := 0
	for round := range 5 {
		for i := range size {
			_, fail, outcome := c.verify(f.verifier, f.tokens[i], &f.requests[i])
			if fail != nil {
				t.Fatalf("token %d: %v", i, fail)
			}
			if round == 4 && outcome == cacheHit {
				hits++
			}
		}
	}
	if hits != size {
		t.Errorf("last round: %d hits of %d tokens, want %d", hits, size, size)
	}
}

// TestCacheMaxIntSizeStoresToken uses cache_size math.MaxInt, which
// Validate accepts, with the default negative cache.
func TestCacheMaxIntSizeStoresToken(t *testing.T) {
	f := newCacheFixture(t, 1)
	c, err := newVerifyCache(math.MaxInt, defaultNegativeCacheSize, defaultNegativeCacheTTL)
	if err != nil {
		t.Fatal(err)
	}
	var outcome cacheOutcome
	for range 3 {
		var fail *failure
		_, fail, outcome = c.verify(f.verifier, f.tokens[0], &f.requests[0])
		if fail != nil {
			t.Fatalf("genuine token: %v", fail)
		}
	}
	if outcome != cacheHit {
		t.Errorf("third request: outcome %d, want a hit (%d)", outcome, cacheHit)
	}
}

// TestCacheConcurrentResultsMatchVerify sends genuine, forged, malformed
// and mismatched requests from several goroutines through a small cache,
// whose doorkeeper resets often, and compares each result with that of
// Verify on its own.
func TestCacheConcurrentResultsMatchVerify(t *testing.T) {
	f := newCacheFixture(t, 24)
	forged := issue(t, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: f.requests[0].UserID})
	tokens := append(append([]string{}, f.tokens...), forged, "not-a-token", f.tokens[0][:20])
	for _, size := range [][2]int{{4, 2}, {8, 0}, {0, 4}, {1, 1}} {
		c, err := newVerifyCache(size[0], size[1], defaultNegativeCacheTTL)
		if err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		var mu sync.Mutex
		var wrong []string
		for g := range 4 {
			wg.Go(func() {
				for i := range 3000 {
					n := (i*7 + g*13) % len(tokens)
					req := f.requests[(i+g)%len(f.requests)]
					if i%3 != 0 && n < len(f.requests) {
						req = f.requests[n]
					}
					claims, fail, _ := c.verify(f.verifier, tokens[n], &req)
					wantClaims, err := f.verifier.Verify(tokens[n], req)
					var want *failure
					if err != nil {
						want = failureFromError(err)
					}
					ok := (fail == nil) == (want == nil)
					if ok && fail != nil {
						ok = *fail == *want
					}
					if ok && fail == nil {
						ok = claims.SDKAppID == wantClaims.SDKAppID && claims.UserID == wantClaims.UserID && claims.Time == wantClaims.Time
					}
					if !ok {
						mu.Lock()
						wrong = append(wrong, fmt.Sprintf("token %d for %s: got %v, want %v", n, req.UserID, fail, want))
						mu.Unlock()
					}
				}
			})
		}
		wg.Wait()
		if len(wrong) > 0 {
			t.Errorf("sizes %v: %d wrong answers, first: %s", size, len(wrong), wrong[0])
		}
	}
}

// TestDoorkeeperSizeBound checks that cache sizes that the configuration
// accepts, up to the largest int, give a filter of at most 8 MB.
func TestDoorkeeperSizeBound(t *testing.T) {
	for _, size := range []int{1 << 22, 1 << 40, 1 << 58, math.MaxInt} {
		c, err := newVerifyCache(size, defaultNegativeCacheSize, defaultNegativeCacheTTL)
		if err != nil {
			t.Fatalf("cache_size %d: %v", size, err)
		}
		if bytes := len(c.admit.words) * 8; bytes > 8<<20 {
			t.Errorf("cache_size %d: the filter takes %d bytes, want at most 8 MB", size, bytes)
		}
	}
}
