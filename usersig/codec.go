package usersig

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"io"
	"strings"
	"sync"

	"github.com/klauspost/compress/flate"
)

// Size limits applied before any other work. The largest token that an
// official generator produced for the test vectors is 4244 characters with
// 3175 bytes of JSON (a 3000-character UserID), so both limits leave room.
const (
	// MaxTokenLength is the maximum number of characters of a token, not
	// counting CR and LF.
	MaxTokenLength = 8192

	// MaxDocumentSize is the maximum size in bytes of the inflated JSON
	// document. Larger documents are rejected as soon as inflating passes
	// this size, so an inflate bomb costs at most this much output.
	MaxDocumentSize = 16 << 10

	// maxRawLength bounds the input including CR and LF, which Java 1.0
	// inserted after every 76 characters.
	maxRawLength = MaxTokenLength + MaxTokenLength/38 + 2
)

// The outer alphabet: standard base64 with '*', '-' and '_' in place of
// '+', '/' and '='. The table maps each byte to its 6-bit value, padTag
// for padding, or invalidTag.
const (
	invalidTag = 0xFF
	padTag     = 0xFE
)

var (
	strictTable  [256]byte
	lenientTable [256]byte
	stdTable     [256]byte // standard base64 ('+', '/', '='), for TLS.sig
)

func init() {
	const std = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"
	for i := range strictTable {
		strictTable[i] = invalidTag
		lenientTable[i] = invalidTag
		stdTable[i] = invalidTag
	}
	for i := 0; i < len(std); i++ {
		strictTable[std[i]] = byte(i)
		lenientTable[std[i]] = byte(i)
		stdTable[std[i]] = byte(i)
	}
	strictTable['*'], strictTable['-'], strictTable['_'] = 62, 63, padTag
	lenientTable['*'], lenientTable['-'], lenientTable['_'] = 62, 63, padTag
	lenientTable['+'], lenientTable['/'], lenientTable['='] = 62, 63, padTag
	stdTable['+'], stdTable['/'], stdTable['='] = 62, 63, padTag
}

// scratch holds the buffers and the inflater of one decode. It is pooled
// so that a decode allocates nothing in the common case.
type scratch struct {
	token []byte // the token without CR and LF, when it had any
	zbuf  []byte // base64-decoded zlib stream
	doc   []byte // inflated JSON
	str   []byte // unescaped JSON strings; cap >= MaxDocumentSize so it never grows
	msg   []byte // HMAC message
	sum   []byte // HMAC digest
	names map[string]struct{}
	br    bytes.Reader
	fr    io.ReadCloser // klauspost flate reader, reset for each stream
}

var scratchPool = sync.Pool{New: func() any {
	return &scratch{
		zbuf: make([]byte, 0, MaxTokenLength/4*3),
		doc:  make([]byte, 0, MaxDocumentSize+1),
		str:  make([]byte, 0, MaxDocumentSize+1),
		msg:  make([]byte, 0, 256),
		sum:  make([]byte, 0, sha256.Size),
	}
}}

func getScratch() *scratch { return scratchPool.Get().(*scratch) }

func putScratch(s *scratch) {
	// Drop buffers that grew past their usual size (long HMAC messages),
	// and the member-name set, so that the pool keeps no large objects.
	if cap(s.msg) > 4096 {
		s.msg = make([]byte, 0, 256)
	}
	s.names = nil
	s.br.Reset(nil)
	scratchPool.Put(s)
}

// decodeOuter turns the outer base64 text into the zlib bytes, stored in
// s.zbuf. CR and LF are ignored; every other character must be in the
// alphabet, and the encoding must be canonical (padded, zero unused bits)
// unless lenient is set, which also accepts '+', '/', '=' and missing
// padding.
func decodeOuter(token string, lenient bool, s *scratch) ([]byte, error) {
	if len(token) == 0 {
		return nil, ErrEmpty
	}
	if len(token) > maxRawLength {
		return nil, errTooLong
	}

	// CR and LF are outside the alphabet, so a token with a line break
	// always fails this first attempt and is decoded again without them.
	// Typical tokens have none, and skip the search for them.
	z, err := decodeBase64(token, lenient, s)
	if err == nil || strings.IndexByte(token, '\n') < 0 && strings.IndexByte(token, '\r') < 0 {
		return z, err
	}

	b := s.token[:0]
	for i := 0; i < len(token); i++ {
		if c := token[i]; c != '\n' && c != '\r' {
			b = append(b, c)
		}
	}
	s.token = b
	if len(b) == 0 {
		return nil, ErrEmpty
	}
	return decodeBase64(b, lenient, s)
}

func decodeBase64[T string | []byte](src T, lenient bool, s *scratch) ([]byte, error) {
	if len(src) > MaxTokenLength {
		return nil, errTooLong
	}
	table := &strictTable
	if lenient {
		table = &lenientTable
	}
	z, err := appendBase64(s.zbuf[:0], src, table, lenient)
	if err != nil {
		return nil, err
	}
	s.zbuf = z
	return z, nil
}

// appendBase64 appends to dst the bytes that src encodes in the alphabet
// of table. Unless lenient is set, the encoding must be canonical: padded,
// with zero unused bits.
func appendBase64[T string | []byte](dst []byte, src T, table *[256]byte, lenient bool) ([]byte, error) {
	// Strip the padding (at most two characters) and check that it
	// completes the last group.
	n := len(src)
	pad := 0
	for pad < 2 && n > 0 && table[src[n-1]] == padTag {
		n--
		pad++
	}
	if lenient {
		if pad > 0 && (n+pad)%4 != 0 {
			return nil, errBase64
		}
	} else if len(src)%4 != 0 {
		return nil, errBase64
	}

	i := 0
	// Eight characters give six bytes, with one check for the whole group.
	// A group with an invalid character stops this loop, and the loop
	// below finds and classifies that character.
	for ; i+8 <= n; i += 8 {
		g := src[i : i+8]
		c0, c1, c2, c3 := table[g[0]], table[g[1]], table[g[2]], table[g[3]]
		c4, c5, c6, c7 := table[g[4]], table[g[5]], table[g[6]], table[g[7]]
		if c0|c1|c2|c3|c4|c5|c6|c7 >= 64 {
			break
		}
		v := uint64(c0)<<42 | uint64(c1)<<36 | uint64(c2)<<30 | uint64(c3)<<24 |
			uint64(c4)<<18 | uint64(c5)<<12 | uint64(c6)<<6 | uint64(c7)
		dst = append(dst, byte(v>>40), byte(v>>32), byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
	}
	for ; i+4 <= n; i += 4 {
		a, b, c, d := table[src[i]], table[src[i+1]], table[src[i+2]], table[src[i+3]]
		if a|b|c|d >= 64 {
			return nil, classify(a, b, c, d)
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst = append(dst, byte(v>>16), byte(v>>8), byte(v))
	}
	switch n - i {
	case 0:
	case 2:
		a, b := table[src[i]], table[src[i+1]]
		if a|b >= 64 {
			return nil, classify(a, b, 0, 0)
		}
		if b&0x0F != 0 {
			return nil, errBase64
		}
		dst = append(dst, a<<2|b>>4)
	case 3:
		a, b, c := table[src[i]], table[src[i+1]], table[src[i+2]]
		if a|b|c >= 64 {
			return nil, classify(a, b, c, 0)
		}
		if c&0x03 != 0 {
			return nil, errBase64
		}
		v := uint32(a)<<10 | uint32(b)<<4 | uint32(c)>>2
		dst = append(dst, byte(v>>8), byte(v))
	default:
		return nil, errBase64
	}
	return dst, nil
}

// classify distinguishes a character outside the alphabet from misplaced
// padding.
func classify(a, b, c, d byte) error {
	if a == invalidTag || b == invalidTag || c == invalidTag || d == invalidTag {
		return errAlphabet
	}
	return errBase64
}

// inflate decompresses the zlib stream z into s.doc. It checks the zlib
// framing itself: the header (FDICT must be clear) and, after the deflate
// data, the Adler-32 trailer with nothing after it. Only the deflate data
// goes through the flate reader, which saves the zlib reader's second
// header read and its per-Read checksum update. Inflating stops as soon
// as the output passes MaxDocumentSize.
func inflate(z []byte, s *scratch) ([]byte, error) {
	if len(z) < 2 {
		return nil, errZlibHeader
	}
	cmf, flg := z[0], z[1]
	if cmf&0x0F != 8 || cmf>>4 > 7 || (uint16(cmf)<<8|uint16(flg))%31 != 0 {
		return nil, errZlibHeader
	}
	if flg&0x20 != 0 {
		return nil, errZlibDict
	}

	// The flate reader takes bytes one at a time from s.br (an
	// io.ByteReader), so it never reads past the end of the deflate data
	// and s.br keeps the trailer.
	s.br.Reset(z[2:])
	if s.fr == nil {
		s.fr = flate.NewReader(&s.br)
	} else if err := s.fr.(flate.Resetter).Reset(&s.br, nil); err != nil {
		return nil, errZlibData
	}

	buf := s.doc[:MaxDocumentSize+1]
	n := 0
	for {
		m, err := s.fr.Read(buf[n:])
		n += m
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, errZlibData
		}
		if n > MaxDocumentSize {
			return nil, errInflateTooBig
		}
	}

	// The checks run in the order of a zlib reader, which reports a short
	// trailer or a wrong checksum as the deflate data ends, before its
	// caller can check the size or look for bytes after the stream.
	trailer := z[len(z)-s.br.Len():]
	if len(trailer) < 4 {
		return nil, errZlibData
	}
	if binary.BigEndian.Uint32(trailer) != adler32Checksum(buf[:n]) {
		return nil, errZlibChecksum
	}
	if n > MaxDocumentSize {
		return nil, errInflateTooBig
	}
	if len(trailer) > 4 {
		return nil, errZlibTrailing
	}
	return buf[:n], nil
}
