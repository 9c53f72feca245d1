package usersig

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"hash/adler32"
	"strconv"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/klauspost/compress/zlib"
)

// Params are the inputs of a new token.
type Params struct {
	SDKAppID uint64
	UserID   string // any valid UTF-8, the empty string included

	// Expire is the lifetime in seconds, counted from Time. Tencent's
	// libraries default to 180 days (15552000).
	Expire int64

	// Time is the issue time; the zero Time means time.Now(). It is
	// written in whole seconds and must not be before 1970.
	Time time.Time

	// UserBuf, when not nil, is written to TLS.userbuf and signed; an
	// empty non-nil slice gives "TLS.userbuf":"". A nil UserBuf gives a
	// plain UserSig.
	UserBuf []byte

	// CompressionLevel is the zlib level, from 0 to 9. The default 0
	// stores the JSON uncompressed, as Tencent's Go library v1.4.0 does.
	// Issuing is then about five times faster than at level 6 (measured
	// in BENCHMARKS.md), and a typical token is about 60 characters longer.
	CompressionLevel int
}

// Errors returned when issuing a token.
var (
	ErrInvalidUserID = errors.New("usersig: UserID is not valid UTF-8")
	ErrInvalidTime   = errors.New("usersig: issue time is before 1970")
	ErrInvalidLevel  = errors.New("usersig: compression level is not between 0 and 9")
)

// Signer issues tokens with one secret key. It is safe for concurrent use.
type Signer struct {
	key *secretKey
}

// NewSigner returns a Signer for the secret key text, as Tencent's console
// shows it.
func NewSigner(key string) (*Signer, error) {
	if key == "" {
		return nil, ErrNoKey
	}
	return &Signer{key: newSecretKey(key)}, nil
}

// Issue returns a new token signed with key. It is a shortcut for
// NewSigner(key) followed by Signer.Issue.
func Issue(key string, p Params) (string, error) {
	s, err := NewSigner(key)
	if err != nil {
		return "", err
	}
	return s.Issue(p)
}

// Issue returns a new token. The JSON document is the one that Tencent's
// Go library v1.4.0 writes (member order, escaping and trailing newline),
// except that members are never left out when empty or zero, so every
// official verifier accepts the token. At the default compression level
// the whole token is the one that library issues for the same inputs.
func (s *Signer) Issue(p Params) (string, error) {
	if !utf8.ValidString(p.UserID) {
		return "", ErrInvalidUserID
	}
	if p.CompressionLevel < 0 || p.CompressionLevel > 9 {
		return "", ErrInvalidLevel
	}
	t := p.Time
	if t.IsZero() {
		t = time.Now()
	}
	issued := t.Unix()
	if issued < 0 {
		return "", ErrInvalidTime
	}

	var userBufText []byte
	hasUserBuf := p.UserBuf != nil
	if hasUserBuf {
		userBufText = base64.StdEncoding.AppendEncode(nil, p.UserBuf)
	}

	msg := signedMessage(make([]byte, 0, 128+len(p.UserID)+len(userBufText)),
		[]byte(p.UserID), p.SDKAppID, issued, p.Expire, userBufText, hasUserBuf)
	var sum [sha256.Size]byte
	sig := s.key.sum(sum[:0], msg)

	doc := appendDocument(make([]byte, 0, 160+len(p.UserID)+len(userBufText)),
		p.UserID, p.SDKAppID, issued, p.Expire, userBufText, hasUserBuf, sig)
	return compressAndEncode(doc, p.CompressionLevel), nil
}

func appendDocument(dst []byte, userID string, sdkAppID uint64, issued, expire int64, userBufText []byte, hasUserBuf bool, sig []byte) []byte {
	dst = append(dst, `{"TLS.ver":"2.0","TLS.identifier":`...)
	dst = appendJSONString(dst, userID)
	dst = append(dst, `,"TLS.sdkappid":`...)
	dst = strconv.AppendUint(dst, sdkAppID, 10)
	dst = append(dst, `,"TLS.expire":`...)
	dst = strconv.AppendInt(dst, expire, 10)
	dst = append(dst, `,"TLS.time":`...)
	dst = strconv.AppendInt(dst, issued, 10)
	if hasUserBuf {
		dst = append(dst, `,"TLS.userbuf":"`...)
		dst = append(dst, userBufText...) // base64: nothing to escape
		dst = append(dst, '"')
	}
	dst = append(dst, `,"TLS.sig":"`...)
	dst = base64.StdEncoding.AppendEncode(dst, sig)
	dst = append(dst, "\"}\n"...)
	return dst
}

// appendJSONString appends s as a JSON string escaped the way Go's
// encoding/json does it (which also escapes '<', '>', '&', U+2028 and
// U+2029), so that the document matches Tencent's Go library.
func appendJSONString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			quoted, _ := json.Marshal(s) // a string always marshals
			return append(dst, quoted...)
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

// zlibWriters holds a pool of writers for each compression level 1 to 9.
var zlibWriters [10]sync.Pool

func init() {
	for level := 1; level <= 9; level++ {
		zlibWriters[level].New = func() any {
			w, _ := zlib.NewWriterLevel(nil, level) // the level is valid
			return w
		}
	}
}

// compressAndEncode wraps doc in a zlib stream at the given level and
// encodes it in the outer alphabet.
func compressAndEncode(doc []byte, level int) string {
	var z []byte
	if level == 0 {
		z = appendStoredZlib(make([]byte, 0, len(doc)+16+len(doc)/65535*5), doc)
	} else {
		var buf bytes.Buffer
		buf.Grow(len(doc) + 32)
		w := zlibWriters[level].Get().(*zlib.Writer)
		w.Reset(&buf)
		w.Write(doc) // writes to a bytes.Buffer do not fail
		w.Close()
		zlibWriters[level].Put(w)
		z = buf.Bytes()
	}
	return string(encodeOuter(make([]byte, 0, base64.StdEncoding.EncodedLen(len(z))), z))
}

// appendStoredZlib appends a zlib stream that holds data in stored
// (uncompressed) DEFLATE blocks, framed as Go's compress/flate frames them
// at level 0: full blocks, then an empty final block. The output is the
// one of Tencent's Go library v1.4.0 for the same data.
func appendStoredZlib(dst, data []byte) []byte {
	dst = append(dst, 0x78, 0x01) // deflate, 32 KiB window, no dictionary, fastest
	for rest := data; len(rest) > 0; {
		n := min(len(rest), 0xFFFF)
		dst = append(dst, 0x00, byte(n), byte(n>>8), ^byte(n), ^byte(n>>8))
		dst = append(dst, rest[:n]...)
		rest = rest[n:]
	}
	dst = append(dst, 0x01, 0x00, 0x00, 0xFF, 0xFF)
	return binary.BigEndian.AppendUint32(dst, adler32.Checksum(data))
}

// encodeOuter appends the outer encoding of b: standard base64 with
// '*', '-' and '_' for '+', '/' and '='.
func encodeOuter(dst, b []byte) []byte {
	start := len(dst)
	dst = base64.StdEncoding.AppendEncode(dst, b)
	for i := start; i < len(dst); i++ {
		switch dst[i] {
		case '+':
			dst[i] = '*'
		case '/':
			dst[i] = '-'
		case '=':
			dst[i] = '_'
		}
	}
	return dst
}
