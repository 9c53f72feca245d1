package caddymodule

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// CodeSDKAppIDNotConfigured is Tencent's error code for a request whose
// SDKAppID is missing, not a number or not one of the configured apps.
const CodeSDKAppIDNotConfigured = 70020

// failure is a rejected request: the HTTP status, Tencent's error code and
// a reason that is safe to send to the client. It is the error value that
// the handler passes to caddyhttp.Error.
type failure struct {
	status int
	code   int
	result string // verdict name, for logs
	reason string // short text for the client, free of quotes and backslashes
}

func (f *failure) Error() string { return "usersig: " + f.result + ": " + f.reason }

// Failures found before the token is verified.
var (
	failMissingUserSig = &failure{http.StatusUnauthorized, usersig.CodeEmpty, "missing-usersig", "missing UserSig"}
	failConflicting    = &failure{http.StatusUnauthorized, usersig.CodeMalformed, "conflicting-credentials", "conflicting or undecodable credentials"}
	failMissingAppID   = &failure{http.StatusUnauthorized, CodeSDKAppIDNotConfigured, "missing-sdkappid", "missing SDKAppID"}
	failInvalidAppID   = &failure{http.StatusUnauthorized, CodeSDKAppIDNotConfigured, "invalid-sdkappid", "SDKAppID is not a number"}
	failUnknownAppID   = &failure{http.StatusUnauthorized, CodeSDKAppIDNotConfigured, "unknown-sdkappid", "SDKAppID not configured"}
	failMissingUserID  = &failure{http.StatusUnauthorized, usersig.CodeIdentifierMismatch, "missing-userid", "missing UserID"}
)

// Failures that a cached result gives without calling the verifier. Their
// code, result and reason are those of the usersig package's own errors of
// the same kind, so a cached and an uncached check of one token give the
// same response (a test compares them).
var (
	failSDKAppIDMismatch = &failure{http.StatusUnauthorized, usersig.CodeSDKAppIDMismatch, "sdkappid-mismatch", "SDKAppID does not match TLS.sdkappid"}
	failUserIDMismatch   = &failure{http.StatusUnauthorized, usersig.CodeIdentifierMismatch, "identifier-mismatch", "UserID does not match TLS.identifier"}
	failExpired          = &failure{http.StatusUnauthorized, usersig.CodeExpired, "expired", "UserSig has expired"}
	failIssuedInFuture   = &failure{http.StatusUnauthorized, usersig.CodeMalformed, "issued-in-future", "TLS.time is later than now plus the allowed clock skew"}
)

// Failures of a genuine token that this gateway does not accept. The code
// is the one the usersig package gives for the same check.
var (
	failPrivateMapKey = &failure{http.StatusForbidden, usersig.CodeMalformed, "unexpected-userbuf", "PrivateMapKey where a plain UserSig is required"}
	failPlainUserSig  = &failure{http.StatusForbidden, usersig.CodeMalformed, "userbuf-mismatch", "plain UserSig where a PrivateMapKey is required"}
)

// failureFromError converts an error from usersig.Verifier.Verify. A token
// whose lifetime exceeds max_lifetime, or of the wrong type, is genuine but
// not allowed, so it gets 403. Every other failure gets 401.
func failureFromError(err error) *failure {
	var e *usersig.Error
	if !errors.As(err, &e) {
		// Verify documents that every error is an *usersig.Error. This
		// branch only keeps a library change from panicking the handler.
		return &failure{http.StatusUnauthorized, usersig.CodeMalformed, "malformed", "invalid UserSig"}
	}

	status := http.StatusUnauthorized
	if errors.Is(e, usersig.ErrLifetimeTooLong) || errors.Is(e, usersig.ErrUnexpectedUserBuf) || errors.Is(e, usersig.ErrUserBufMismatch) {
		status = http.StatusForbidden
	}
	return &failure{status: status, code: e.Code(), result: e.Result(), reason: clientText(e.Reason())}
}

// clientText makes a reason safe to place inside a JSON string by a
// handle_errors template: double quotes become single quotes, and
// backslashes and control characters become spaces.
func clientText(s string) string {
	clean := func(r rune) rune {
		switch {
		case r == '"':
			return '\''
		case r == '\\' || r < 0x20 || r == 0x7f:
			return ' '
		}
		return r
	}
	if strings.IndexFunc(s, func(r rune) bool { return clean(r) != r }) < 0 {
		return s
	}
	return strings.Map(clean, s)
}

// errorBody is the JSON body of a rejection, in the layout of Tencent's
// REST APIs.
type errorBody struct {
	ActionStatus string `json:"ActionStatus"`
	ErrorCode    int    `json:"ErrorCode"`
	ErrorInfo    string `json:"ErrorInfo"`
}

// writeFailure sends f as the JSON body of a response with f's status.
// A write error means that the client is gone, so it is not reported.
func writeFailure(w http.ResponseWriter, f *failure) {
	// json.Marshal fails only on unsupported types and values, and
	// errorBody has none.
	body, _ := json.Marshal(errorBody{ActionStatus: "FAIL", ErrorCode: f.code, ErrorInfo: f.reason})
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	h.Set("Cache-Control", "no-store")
	w.WriteHeader(f.status)
	_, _ = w.Write(body)
}
