package caddymodule

import (
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	lru "github.com/hashicorp/golang-lru/v2"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// verifyCalls counts the calls of usersig.Verifier.Verify made by every
// verifyCache in the process. Tests read it to count verifications.
var verifyCalls atomic.Int64

// Test hooks, nil outside tests: testHookVerify runs before each
// verification, and testHookFollow when a request starts to wait for the
// verification of the same token by another request.
var testHookVerify, testHookFollow atomic.Pointer[func()]

func runHook(hook *atomic.Pointer[func()]) {
	if f := hook.Load(); f != nil {
		(*f)()
	}
}

// verifyCache remembers verification results by token, so that a client
// that sends the same UserSig on every request costs one HMAC per token.
//
// Genuine tokens are stored with their claims. A hit is checked again
// against the request (SDKAppID, UserID, expiry with the clock skew), so it
// gives the same result as verifying the token again would. Failures that
// time cannot change (malformed, invalid signature) are stored in a second
// LRU for a short TTL, so a flood of one bad token costs one verification.
// Concurrent misses for one token wait for a single verification.
//
// The cache starts no goroutines: expired entries are dropped when a
// lookup finds them, or pushed out by newer ones.
type verifyCache struct {
	claims    *lru.Cache[string, usersig.Claims] // nil when disabled
	rejects   *lru.Cache[string, rejection]      // nil when disabled
	rejectTTL time.Duration

	mu      sync.Mutex
	flights map[string]*flight // verifications in progress, by token
}

// rejection is a stored failure. For an invalid signature, the SDKAppID
// and UserID that the request claimed are also those in the token, because
// Verify compares them before it checks the signature.
type rejection struct {
	fail     *failure
	sdkAppID uint64
	userID   string
	storedAt time.Time
}

// flight is a verification in progress. Its fields other than done are
// written before done is closed and only read after.
type flight struct {
	done     chan struct{}
	sdkAppID uint64
	userID   string
	finished bool // false when the verification panicked
	claims   usersig.Claims
	fail     *failure
}

// newVerifyCache returns a cache holding up to size genuine tokens and up
// to rejectSize failures, each kept for rejectTTL. A size of 0 disables
// that part of the cache.
func newVerifyCache(size, rejectSize int, rejectTTL time.Duration) (*verifyCache, error) {
	c := &verifyCache{rejectTTL: rejectTTL, flights: make(map[string]*flight)}
	if size > 0 {
		claims, err := lru.New[string, usersig.Claims](size)
		if err != nil {
			return nil, err
		}
		c.claims = claims
	}
	if rejectSize > 0 && rejectTTL > 0 {
		rejects, err := lru.New[string, rejection](rejectSize)
		if err != nil {
			return nil, err
		}
		c.rejects = rejects
	}
	return c, nil
}

// cacheOutcome says how verifyCache.verify found its result.
type cacheOutcome int

const (
	cacheMiss      cacheOutcome = iota // this request verified the token
	cacheHit                           // a stored genuine token
	cacheRejectHit                     // a stored failure
	cacheShared                        // waited for another request's verification
)

// verify checks token against req with v, using and filling the cache.
// req.Mode should be usersig.ModeAny: the cache stores claims whatever the
// token type, and the caller checks the type on every result.
func (c *verifyCache) verify(v *usersig.Verifier, token string, req usersig.Request) (usersig.Claims, *failure, cacheOutcome) {
	skew := skewSeconds(v)
	if claims, fail, outcome, ok := c.lookup(token, req, skew); ok {
		return claims, fail, outcome
	}

	c.mu.Lock()
	if f, ok := c.flights[token]; ok {
		c.mu.Unlock()
		claims, fail := c.follow(f, v, token, req, skew)
		return claims, fail, cacheShared
	}
	// A flight that ended between the lookup above and taking the lock
	// has already stored its result, so look again before starting one.
	if claims, fail, outcome, ok := c.lookup(token, req, skew); ok {
		c.mu.Unlock()
		return claims, fail, outcome
	}
	f := &flight{done: make(chan struct{}), sdkAppID: req.SDKAppID, userID: req.UserID}
	c.flights[token] = f
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		delete(c.flights, token)
		c.mu.Unlock()
		close(f.done)
	}()
	f.claims, f.fail = c.verifyAndStore(v, token, req)
	f.finished = true
	return f.claims, f.fail, cacheMiss
}

// follow waits for another request's verification of the same token and
// reuses its result where the result does not depend on what the two
// requests claim.
func (c *verifyCache) follow(f *flight, v *usersig.Verifier, token string, req usersig.Request, skew int64) (usersig.Claims, *failure) {
	runHook(&testHookFollow)
	<-f.done
	switch {
	case !f.finished:
		return c.verifyAndStore(v, token, req)
	case f.fail == nil:
		return checkClaims(f.claims, req, skew)
	case f.sdkAppID == req.SDKAppID && f.userID == req.UserID:
		return usersig.Claims{}, f.fail
	default:
		return c.verifyAndStore(v, token, req)
	}
}

// lookup returns the stored result for token, checked against req, which
// kind of entry held it, and whether there was one.
func (c *verifyCache) lookup(token string, req usersig.Request, skew int64) (usersig.Claims, *failure, cacheOutcome, bool) {
	if c.claims != nil {
		if claims, ok := c.claims.Get(token); ok {
			if isExpired(claims, req.Now.Unix(), skew) {
				// The token can never verify again: drop it. The request
				// still gets the failure that Verify would give, which
				// may be a mismatch checked before the expiry.
				c.claims.Remove(token)
			}
			claims, fail := checkClaims(claims, req, skew)
			return claims, fail, cacheHit, true
		}
	}

	if c.rejects != nil {
		if r, ok := c.rejects.Get(token); ok {
			if req.Now.Sub(r.storedAt) > c.rejectTTL {
				c.rejects.Remove(token)
				return usersig.Claims{}, nil, cacheMiss, false
			}
			return usersig.Claims{}, r.check(req), cacheRejectHit, true
		}
	}
	return usersig.Claims{}, nil, cacheMiss, false
}

// check returns the failure that verifying the token again for req would
// give. A malformed token fails before anything is compared. For a bad
// signature, Verify first compares the SDKAppID and then the UserID with
// those in the token, which are the ones stored.
func (r rejection) check(req usersig.Request) *failure {
	if r.fail.result != usersig.ErrInvalidSignature.Result() {
		return r.fail
	}
	if req.SDKAppID != r.sdkAppID {
		return failSDKAppIDMismatch
	}
	if req.UserID != r.userID {
		return failUserIDMismatch
	}
	return r.fail
}

// verifyAndStore verifies token and stores the result when it can be
// reused.
func (c *verifyCache) verifyAndStore(v *usersig.Verifier, token string, req usersig.Request) (usersig.Claims, *failure) {
	runHook(&testHookVerify)
	verifyCalls.Add(1)
	claims, err := v.Verify(token, req)
	if err == nil {
		if c.claims != nil {
			// The token may be a substring of a large request string, so
			// the cache keeps a copy rather than pin the request.
			c.claims.Add(strings.Clone(token), claims)
		}
		return claims, nil
	}

	fail := failureFromError(err)
	if c.rejects != nil && len(token) <= usersig.MaxTokenLength &&
		(errors.Is(err, usersig.ErrMalformed) || errors.Is(err, usersig.ErrInvalidSignature)) {
		c.rejects.Add(strings.Clone(token), rejection{
			fail:     fail,
			sdkAppID: req.SDKAppID,
			userID:   strings.Clone(req.UserID),
			storedAt: req.Now,
		})
	}
	return usersig.Claims{}, fail
}

// purge empties the cache. Requests still running may add entries again,
// which are dropped with the cache.
func (c *verifyCache) purge() {
	if c.claims != nil {
		c.claims.Purge()
	}
	if c.rejects != nil {
		c.rejects.Purge()
	}
}

// checkClaims repeats, for a stored genuine token, the checks of Verify
// that depend on the request or the time, in the same order.
func checkClaims(claims usersig.Claims, req usersig.Request, skew int64) (usersig.Claims, *failure) {
	if claims.SDKAppID != req.SDKAppID {
		return usersig.Claims{}, failSDKAppIDMismatch
	}
	if claims.UserID != req.UserID {
		return usersig.Claims{}, failUserIDMismatch
	}
	now := req.Now.Unix()
	if isExpired(claims, now, skew) {
		return usersig.Claims{}, failExpired
	}
	if skew > 0 && claims.Time > saturatingAdd(now, skew) {
		return usersig.Claims{}, failIssuedInFuture
	}
	return claims, nil
}

// isExpired applies the expiry rule of usersig.Verifier.Verify: a token is
// valid until skew seconds after TLS.time + TLS.expire.
func isExpired(claims usersig.Claims, now, skew int64) bool {
	return now > saturatingAdd(claims.ExpiresAt(), skew)
}

// skewSeconds returns the clock skew of v's policy in whole seconds, as
// Verify counts it.
func skewSeconds(v *usersig.Verifier) int64 {
	return max(int64(v.Policy().MaxSkew/time.Second), 0)
}

func saturatingAdd(a, b int64) int64 {
	if b > 0 && a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
