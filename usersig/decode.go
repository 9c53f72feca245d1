package usersig

import "time"

// Document is a decoded UserSig, as Decode returns it. Its signature has
// not been checked.
type Document struct {
	Version    string // TLS.ver, always "2.0"
	UserID     string // TLS.identifier ("" when absent)
	SDKAppID   uint64 // TLS.sdkappid (0 when absent)
	Time       int64  // TLS.time: issue time, Unix seconds (0 when absent)
	Expire     int64  // TLS.expire: lifetime in seconds (0 when absent)
	Signature  [32]byte
	HasUserBuf bool
	// UserBufText is TLS.userbuf as written (standard base64), and
	// UserBuf its decoded bytes, nil when the text is not valid base64.
	UserBufText string
	UserBuf     []byte
}

// ExpiresAt returns Time + Expire in Unix seconds, saturated to the int64
// range.
func (d Document) ExpiresAt() int64 { return expiresAt(d.Time, d.Expire) }

// Expired reports whether the token is expired at now.
func (d Document) Expired(now time.Time) bool { return now.Unix() > d.ExpiresAt() }

// Decode decodes a token without checking its signature, for inspection
// tools. It applies the same strict parsing as Verify, so a token that
// Decode rejects never verifies. lenient has the meaning of
// Policy.LenientBase64. Every returned error is an *Error matching
// ErrMalformed.
func Decode(token string, lenient bool) (Document, error) {
	s := getScratch()
	defer putScratch(s)

	var d rawDoc
	if err := decodeRaw(token, lenient, s, &d); err != nil {
		return Document{}, err
	}
	doc := Document{
		Version:    "2.0",
		UserID:     string(d.identifier),
		SDKAppID:   d.sdkAppID,
		Time:       d.time,
		Expire:     d.expire,
		Signature:  d.sig,
		HasUserBuf: d.hasUserBuf,
	}
	if d.hasUserBuf {
		doc.UserBufText = string(d.userBuf)
		if buf, err := decodeUserBuf(d.userBuf); err == nil {
			doc.UserBuf = buf
		}
	}
	return doc, nil
}
