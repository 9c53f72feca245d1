package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// maxLoggedBytes is the number of bytes of a claimed UserID or SDKAppID
// that a log entry keeps, because both are client input.
const maxLoggedBytes = 64

// authResult is the outcome of authenticate for one request.
type authResult struct {
	// claims are the verified claims, and grant the rights of a valid
	// privilege map (nil without one). Both are only set on success.
	// claims may be an entry of the cache, so it must not be modified.
	claims *usersig.Claims
	grant  *privilegeGrant

	// anonymous is true when the request carries none of the three
	// credentials, which the optional mode lets pass.
	anonymous bool

	// sdkAppID is the claimed SDKAppID once it is known to be a
	// configured app, else 0, and app is that app. retryAfter is the
	// remaining time of a lockout, set with failLockedOut.
	sdkAppID   uint64
	app        *appState
	retryAfter time.Duration

	creds credentials // as read from the request, for the log
}

// authenticate checks the credentials of r into res and logs a failure.
// now is the time to verify against, from requestTime. It does not change
// r.
//
// The result is written through a pointer, and claims are passed by
// pointer down to the cache, to keep the stack frames of this path small.
// The garbage collector shrinks the stack of a connection goroutine
// between requests, so a deep path makes the stack grow again, with a
// copy, on the next request.
func (g *Gateway) authenticate(r *http.Request, now time.Time, res *authResult) *failure {
	fail := g.check(r, now, res)
	if fail != nil {
		g.countFailure(r, res, fail, now)
		g.logFailure(fail, &res.creds, g.passesWithout(res.anonymous))
	}
	return fail
}

// check runs the checks of a request in order: read the credentials,
// reject a locked-out client, verify the UserSig through the cache,
// reject a revoked token, then apply the token type and the privilege
// requirements. The first failure is returned.
func (g *Gateway) check(r *http.Request, now time.Time, res *authResult) *failure {
	fail := g.credentials.read(r, &res.creds)
	if fail != nil {
		return fail
	}
	creds := &res.creds
	if creds.userSig == "" && creds.sdkAppID == "" && creds.userID == "" {
		res.anonymous = true
		return failMissingUserSig
	}
	if creds.userSig == "" {
		return failMissingUserSig
	}
	if creds.sdkAppID == "" {
		return failMissingAppID
	}
	sdkAppID, err := strconv.ParseUint(creds.sdkAppID, 10, 64)
	if err != nil {
		return failInvalidAppID
	}
	app, ok := g.apps[sdkAppID]
	if !ok {
		return failUnknownAppID
	}
	res.sdkAppID = sdkAppID
	res.app = app
	if creds.userID == "" {
		return failMissingUserID
	}

	// A locked-out client is rejected before the costly verification.
	if blocked, wait := g.checkLockout(r, sdkAppID, creds.userID, now); blocked {
		res.retryAfter = wait
		return failLockedOut
	}

	// The token type is checked below rather than by Verify, so that the
	// cache stores genuine tokens of either type and a PrivateMapKey sent
	// again is rejected without another HMAC.
	claims, fail, outcome := g.cache.verify(app.verifier, creds.userSig, &usersig.Request{
		SDKAppID: sdkAppID,
		UserID:   creds.userID,
		Now:      now,
		Mode:     usersig.ModeAny,
	})
	countCacheLookup(outcome)
	if fail != nil {
		return fail
	}
	app.countKeyMatch(claims)

	// The revocation list changes while tokens stay in the cache, so it
	// is checked on every request, after the cache.
	if g.revocations.revoked(claims.SDKAppID, claims.UserID, claims.Time, now) {
		countRevocation()
		return failRevoked
	}

	if fail := checkTokenType(g.tokenMode, claims); fail != nil {
		return fail
	}
	grant, fail := checkPrivileges(r, claims, g.requirement)
	if fail != nil {
		return fail
	}
	res.claims = claims
	res.grant = grant
	return nil
}

// requestTime returns the time at which Caddy's server started to handle
// r, which it keeps in the start_time variable of each request, or the
// current time without it. Reading the variable is several times cheaper
// than reading the clock again on machines where the clock is slow to
// read. The time may be earlier than now by what the handlers before this
// one took, such as a forward_auth round trip, which moves no decision by
// more than that: token times have a resolution of one second.
func requestTime(r *http.Request) time.Time {
	if t, ok := caddyhttp.GetVar(r.Context(), "start_time").(time.Time); ok && !t.IsZero() {
		return t
	}
	return time.Now()
}

// countKeyMatch counts a genuine token in key_matches_total under its
// SDKAppID and the index of the key that verified it.
func (a *appState) countKeyMatch(claims *usersig.Claims) {
	if claims.KeyIndex >= 0 && claims.KeyIndex < len(a.keyMatches) {
		a.keyMatches[claims.KeyIndex].Inc()
	}
}

// checkTokenType applies the token_type setting to a genuine token, as
// usersig.Verifier.Verify would for the same mode.
func checkTokenType(mode usersig.Mode, claims *usersig.Claims) *failure {
	switch {
	case mode == usersig.ModeUserSig && claims.HasUserBuf:
		return failPrivateMapKey
	case mode == usersig.ModeWithUserBuf && !claims.HasUserBuf:
		return failPlainUserSig
	}
	return nil
}

// logFailure logs a failed check at debug level. A bad credential is the
// client's mistake, not a fault of the server, so it is not logged at a
// higher level. passed reports whether the mode lets the request go
// on anyway. The log never holds the UserSig, only its length and a hash
// prefix to tell repeated tokens apart.
func (g *Gateway) logFailure(f *failure, creds *credentials, passed bool) {
	message := "UserSig rejected"
	if passed {
		message = "UserSig not valid, request passed on"
	}
	if c := g.logger.Check(zapcore.DebugLevel, message); c != nil {
		fields := []zap.Field{
			zap.String("mode", g.Mode),
			zap.String("sdkappid", truncate(creds.sdkAppID, maxLoggedBytes)),
			zap.String("userid", truncate(creds.userID, maxLoggedBytes)),
			zap.String("result", f.result),
			zap.Int("code", f.code),
			zap.Int("status", f.status),
		}
		if creds.userSig != "" {
			sum := sha256.Sum256([]byte(creds.userSig))
			fields = append(fields,
				zap.Int("usersig_length", len(creds.userSig)),
				zap.String("usersig_sha256_prefix", hex.EncodeToString(sum[:4])))
		}
		c.Write(fields...)
	}
}

// truncate cuts s to at most n bytes without splitting a UTF-8 sequence.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := n
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut]
}
