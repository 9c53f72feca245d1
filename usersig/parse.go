package usersig

import (
	"encoding/binary"
	"math"
	"math/bits"
	"unicode/utf8"
)

// rawDoc is the parsed JSON document. Its byte slices point into the
// scratch buffers and are valid until the scratch goes back to the pool.
type rawDoc struct {
	identifier []byte
	userBuf    []byte // the TLS.userbuf text (base64), unescaped
	hasUserBuf bool
	sdkAppID   uint64
	time       int64
	expire     int64
	sig        [32]byte

	// The integer members as written, nil when absent. parseInteger
	// accepts only the canonical decimal form, so each text is what
	// strconv would write for the value, and the signed message can copy
	// it.
	sdkAppIDText []byte
	timeText     []byte
	expireText   []byte
}

// The members of the document, as bits of a "seen" mask.
const (
	seenVer = 1 << iota
	seenIdentifier
	seenSDKAppID
	seenTime
	seenExpire
	seenUserBuf
	seenSig
)

// maxDepth bounds the nesting of unknown member values.
const maxDepth = 32

type parser struct {
	b []byte
	i int
	s *scratch
}

// parseDocument parses the inflated JSON text strictly: a UTF-8 object with
// no duplicate member names, in which the TLS members have their exact
// types. Unknown members are checked for syntax and ignored.
func parseDocument(b []byte, s *scratch, d *rawDoc) error {
	p := parser{b: b, s: s}
	s.str = s.str[:0]

	p.skipSpace()
	if p.i >= len(b) {
		return errJSONSyntax
	}
	if b[p.i] != '{' {
		return errJSONNotObject
	}
	p.i++

	seen := 0
	p.skipSpace()
	if p.i < len(b) && b[p.i] == '}' {
		p.i++
	} else {
		for {
			p.skipSpace()
			name, err := p.parseString()
			if err != nil {
				return err
			}
			p.skipSpace()
			if p.i >= len(b) || b[p.i] != ':' {
				return errJSONSyntax
			}
			p.i++
			p.skipSpace()

			bit := memberBit(name)
			if bit != 0 {
				if seen&bit != 0 {
					return errJSONDuplicate
				}
				seen |= bit
				if err := p.parseMember(bit, d); err != nil {
					return err
				}
			} else {
				if err := p.rememberName(name); err != nil {
					return err
				}
				if err := p.skipValue(0); err != nil {
					return err
				}
			}

			p.skipSpace()
			if p.i >= len(b) {
				return errJSONSyntax
			}
			if b[p.i] == ',' {
				p.i++
				continue
			}
			if b[p.i] == '}' {
				p.i++
				break
			}
			return errJSONSyntax
		}
	}
	p.skipSpace()
	if p.i != len(b) {
		return errJSONSyntax
	}

	if seen&seenVer == 0 {
		return errVerMissing
	}
	if seen&seenSig == 0 {
		return errSigMissing
	}
	d.hasUserBuf = seen&seenUserBuf != 0
	return nil
}

func memberBit(name []byte) int {
	switch string(name) {
	case "TLS.ver":
		return seenVer
	case "TLS.identifier":
		return seenIdentifier
	case "TLS.sdkappid":
		return seenSDKAppID
	case "TLS.time":
		return seenTime
	case "TLS.expire":
		return seenExpire
	case "TLS.userbuf":
		return seenUserBuf
	case "TLS.sig":
		return seenSig
	}
	return 0
}

// rememberName records the name of an unknown member so that a second
// member of the same name is rejected. The set is made only for documents
// that have unknown members, which no official generator writes.
func (p *parser) rememberName(name []byte) error {
	if p.s.names == nil {
		p.s.names = make(map[string]struct{})
	}
	if _, dup := p.s.names[string(name)]; dup {
		return errJSONDuplicate
	}
	p.s.names[string(name)] = struct{}{}
	return nil
}

func (p *parser) parseMember(bit int, d *rawDoc) error {
	b := p.b
	switch bit {
	case seenVer:
		if p.i >= len(b) || b[p.i] != '"' {
			return errVerValue
		}
		v, err := p.parseString()
		if err != nil {
			return err
		}
		if string(v) != "2.0" {
			return errVerValue
		}
	case seenIdentifier:
		if p.i >= len(b) || b[p.i] != '"' {
			return errIdentifierType
		}
		v, err := p.parseString()
		if err != nil {
			return err
		}
		d.identifier = v
	case seenUserBuf:
		if p.i >= len(b) || b[p.i] != '"' {
			return errUserBufType
		}
		v, err := p.parseString()
		if err != nil {
			return err
		}
		d.userBuf = v
	case seenSig:
		if p.i >= len(b) || b[p.i] != '"' {
			return errSigValue
		}
		v, err := p.parseString()
		if err != nil {
			return err
		}
		// 32 bytes take 43 characters and one '=', so the decoded bytes
		// fit d.sig exactly. base64.StdEncoding.Strict() would also skip
		// CR and LF, but no 44-character text with them holds 32 bytes.
		if len(v) != 44 || v[43] != '=' || v[42] == '=' {
			return errSigValue
		}
		sig, err := appendBase64(d.sig[:0], v, &stdTable, false)
		if err != nil || len(sig) != 32 {
			return errSigValue
		}
	case seenSDKAppID:
		start := p.i
		neg, mag, ok := p.parseInteger()
		if !ok || neg {
			return errSDKAppIDValue
		}
		d.sdkAppID = mag
		d.sdkAppIDText = b[start:p.i]
	case seenTime:
		start := p.i
		neg, mag, ok := p.parseInteger()
		if !ok || neg || mag > math.MaxInt64 {
			return errTimeValue
		}
		d.time = int64(mag)
		d.timeText = b[start:p.i]
	case seenExpire:
		start := p.i
		neg, mag, ok := p.parseInteger()
		if !ok {
			return errExpireValue
		}
		d.expireText = b[start:p.i]
		switch {
		case !neg && mag <= math.MaxInt64:
			d.expire = int64(mag)
		case neg && mag <= 1<<63:
			d.expire = int64(-mag) // -2^63 wraps to itself, as wanted
		default:
			return errExpireValue
		}
	}
	return nil
}

func (p *parser) skipSpace() {
	for p.i < len(p.b) {
		// No byte above ' ' is whitespace, so one comparison ends the
		// loop at the usual next byte.
		if c := p.b[p.i]; c > ' ' || c != ' ' && c != '\t' && c != '\n' && c != '\r' {
			return
		}
		p.i++
	}
}

// parseInteger reads a JSON number that must be an integer: an optional
// minus sign and digits without leading zeros, fraction or exponent, whose
// magnitude fits in 64 bits. "-0" is rejected, since no generator writes
// it. ok is false for anything else, including a value that is not a
// number. The accepted text is thus the canonical decimal form of the
// value, which the signed message relies on.
func (p *parser) parseInteger() (neg bool, mag uint64, ok bool) {
	b := p.b
	i := p.i
	if i < len(b) && b[i] == '-' {
		neg = true
		i++
	}
	start := i
	for i < len(b) && b[i]-'0' <= 9 { // a byte below '0' wraps past 9
		mag = mag*10 + uint64(b[i]-'0') // can wrap, which the check below rejects
		i++
	}
	digits := i - start

	// Nineteen digits always fit in 64 bits, and twenty up to
	// math.MaxUint64. Texts with the same number of digits compare like
	// their values, so the string comparison finds the overflow.
	if digits > 20 || digits == 20 && string(b[start:i]) > "18446744073709551615" {
		return false, 0, false
	}
	if digits == 0 || (digits > 1 && b[start] == '0') || (neg && mag == 0) {
		return false, 0, false
	}
	if i < len(b) && (b[i] == '.' || b[i] == 'e' || b[i] == 'E') {
		return false, 0, false
	}
	p.i = i
	return neg, mag, true
}

// parseString reads a JSON string at p.i and returns its unescaped bytes.
// A string without escapes is returned as a slice of the document. A
// string with escapes is unescaped into s.str, which has room for every
// string of the document, so earlier results stay valid.
func (p *parser) parseString() ([]byte, error) {
	b := p.b
	i := p.i // a local copy, stored back to p.i on return
	if i >= len(b) || b[i] != '"' {
		return nil, errJSONSyntax
	}
	i++
	start := i

	// Fast path: no escapes.
	for {
		// Skip plain ASCII eight bytes at a time, up to the first byte
		// that needs a look of its own.
		for i+8 <= len(b) {
			if m := specialBytes(binary.LittleEndian.Uint64(b[i:])); m != 0 {
				i += bits.TrailingZeros64(m) / 8
				break
			}
			i += 8
		}
		if i >= len(b) {
			return nil, errJSONSyntax
		}

		c := b[i]
		switch {
		case c == '"':
			p.i = i + 1
			return b[start:i], nil
		case c == '\\':
			p.i = i
			return p.parseEscapedString(start)
		case c < 0x20:
			return nil, errJSONSyntax
		case c < utf8.RuneSelf:
			i++ // in the last seven bytes of the document
		default:
			r, size := utf8.DecodeRune(b[i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, errJSONUTF8
			}
			i += size
		}
	}
}

// Byte masks for specialBytes.
const (
	lowBits  = 0x0101010101010101
	highBits = 0x8080808080808080
)

// specialBytes marks the bytes that the fast path of parseString must not
// skip: '"', '\\', a control byte or a byte of a multibyte UTF-8 sequence.
// It returns w, eight bytes in little-endian order, with the high bit set
// in each such byte. A subtraction borrow can also mark a byte above a
// marked one, so only the lowest set bit is exact, and callers use only it.
func specialBytes(w uint64) uint64 {
	quote := w ^ (lowBits * '"')
	backslash := w ^ (lowBits * '\\')
	isQuote := (quote - lowBits) &^ quote             // zero byte after the XOR
	isBackslash := (backslash - lowBits) &^ backslash // likewise
	isControl := w - lowBits*0x20                     // a byte below 0x20 wraps past 0x80
	return (isQuote | isBackslash | isControl | w) & highBits
}

func (p *parser) parseEscapedString(start int) ([]byte, error) {
	b := p.b
	out := p.s.str
	first := len(out)
	out = append(out, b[start:p.i]...)

	for p.i < len(b) {
		c := b[p.i]
		switch {
		case c == '"':
			p.i++
			p.s.str = out
			return out[first:], nil
		case c == '\\':
			if p.i+1 >= len(b) {
				return nil, errJSONSyntax
			}
			esc := b[p.i+1]
			p.i += 2
			switch esc {
			case '"', '\\', '/':
				out = append(out, esc)
			case 'b':
				out = append(out, '\b')
			case 'f':
				out = append(out, '\f')
			case 'n':
				out = append(out, '\n')
			case 'r':
				out = append(out, '\r')
			case 't':
				out = append(out, '\t')
			case 'u':
				r, ok := p.hex4()
				if !ok {
					return nil, errJSONSyntax
				}
				if r >= 0xD800 && r < 0xDC00 {
					// A high surrogate must be followed by a low one.
					if p.i+1 >= len(b) || b[p.i] != '\\' || b[p.i+1] != 'u' {
						return nil, errJSONUTF8
					}
					p.i += 2
					lo, ok := p.hex4()
					if !ok {
						return nil, errJSONSyntax
					}
					if lo < 0xDC00 || lo > 0xDFFF {
						return nil, errJSONUTF8
					}
					r = 0x10000 + (r-0xD800)<<10 + (lo - 0xDC00)
				} else if r >= 0xDC00 && r <= 0xDFFF {
					return nil, errJSONUTF8
				}
				out = utf8.AppendRune(out, r)
			default:
				return nil, errJSONSyntax
			}
		case c < 0x20:
			return nil, errJSONSyntax
		case c < utf8.RuneSelf:
			out = append(out, c)
			p.i++
		default:
			r, size := utf8.DecodeRune(b[p.i:])
			if r == utf8.RuneError && size <= 1 {
				return nil, errJSONUTF8
			}
			out = append(out, b[p.i:p.i+size]...)
			p.i += size
		}
	}
	return nil, errJSONSyntax
}

func (p *parser) hex4() (rune, bool) {
	if p.i+4 > len(p.b) {
		return 0, false
	}
	var r rune
	for _, c := range p.b[p.i : p.i+4] {
		var v byte
		switch {
		case c >= '0' && c <= '9':
			v = c - '0'
		case c >= 'a' && c <= 'f':
			v = c - 'a' + 10
		case c >= 'A' && c <= 'F':
			v = c - 'A' + 10
		default:
			return 0, false
		}
		r = r<<4 | rune(v)
	}
	p.i += 4
	return r, true
}

// skipValue checks the syntax of any JSON value and moves past it.
func (p *parser) skipValue(depth int) error {
	if depth > maxDepth {
		return errJSONDepth
	}
	b := p.b
	if p.i >= len(b) {
		return errJSONSyntax
	}
	switch c := b[p.i]; {
	case c == '"':
		_, err := p.parseString()
		return err
	case c == '{':
		return p.skipObject(depth)
	case c == '[':
		return p.skipArray(depth)
	case c == 't':
		return p.literal("true")
	case c == 'f':
		return p.literal("false")
	case c == 'n':
		return p.literal("null")
	case c == '-' || (c >= '0' && c <= '9'):
		return p.skipNumber()
	}
	return errJSONSyntax
}

func (p *parser) skipObject(depth int) error {
	p.i++ // '{'
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == '}' {
		p.i++
		return nil
	}
	for {
		p.skipSpace()
		if _, err := p.parseString(); err != nil {
			return err
		}
		p.skipSpace()
		if p.i >= len(p.b) || p.b[p.i] != ':' {
			return errJSONSyntax
		}
		p.i++
		p.skipSpace()
		if err := p.skipValue(depth + 1); err != nil {
			return err
		}
		p.skipSpace()
		if p.i >= len(p.b) {
			return errJSONSyntax
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case '}':
			p.i++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (p *parser) skipArray(depth int) error {
	p.i++ // '['
	p.skipSpace()
	if p.i < len(p.b) && p.b[p.i] == ']' {
		p.i++
		return nil
	}
	for {
		p.skipSpace()
		if err := p.skipValue(depth + 1); err != nil {
			return err
		}
		p.skipSpace()
		if p.i >= len(p.b) {
			return errJSONSyntax
		}
		switch p.b[p.i] {
		case ',':
			p.i++
		case ']':
			p.i++
			return nil
		default:
			return errJSONSyntax
		}
	}
}

func (p *parser) literal(word string) error {
	if len(p.b)-p.i < len(word) || string(p.b[p.i:p.i+len(word)]) != word {
		return errJSONSyntax
	}
	p.i += len(word)
	return nil
}

// skipNumber checks the full JSON number grammar.
func (p *parser) skipNumber() error {
	b := p.b
	i := p.i
	if b[i] == '-' {
		i++
	}
	switch {
	case i < len(b) && b[i] == '0':
		i++
	case i < len(b) && b[i] >= '1' && b[i] <= '9':
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	default:
		return errJSONSyntax
	}
	if i < len(b) && b[i] == '.' {
		i++
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errJSONSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	if i < len(b) && (b[i] == 'e' || b[i] == 'E') {
		i++
		if i < len(b) && (b[i] == '+' || b[i] == '-') {
			i++
		}
		if i >= len(b) || b[i] < '0' || b[i] > '9' {
			return errJSONSyntax
		}
		for i < len(b) && b[i] >= '0' && b[i] <= '9' {
			i++
		}
	}
	p.i = i
	return nil
}
