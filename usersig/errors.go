package usersig

// Error is a verification or decoding failure. Each Error belongs to one
// kind, matched with errors.Is against the exported Err* values, and
// carries Tencent's numeric error code for that kind.
//
// The message names what was wrong with the token. It never contains the
// secret key, the token or the signature.
type Error struct {
	kind   *Error
	code   int
	result string
	reason string
}

// Error returns the message, for example "usersig: malformed: invalid base64".
func (e *Error) Error() string {
	if e.kind == e {
		return "usersig: " + e.result
	}
	return "usersig: " + e.result + ": " + e.reason
}

// Is reports whether target is the kind of e (one of the exported Err*
// values), or e itself.
func (e *Error) Is(target error) bool {
	t, ok := target.(*Error)
	if !ok {
		return false
	}
	return t == e || t == e.kind
}

// Code returns Tencent's error code for the failure, such as 70001 for an
// expired UserSig.
func (e *Error) Code() int { return e.code }

// Result returns the verdict name of the failure's kind, one of
// "malformed", "expired", "invalid-signature", "identifier-mismatch",
// "sdkappid-mismatch", "unexpected-userbuf", "userbuf-mismatch",
// "issued-in-future" and "lifetime-too-long".
func (e *Error) Result() string { return e.result }

// Reason returns the short description of what was wrong, without the
// "usersig:" prefix and the verdict name.
func (e *Error) Reason() string {
	if e.reason == "" {
		return e.result
	}
	return e.reason
}

// Kind returns the exported Err* value that e belongs to.
func (e *Error) Kind() *Error { return e.kind }

func newKind(result string, code int) *Error {
	e := &Error{code: code, result: result}
	e.kind = e
	return e
}

// reasonOf makes a static error of the given kind. All failures are made
// ahead of time, so that rejecting a token allocates nothing.
func reasonOf(kind *Error, reason string) *Error {
	return &Error{kind: kind, code: kind.code, result: kind.result, reason: reason}
}

// Tencent's error codes for UserSig failures, as the IM and TRTC servers
// return them.
const (
	CodeExpired            = 70001 // the UserSig has expired
	CodeEmpty              = 70002 // the UserSig is empty
	CodeMalformed          = 70003 // the UserSig cannot be decoded
	CodeInvalidSignature   = 70009 // the HMAC does not match the secret key
	CodeIdentifierMismatch = 70013 // the UserID differs from TLS.identifier
	CodeSDKAppIDMismatch   = 70014 // the SDKAppID differs from TLS.sdkappid
)

// The kinds of failure. Every error returned by Decode, Verify and
// ParsePrivilegeMap matches exactly one of them with errors.Is.
var (
	// ErrMalformed: the token cannot be decoded (alphabet, base64, zlib,
	// JSON or a member of the wrong type). An empty token also matches
	// ErrEmpty and has code 70002.
	ErrMalformed = newKind("malformed", CodeMalformed)

	// ErrExpired: now is later than TLS.time + TLS.expire.
	ErrExpired = newKind("expired", CodeExpired)

	// ErrInvalidSignature: TLS.sig is not the HMAC of the document under
	// any of the secret keys.
	ErrInvalidSignature = newKind("invalid-signature", CodeInvalidSignature)

	// ErrIdentifierMismatch: TLS.identifier is not the expected UserID.
	ErrIdentifierMismatch = newKind("identifier-mismatch", CodeIdentifierMismatch)

	// ErrSDKAppIDMismatch: TLS.sdkappid is not the expected SDKAppID.
	ErrSDKAppIDMismatch = newKind("sdkappid-mismatch", CodeSDKAppIDMismatch)

	// ErrUnexpectedUserBuf: a token with TLS.userbuf (a PrivateMapKey)
	// where a plain UserSig is required. Tencent's servers report a
	// malformed UserSig here, so the code is 70003.
	ErrUnexpectedUserBuf = newKind("unexpected-userbuf", CodeMalformed)

	// ErrUserBufMismatch: TLS.userbuf is required but missing, or differs
	// from the expected one. The code is 70003, as for ErrUnexpectedUserBuf.
	ErrUserBufMismatch = newKind("userbuf-mismatch", CodeMalformed)

	// ErrIssuedInFuture: TLS.time is later than now plus the allowed clock
	// skew (only with Policy.MaxSkew set). The code is 70003.
	ErrIssuedInFuture = newKind("issued-in-future", CodeMalformed)

	// ErrLifetimeTooLong: TLS.expire exceeds Policy.MaxLifetime (only when
	// it is set). The code is 70003.
	ErrLifetimeTooLong = newKind("lifetime-too-long", CodeMalformed)

	// ErrEmpty is the ErrMalformed failure for an empty token, with code 70002.
	ErrEmpty = &Error{code: CodeEmpty, result: "malformed", reason: "empty UserSig"}
)

func init() {
	ErrEmpty.kind = ErrMalformed
}

// Static failures, one per reason.
var (
	errTooLong        = reasonOf(ErrMalformed, "token longer than the maximum length")
	errAlphabet       = reasonOf(ErrMalformed, "character outside the UserSig alphabet")
	errBase64         = reasonOf(ErrMalformed, "invalid base64")
	errZlibHeader     = reasonOf(ErrMalformed, "invalid zlib header")
	errZlibDict       = reasonOf(ErrMalformed, "zlib preset dictionary is not supported")
	errZlibData       = reasonOf(ErrMalformed, "invalid zlib data")
	errZlibChecksum   = reasonOf(ErrMalformed, "zlib Adler-32 checksum mismatch")
	errZlibTrailing   = reasonOf(ErrMalformed, "bytes after the end of the zlib stream")
	errInflateTooBig  = reasonOf(ErrMalformed, "inflated document larger than the maximum size")
	errJSONSyntax     = reasonOf(ErrMalformed, "invalid JSON")
	errJSONNotObject  = reasonOf(ErrMalformed, "JSON document is not an object")
	errJSONDuplicate  = reasonOf(ErrMalformed, "duplicate JSON member")
	errJSONUTF8       = reasonOf(ErrMalformed, "invalid UTF-8 in JSON")
	errJSONDepth      = reasonOf(ErrMalformed, "JSON nested too deeply")
	errVerMissing     = reasonOf(ErrMalformed, "missing TLS.ver")
	errVerValue       = reasonOf(ErrMalformed, `TLS.ver is not "2.0"`)
	errIdentifierType = reasonOf(ErrMalformed, "TLS.identifier is not a string")
	errSDKAppIDValue  = reasonOf(ErrMalformed, "TLS.sdkappid is not an unsigned 64-bit integer")
	errTimeValue      = reasonOf(ErrMalformed, "TLS.time is not a non-negative 64-bit integer")
	errExpireValue    = reasonOf(ErrMalformed, "TLS.expire is not a 64-bit integer")
	errUserBufType    = reasonOf(ErrMalformed, "TLS.userbuf is not a string")
	errUserBufBase64  = reasonOf(ErrMalformed, "TLS.userbuf is not valid base64")
	errSigMissing     = reasonOf(ErrMalformed, "missing TLS.sig")
	errSigValue       = reasonOf(ErrMalformed, "TLS.sig is not the base64 of a 32-byte HMAC-SHA256")

	errSignature    = reasonOf(ErrInvalidSignature, "signature does not match any secret key")
	errExpired      = reasonOf(ErrExpired, "UserSig has expired")
	errIdentifier   = reasonOf(ErrIdentifierMismatch, "UserID does not match TLS.identifier")
	errSDKAppID     = reasonOf(ErrSDKAppIDMismatch, "SDKAppID does not match TLS.sdkappid")
	errHasUserBuf   = reasonOf(ErrUnexpectedUserBuf, "token carries TLS.userbuf where a plain UserSig is required")
	errNoUserBuf    = reasonOf(ErrUserBufMismatch, "token carries no TLS.userbuf")
	errUserBufDiff  = reasonOf(ErrUserBufMismatch, "TLS.userbuf differs from the expected one")
	errFuture       = reasonOf(ErrIssuedInFuture, "TLS.time is later than now plus the allowed clock skew")
	errLifetimeLong = reasonOf(ErrLifetimeTooLong, "TLS.expire is longer than the maximum lifetime")
)
