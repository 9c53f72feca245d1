package usersig

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"hash"
	"math"
	"strconv"
	"sync"
	"time"
)

// Mode selects which kind of token Verify accepts.
type Mode int

const (
	// ModeUserSig requires a plain UserSig: a token with TLS.userbuf fails
	// with ErrUnexpectedUserBuf.
	ModeUserSig Mode = iota

	// ModeWithUserBuf requires a token with TLS.userbuf, such as a
	// PrivateMapKey: a plain UserSig fails with ErrUserBufMismatch.
	ModeWithUserBuf

	// ModeAny accepts both kinds.
	ModeAny
)

// Policy holds checks beyond those of Tencent's official verifiers. The
// zero Policy applies none of them, which is what the official verifiers
// do.
type Policy struct {
	// MaxSkew is the tolerated difference between the issuer's clock and
	// the verifier's. A token stays valid until MaxSkew after its expiry,
	// and a token whose TLS.time is later than now + MaxSkew fails with
	// ErrIssuedInFuture. Zero tolerates no difference at expiry and any
	// future TLS.time, as the official verifiers do. Whole seconds count.
	MaxSkew time.Duration

	// MaxLifetime bounds TLS.expire: a longer lifetime fails with
	// ErrLifetimeTooLong. Zero disables the check.
	MaxLifetime time.Duration

	// LenientBase64 also accepts the standard base64 alphabet ('+', '/',
	// '=') and missing padding in the outer encoding, as some third-party
	// generators emit. By default only the canonical spelling of a token
	// is accepted.
	LenientBase64 bool
}

// Request holds the expected SDKAppID and UserID, the current time and the
// accepted token type, against which Verify checks a token.
type Request struct {
	// SDKAppID is the application the token must be issued for.
	SDKAppID uint64

	// UserID must equal TLS.identifier exactly (no case folding,
	// trimming or Unicode normalisation).
	UserID string

	// Now is the current time. Expiry is checked in whole seconds.
	Now time.Time

	// Mode selects plain UserSigs, tokens with a userbuf, or both.
	Mode Mode

	// With MatchUserBuf set, a token's decoded TLS.userbuf must equal
	// UserBuf byte for byte, or Verify fails with ErrUserBufMismatch.
	// It applies only to tokens that carry a userbuf.
	MatchUserBuf bool
	UserBuf      []byte
}

// Claims are the fields of a verified token.
type Claims struct {
	SDKAppID uint64 // TLS.sdkappid
	UserID   string // TLS.identifier
	Time     int64  // TLS.time: issue time, Unix seconds
	Expire   int64  // TLS.expire: lifetime in seconds, relative to Time

	// HasUserBuf reports whether the token carries TLS.userbuf, and
	// UserBuf holds its decoded bytes (nil for a plain UserSig).
	HasUserBuf bool
	UserBuf    []byte

	// KeyIndex is the index, in the Verifier's key list, of the secret
	// key whose HMAC matched.
	KeyIndex int
}

// ExpiresAt returns the Unix time in seconds after which the token is
// expired: Time + Expire, saturated to the int64 range.
func (c Claims) ExpiresAt() int64 { return expiresAt(c.Time, c.Expire) }

func expiresAt(issued, expire int64) int64 {
	if expire > 0 && issued > math.MaxInt64-expire {
		return math.MaxInt64
	}
	return issued + expire
}

// secretKey is one secret key with a pool of HMAC states keyed with it,
// so that verifying does not hash the key again or allocate.
type secretKey struct {
	pool sync.Pool
}

func newSecretKey(key string) *secretKey {
	k := &secretKey{}
	keyBytes := []byte(key)
	k.pool.New = func() any { return hmac.New(sha256.New, keyBytes) }
	return k
}

// sum appends the HMAC-SHA256 of msg to dst.
func (k *secretKey) sum(dst, msg []byte) []byte {
	h := k.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	dst = h.Sum(dst)
	k.pool.Put(h)
	return dst
}

// Verifier checks UserSigs against one or more secret keys. It is safe for
// concurrent use.
type Verifier struct {
	keys   []*secretKey
	policy Policy
}

// ErrNoKey is returned by NewVerifier when it is given no key or an empty
// key.
var ErrNoKey = errors.New("usersig: a verifier needs at least one non-empty secret key")

// NewVerifier returns a Verifier for the given secret keys, in order of
// preference: during a key rotation, list the current key first and the
// previous ones after it. Each key is the key text exactly as Tencent's
// console shows it; it is used as UTF-8 bytes, not hex-decoded.
func NewVerifier(keys []string, policy Policy) (*Verifier, error) {
	if len(keys) == 0 {
		return nil, ErrNoKey
	}
	v := &Verifier{policy: policy}
	for _, key := range keys {
		if key == "" {
			return nil, ErrNoKey
		}
		v.keys = append(v.keys, newSecretKey(key))
	}
	return v, nil
}

// Policy returns the verifier's policy.
func (v *Verifier) Policy() Policy { return v.policy }

// Verify decodes token and checks it against r. The checks run in this
// order: decoding (ErrMalformed), SDKAppID (ErrSDKAppIDMismatch), UserID
// (ErrIdentifierMismatch), HMAC under each key (ErrInvalidSignature),
// expiry (ErrExpired), the policy (ErrIssuedInFuture, ErrLifetimeTooLong)
// and the mode (ErrUnexpectedUserBuf, ErrUserBufMismatch). Checking the
// HMAC before the expiry keeps a forger from learning anything but
// "invalid signature".
//
// Every returned error is an *Error. A failure of the expiry, policy or
// mode check comes after the signature matched, so the returned Claims are
// filled in, KeyIndex included. After any other failure they are zero.
func (v *Verifier) Verify(token string, r Request) (Claims, error) {
	s := getScratch()
	defer putScratch(s)

	var d rawDoc
	if err := decodeRaw(token, v.policy.LenientBase64, s, &d); err != nil {
		return Claims{}, err
	}

	if d.sdkAppID != r.SDKAppID {
		return Claims{}, errSDKAppID
	}
	if string(d.identifier) != r.UserID {
		return Claims{}, errIdentifier
	}

	keyIndex, err := v.checkSignature(&d, s)
	if err != nil {
		return Claims{}, err
	}

	// From here on the signature is genuine, so failures come with the
	// claims, for callers that log or report them.
	c := Claims{
		SDKAppID:   d.sdkAppID,
		UserID:     r.UserID, // equal to TLS.identifier, and already a string
		Time:       d.time,
		Expire:     d.expire,
		HasUserBuf: d.hasUserBuf,
		KeyIndex:   keyIndex,
	}
	if err := v.checkTime(d.time, d.expire, r.Now.Unix()); err != nil {
		return c, err
	}
	if d.hasUserBuf && r.Mode != ModeUserSig {
		buf, err := decodeUserBuf(d.userBuf)
		if err != nil {
			return c, err
		}
		c.UserBuf = buf
	}
	if err := checkMode(c, r); err != nil {
		return c, err
	}
	return c, nil
}

// Check runs on claims that an earlier Verify returned without error the
// checks that depend on the request and the time: SDKAppID, UserID,
// expiry, policy and mode, in Verify's order. It returns the error that
// Verify would return for the same token and request, so a cache of
// verified claims returns the same results as verifying again.
func (v *Verifier) Check(c Claims, r Request) error {
	if c.SDKAppID != r.SDKAppID {
		return errSDKAppID
	}
	if c.UserID != r.UserID {
		return errIdentifier
	}
	if err := v.checkTime(c.Time, c.Expire, r.Now.Unix()); err != nil {
		return err
	}
	return checkMode(c, r)
}

// checkTime checks the expiry, with the clock skew, and the policy limits.
func (v *Verifier) checkTime(issued, expire, now int64) error {
	skew := int64(v.policy.MaxSkew / time.Second)
	deadline := expiresAt(issued, expire)
	if skew > 0 {
		deadline = expiresAt(deadline, skew)
	}
	if now > deadline {
		return errExpired
	}
	if skew > 0 && issued > expiresAt(now, skew) {
		return errFuture
	}
	if limit := int64(v.policy.MaxLifetime / time.Second); limit > 0 && expire > limit {
		return errLifetimeLong
	}
	return nil
}

// decodeRaw runs the decoding steps shared by Verify and Decode.
func decodeRaw(token string, lenient bool, s *scratch, d *rawDoc) error {
	z, err := decodeOuter(token, lenient, s)
	if err != nil {
		return err
	}
	doc, err := inflate(z, s)
	if err != nil {
		return err
	}
	return parseDocument(doc, s, d)
}

// signedMessage appends the text that TLS.sig is the HMAC of.
func signedMessage(dst []byte, identifier []byte, sdkAppID uint64, issued, expire int64, userBuf []byte, hasUserBuf bool) []byte {
	// 20 bytes fit the longest decimal int64 or uint64.
	var sdkAppIDText, issuedText, expireText [20]byte
	return signedMessageText(dst, identifier,
		strconv.AppendUint(sdkAppIDText[:0], sdkAppID, 10),
		strconv.AppendInt(issuedText[:0], issued, 10),
		strconv.AppendInt(expireText[:0], expire, 10),
		userBuf, hasUserBuf)
}

// signedMessageText is signedMessage with the three integers given as
// their decimal text.
func signedMessageText(dst, identifier, sdkAppID, issued, expire, userBuf []byte, hasUserBuf bool) []byte {
	dst = append(dst, "TLS.identifier:"...)
	dst = append(dst, identifier...)
	dst = append(dst, "\nTLS.sdkappid:"...)
	dst = append(dst, sdkAppID...)
	dst = append(dst, "\nTLS.time:"...)
	dst = append(dst, issued...)
	dst = append(dst, "\nTLS.expire:"...)
	dst = append(dst, expire...)
	dst = append(dst, '\n')
	if hasUserBuf {
		dst = append(dst, "TLS.userbuf:"...)
		dst = append(dst, userBuf...)
		dst = append(dst, '\n')
	}
	return dst
}

// checkSignature returns the index of the first key whose HMAC equals
// TLS.sig. Each comparison takes constant time.
func (v *Verifier) checkSignature(d *rawDoc, s *scratch) (int, error) {
	// The integers are copied as the document wrote them, which saves
	// formatting them again.
	msg := signedMessageText(s.msg[:0], d.identifier, textOrZero(d.sdkAppIDText), textOrZero(d.timeText),
		textOrZero(d.expireText), d.userBuf, d.hasUserBuf)
	s.msg = msg
	for i, k := range v.keys {
		sum := k.sum(s.sum[:0], msg)
		if hmac.Equal(sum, d.sig[:]) {
			return i, nil
		}
	}
	return -1, errSignature
}

// zeroText is the decimal text of an absent integer member, whose value
// is 0.
var zeroText = []byte("0")

// textOrZero returns the text of an integer member, or zeroText for an
// absent one.
func textOrZero(text []byte) []byte {
	if text == nil {
		return zeroText
	}
	return text
}

// checkMode applies r.Mode and r.MatchUserBuf to the claims.
func checkMode(c Claims, r Request) error {
	switch {
	case r.Mode == ModeUserSig && c.HasUserBuf:
		return errHasUserBuf
	case r.Mode == ModeWithUserBuf && !c.HasUserBuf:
		return errNoUserBuf
	case c.HasUserBuf && r.MatchUserBuf && string(c.UserBuf) != string(r.UserBuf):
		return errUserBufDiff
	}
	return nil
}

// stdStrict decodes TLS.userbuf. Strict returns a copy of the encoding, so
// it is made once here, not on each call.
var stdStrict = base64.StdEncoding.Strict()

// decodeUserBuf decodes the TLS.userbuf text (standard base64 with
// padding).
func decodeUserBuf(text []byte) ([]byte, error) {
	buf := make([]byte, base64.StdEncoding.DecodedLen(len(text)))
	n, err := stdStrict.Decode(buf, text)
	if err != nil {
		return nil, errUserBufBase64
	}
	return buf[:n], nil
}
