package caddymodule

import (
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
	keys := testKeys(entries)
	d.seen(keys[0])
	// The entries-th new key resets the filter.
	for _, key := range keys[1:] {
		d.seen(key)
	}
	if d.seen(keys[0]) {
		t.Error("a key was still seen after a reset")
	}
	if n := d.marks.Load(); n != 1 {
		t.Errorf("%d marks after the reset and one new key, want 1", n)
	}
}

func TestDoorkeeperFalsePositives(t *testing.T) {
	for _, entries := range []int{1, 100, 10000, 100000} {
		d := newDoorkeeper(entries)
		keys := testKeys(entries - 1 + 10000)
		// The maximum number of marks: one fewer than a reset.
		for _, key := range keys[:entries-1] {
			d.seen(key)
		}
		// Each key is checked without marking it, so that all are
		// checked against the same filter.
		seen := 0
		for _, key := range keys[entries-1:] {
			if d.marked(key) {
				seen++
			}
		}
		// With at most 1/8 of the bits set, at most about 1.4 % of
		// new keys pass as seen.
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
	// Every mark that reaches the limit tries to reset, and the last one
	// succeeds, so the count stays below the limit.
	if n := d.marks.Load(); n < 0 || n >= entries {
		t.Errorf("%d marks after the goroutines ended, want 0 to %d", n, entries-1)
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
	forged, err := usersig.Issue("0000000000000000000000000000000000000000000000000000000000000000",
		usersig.Params{SDKAppID: testAppID, UserID: f.requests[0].UserID, Expire: testLifetime})
	if err != nil {
		t.Fatal(err)
	}
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
