package caddymodule

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// maxLoggedBytes is the number of bytes of a claimed UserID or SDKAppID
// that a log entry keeps, because both are client input.
const maxLoggedBytes = 64

// authenticate reads the credentials of r and verifies them. It does not
// change r.
func (g *Gateway) authenticate(r *http.Request, now time.Time) (usersig.Claims, *failure) {
	creds, fail := g.credentials.read(r)
	if fail != nil {
		return usersig.Claims{}, g.reject(fail, creds)
	}
	if creds.userSig == "" {
		return usersig.Claims{}, g.reject(failMissingUserSig, creds)
	}
	if creds.sdkAppID == "" {
		return usersig.Claims{}, g.reject(failMissingAppID, creds)
	}
	sdkAppID, err := strconv.ParseUint(creds.sdkAppID, 10, 64)
	if err != nil {
		return usersig.Claims{}, g.reject(failInvalidAppID, creds)
	}
	verifier, ok := g.verifiers[sdkAppID]
	if !ok {
		return usersig.Claims{}, g.reject(failUnknownAppID, creds)
	}
	if creds.userID == "" {
		return usersig.Claims{}, g.reject(failMissingUserID, creds)
	}

	// The token type is checked here rather than by Verify, so that the
	// cache stores genuine tokens of either type and a PrivateMapKey sent
	// again is rejected without another HMAC.
	claims, fail, _ := g.cache.verify(verifier, creds.userSig, usersig.Request{
		SDKAppID: sdkAppID,
		UserID:   creds.userID,
		Now:      now,
		Mode:     usersig.ModeAny,
	})
	if fail == nil {
		fail = checkTokenType(g.mode, claims)
	}
	if fail != nil {
		return usersig.Claims{}, g.reject(fail, creds)
	}
	return claims, nil
}

// checkTokenType applies the token_type setting to a genuine token, as
// usersig.Verifier.Verify would for the same mode.
func checkTokenType(mode usersig.Mode, claims usersig.Claims) *failure {
	switch {
	case mode == usersig.ModeUserSig && claims.HasUserBuf:
		return failPrivateMapKey
	case mode == usersig.ModeWithUserBuf && !claims.HasUserBuf:
		return failPlainUserSig
	}
	return nil
}

// reject logs a rejected request at debug level and returns f. A bad
// credential is the client's mistake, not a fault of the server, so it is
// not logged at a higher level. The log never holds the UserSig, only its
// length and a hash prefix to tell repeated tokens apart.
func (g *Gateway) reject(f *failure, creds credentials) *failure {
	if c := g.logger.Check(zapcore.DebugLevel, "UserSig rejected"); c != nil {
		fields := []zap.Field{
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
	return f
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
