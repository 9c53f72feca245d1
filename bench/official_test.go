package bench

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"hash"
	"io"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
	kzlib "github.com/klauspost/compress/zlib"
	"github.com/tencentyun/tls-sig-api-v2-golang/tencentyun"
)

// The typical token: test vector c000 of usersig/testdata/usersig-v2.jsonl,
// made by Tencent's Node library 1.0.2 at zlib level 6, for a 7-character
// UserID with the default lifetime of 180 days.
const (
	benchKey      = "3edf87da6dc2bd9a148492b81d6e1f8962847ac1d94938ad0267cdf6a2d778cd"
	benchSDKAppID = 1400000000
	benchUserID   = "xiaojun"
	benchTime     = 1700000000
	benchExpire   = 15552000

	specToken    = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwhWZiflZpXlQqeKU7MSCgswUJStDEwMogMiUZOamKlkZmqOKplYUZBaBxE1NTY3gosWZ6UpWSjme4e4WBQXeGUV5*omFnqGFRfnFzmGW2c4VUWaeTmVmpRXlbsmmSZ4R*Y62SrUAs6wy2g__"
	specDocument = `{"TLS.ver":"2.0","TLS.identifier":"xiaojun","TLS.sdkappid":1400000000,"TLS.time":1700000000,"TLS.expire":15552000,"TLS.sig":"lIWG8ppKhrn/aqIUqrosCV9kCxZ6IBv6uxwFc5bIXoA="}`
	specHMACHex  = "948586f29a4a86b9ff6aa214aaba2c095f640b167a201bfabb1c057396c85e80"

	// The PrivateMapKey benchmarks scope the token to this numeric room
	// with every privilege.
	benchRoomID    = 10000
	benchPrivilege = usersig.PrivilegeAll
)

// tokenCase is one token that both verifiers are measured on, with the
// intermediate values that the floor benchmarks start from.
type tokenCase struct {
	name     string
	token    string
	zlib     []byte    // the token after the outer base64 decoding
	document []byte    // the inflated JSON, as compress/zlib returns it
	message  []byte    // the text that TLS.sig is the HMAC of
	now      time.Time // TLS.time, at which the token is valid
	doc      usersig.Document
}

// newTokenCase decodes token into its layers.
func newTokenCase(tb testing.TB, name, token string) tokenCase {
	tb.Helper()
	doc, err := usersig.Decode(token, false)
	if err != nil {
		tb.Fatalf("decoding the %s token: %v", name, err)
	}
	z, err := decodeOuter(token)
	if err != nil {
		tb.Fatalf("base64-decoding the %s token: %v", name, err)
	}
	zr, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		tb.Fatalf("opening the zlib stream of the %s token: %v", name, err)
	}
	document, err := io.ReadAll(zr)
	if err != nil {
		tb.Fatalf("inflating the %s token: %v", name, err)
	}
	return tokenCase{
		name:     name,
		token:    token,
		zlib:     z,
		document: document,
		message:  signedMessage(doc),
		now:      time.Unix(doc.Time, 0),
		doc:      doc,
	}
}

// decodeOuter undoes the outer encoding: standard base64 with '*', '-'
// and '_' in place of '+', '/' and '='.
func decodeOuter(token string) ([]byte, error) {
	std := strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(token)
	return base64.StdEncoding.DecodeString(std)
}

// signedMessage builds the HMAC input from the decoded members.
func signedMessage(d usersig.Document) []byte {
	var msg []byte
	msg = append(msg, "TLS.identifier:"+d.UserID+"\n"...)
	msg = append(msg, "TLS.sdkappid:"+strconv.FormatUint(d.SDKAppID, 10)+"\n"...)
	msg = append(msg, "TLS.time:"+strconv.FormatInt(d.Time, 10)+"\n"...)
	msg = append(msg, "TLS.expire:"+strconv.FormatInt(d.Expire, 10)+"\n"...)
	if d.HasUserBuf {
		msg = append(msg, "TLS.userbuf:"+d.UserBufText+"\n"...)
	}
	return msg
}

// userSigCases returns the typical plain UserSig in three forms. The first
// is vector c000 (zlib level 6, Node's member order). The second has the
// same claims, issued by usersig (level 6, Go's member order). The third is
// issued now by the official library (stored blocks, level 0).
func userSigCases(tb testing.TB) []tokenCase {
	tb.Helper()
	ours, err := usersig.Issue(benchKey, usersig.Params{
		SDKAppID: benchSDKAppID,
		UserID:   benchUserID,
		Expire:   benchExpire,
		Time:     time.Unix(benchTime, 0),
		// The default level 0 would give the same framing as the official
		// token; level 6 measures a compressed token of Go's member order.
		CompressionLevel: 6,
	})
	if err != nil {
		tb.Fatalf("usersig.Issue: %v", err)
	}
	official, err := tencentyun.GenUserSig(benchSDKAppID, benchKey, benchUserID, benchExpire)
	if err != nil {
		tb.Fatalf("tencentyun.GenUserSig: %v", err)
	}

	spec := newTokenCase(tb, "spec-example", specToken)
	if string(spec.document) != specDocument {
		tb.Fatalf("vector c000 inflates to %q, want %q", spec.document, specDocument)
	}
	return []tokenCase{
		spec,
		newTokenCase(tb, "ours-level6", ours),
		newTokenCase(tb, "official-level0", official),
	}
}

// privateMapKeyCases returns a PrivateMapKey for benchRoomID issued by
// usersig (level 6) and by the official library (level 0).
func privateMapKeyCases(tb testing.TB) []tokenCase {
	tb.Helper()
	s := newSigner(tb)
	ours, err := s.IssuePrivateMapKey(usersig.Params{
		SDKAppID:         benchSDKAppID,
		UserID:           benchUserID,
		Expire:           benchExpire,
		Time:             time.Unix(benchTime, 0),
		CompressionLevel: 6,
	}, benchRoomID, benchPrivilege)
	if err != nil {
		tb.Fatalf("usersig IssuePrivateMapKey: %v", err)
	}
	official, err := tencentyun.GenPrivateMapKey(benchSDKAppID, benchKey, benchUserID, benchExpire, benchRoomID, uint32(benchPrivilege))
	if err != nil {
		tb.Fatalf("tencentyun.GenPrivateMapKey: %v", err)
	}

	cases := []tokenCase{
		newTokenCase(tb, "ours-level6", ours),
		newTokenCase(tb, "official-level0", official),
	}
	for _, tc := range cases {
		if !tc.doc.HasUserBuf || tc.doc.UserBuf == nil {
			tb.Fatalf("%s PrivateMapKey has no decodable TLS.userbuf", tc.name)
		}
	}
	return cases
}

func newVerifier(tb testing.TB) *usersig.Verifier {
	tb.Helper()
	v, err := usersig.NewVerifier([]string{benchKey}, usersig.Policy{})
	if err != nil {
		tb.Fatalf("usersig.NewVerifier: %v", err)
	}
	return v
}

func newSigner(tb testing.TB) *usersig.Signer {
	tb.Helper()
	s, err := usersig.NewSigner(benchKey)
	if err != nil {
		tb.Fatalf("usersig.NewSigner: %v", err)
	}
	return s
}

// errSink keeps the compiler from dropping calls whose result a loop
// ignores.
var errSink error

// BenchmarkVerify measures an uncached verification of a plain UserSig:
// usersig's Verifier (keyed HMAC state and buffers pooled) against the
// official VerifyUserSig, which keys a new HMAC and allocates per call.
func BenchmarkVerify(b *testing.B) {
	cases := userSigCases(b)

	for _, tc := range cases {
		b.Run("ours/"+tc.name, func(b *testing.B) {
			v := newVerifier(b)
			r := usersig.Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: tc.now}
			c, err := v.Verify(tc.token, r)
			if err != nil {
				b.Fatalf("Verify: %v", err)
			}
			if c.UserID != benchUserID || c.SDKAppID != benchSDKAppID || c.Expire != benchExpire || c.HasUserBuf {
				b.Fatalf("Verify returned claims %+v", c)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				_, errSink = v.Verify(tc.token, r)
			}
			cpu.report(b)
		})
	}

	for _, tc := range cases {
		b.Run("official/"+tc.name, func(b *testing.B) {
			if err := tencentyun.VerifyUserSig(benchSDKAppID, benchKey, benchUserID, tc.token, tc.now); err != nil {
				b.Fatalf("VerifyUserSig: %v", err)
			}
			if err := tencentyun.VerifyUserSig(benchSDKAppID, benchKey, "someone-else", tc.token, tc.now); err == nil {
				b.Fatal("VerifyUserSig accepted the token for another UserID")
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				errSink = tencentyun.VerifyUserSig(benchSDKAppID, benchKey, benchUserID, tc.token, tc.now)
			}
			cpu.report(b)
		})
	}
}

// BenchmarkIssue measures issuing the typical UserSig at the current time.
// usersig compresses at zlib level 6, while the official library stores
// the JSON uncompressed (level 0) by default.
func BenchmarkIssue(b *testing.B) {
	b.Run("ours", func(b *testing.B) {
		s := newSigner(b)
		p := usersig.Params{SDKAppID: benchSDKAppID, UserID: benchUserID, Expire: benchExpire}
		token, err := s.Issue(p)
		if err != nil {
			b.Fatalf("Issue: %v", err)
		}
		if err := tencentyun.VerifyUserSig(benchSDKAppID, benchKey, benchUserID, token, time.Now()); err != nil {
			b.Fatalf("the official VerifyUserSig rejects the issued token: %v", err)
		}

		b.ReportAllocs()
		cpu := startCPUClock()
		for b.Loop() {
			_, errSink = s.Issue(p)
		}
		cpu.report(b)
	})

	b.Run("official", func(b *testing.B) {
		token, err := tencentyun.GenUserSig(benchSDKAppID, benchKey, benchUserID, benchExpire)
		if err != nil {
			b.Fatalf("GenUserSig: %v", err)
		}
		r := usersig.Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: time.Now()}
		if _, err := newVerifier(b).Verify(token, r); err != nil {
			b.Fatalf("usersig rejects the issued token: %v", err)
		}

		b.ReportAllocs()
		cpu := startCPUClock()
		for b.Loop() {
			_, errSink = tencentyun.GenUserSig(benchSDKAppID, benchKey, benchUserID, benchExpire)
		}
		cpu.report(b)
	})
}

// BenchmarkPrivateMapKey measures issuing a PrivateMapKey for a numeric
// room, and verifying one together with its expected userbuf (the
// privilege map).
func BenchmarkPrivateMapKey(b *testing.B) {
	b.Run("issue/ours", func(b *testing.B) {
		s := newSigner(b)
		p := usersig.Params{SDKAppID: benchSDKAppID, UserID: benchUserID, Expire: benchExpire}
		token, err := s.IssuePrivateMapKey(p, benchRoomID, benchPrivilege)
		if err != nil {
			b.Fatalf("IssuePrivateMapKey: %v", err)
		}
		checkOfficialPrivateMapKey(b, token)

		b.ReportAllocs()
		cpu := startCPUClock()
		for b.Loop() {
			_, errSink = s.IssuePrivateMapKey(p, benchRoomID, benchPrivilege)
		}
		cpu.report(b)
	})

	b.Run("issue/official", func(b *testing.B) {
		token, err := tencentyun.GenPrivateMapKey(benchSDKAppID, benchKey, benchUserID, benchExpire, benchRoomID, uint32(benchPrivilege))
		if err != nil {
			b.Fatalf("GenPrivateMapKey: %v", err)
		}
		checkOursPrivateMapKey(b, token)

		b.ReportAllocs()
		cpu := startCPUClock()
		for b.Loop() {
			_, errSink = tencentyun.GenPrivateMapKey(benchSDKAppID, benchKey, benchUserID, benchExpire, benchRoomID, uint32(benchPrivilege))
		}
		cpu.report(b)
	})

	cases := privateMapKeyCases(b)
	for _, tc := range cases {
		b.Run("verify/ours/"+tc.name, func(b *testing.B) {
			v := newVerifier(b)
			r := usersig.Request{
				SDKAppID:     benchSDKAppID,
				UserID:       benchUserID,
				Now:          tc.now,
				Mode:         usersig.ModeWithUserBuf,
				MatchUserBuf: true,
				UserBuf:      tc.doc.UserBuf,
			}
			c, err := v.Verify(tc.token, r)
			if err != nil {
				b.Fatalf("Verify: %v", err)
			}
			if !bytes.Equal(c.UserBuf, tc.doc.UserBuf) {
				b.Fatalf("Verify returned userbuf %x, want %x", c.UserBuf, tc.doc.UserBuf)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				_, errSink = v.Verify(tc.token, r)
			}
			cpu.report(b)
		})
	}
	for _, tc := range cases {
		b.Run("verify/official/"+tc.name, func(b *testing.B) {
			err := tencentyun.VerifyUserSigWithBuf(benchSDKAppID, benchKey, benchUserID, tc.token, tc.now, tc.doc.UserBuf)
			if err != nil {
				b.Fatalf("VerifyUserSigWithBuf: %v", err)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				errSink = tencentyun.VerifyUserSigWithBuf(benchSDKAppID, benchKey, benchUserID, tc.token, tc.now, tc.doc.UserBuf)
			}
			cpu.report(b)
		})
	}
}

// checkOfficialPrivateMapKey fails unless the official verifier accepts a
// PrivateMapKey that usersig issued now for benchRoomID.
func checkOfficialPrivateMapKey(tb testing.TB, token string) {
	tb.Helper()
	tc := newTokenCase(tb, "issued", token)
	m, err := usersig.ParsePrivilegeMap(tc.doc.UserBuf)
	if err != nil {
		tb.Fatalf("ParsePrivilegeMap: %v", err)
	}
	if m.RoomID != benchRoomID || m.Privileges != benchPrivilege || m.Account != benchUserID {
		tb.Fatalf("privilege map %+v, want room %d, privileges %v, account %q", m, benchRoomID, benchPrivilege, benchUserID)
	}
	if err := tencentyun.VerifyUserSigWithBuf(benchSDKAppID, benchKey, benchUserID, token, tc.now, tc.doc.UserBuf); err != nil {
		tb.Fatalf("the official VerifyUserSigWithBuf rejects the issued PrivateMapKey: %v", err)
	}
}

// checkOursPrivateMapKey fails unless usersig accepts a PrivateMapKey that
// the official library issued now for benchRoomID.
func checkOursPrivateMapKey(tb testing.TB, token string) {
	tb.Helper()
	tc := newTokenCase(tb, "issued", token)
	r := usersig.Request{
		SDKAppID:     benchSDKAppID,
		UserID:       benchUserID,
		Now:          tc.now,
		Mode:         usersig.ModeWithUserBuf,
		MatchUserBuf: true,
		UserBuf:      tc.doc.UserBuf,
	}
	c, err := newVerifier(tb).Verify(token, r)
	if err != nil {
		tb.Fatalf("usersig rejects the official PrivateMapKey: %v", err)
	}
	m, err := usersig.ParsePrivilegeMap(c.UserBuf)
	if err != nil {
		tb.Fatalf("ParsePrivilegeMap: %v", err)
	}
	if m.RoomID != benchRoomID || m.Privileges != benchPrivilege {
		tb.Fatalf("privilege map %+v, want room %d and privileges %v", m, benchRoomID, benchPrivilege)
	}
}

// BenchmarkFloor measures alone the two steps that any verifier of these
// tokens must run. The first is the HMAC-SHA256 of the signed message with
// an already keyed, pooled HMAC state (Reset, Write, Sum, as usersig does
// it). The second inflates the zlib bytes with a reused klauspost/compress
// reader into a fixed buffer. Their sum is the floor that usersig's Verify
// is compared with.
func BenchmarkFloor(b *testing.B) {
	cases := userSigCases(b)

	for _, tc := range cases {
		b.Run("hmac/"+tc.name, func(b *testing.B) {
			h := newHMACFloor()
			if sum := h.sum(tc.message); !bytes.Equal(sum, tc.doc.Signature[:]) {
				b.Fatalf("HMAC %x, want TLS.sig %x", sum, tc.doc.Signature)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				h.sum(tc.message)
			}
			cpu.report(b)
		})
	}

	for _, tc := range cases {
		b.Run("inflate/"+tc.name, func(b *testing.B) {
			f := newInflateFloor(b)
			if out := f.inflate(b, tc.zlib); !bytes.Equal(out, tc.document) {
				b.Fatalf("inflated %q, want %q", out, tc.document)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				f.inflate(b, tc.zlib)
			}
			cpu.report(b)
		})
	}

	for _, tc := range cases {
		b.Run("hmac+inflate/"+tc.name, func(b *testing.B) {
			h := newHMACFloor()
			f := newInflateFloor(b)
			if out := f.inflate(b, tc.zlib); !bytes.Equal(out, tc.document) {
				b.Fatalf("inflated %q, want %q", out, tc.document)
			}
			if sum := h.sum(tc.message); !bytes.Equal(sum, tc.doc.Signature[:]) {
				b.Fatalf("HMAC %x, want TLS.sig %x", sum, tc.doc.Signature)
			}

			b.ReportAllocs()
			cpu := startCPUClock()
			for b.Loop() {
				f.inflate(b, tc.zlib)
				h.sum(tc.message)
			}
			cpu.report(b)
		})
	}
}

// hmacFloor is a pool of HMAC-SHA256 states keyed with benchKey and a
// reused output buffer.
type hmacFloor struct {
	pool sync.Pool
	out  [sha256.Size]byte
}

func newHMACFloor() *hmacFloor {
	f := &hmacFloor{}
	f.pool.New = func() any { return hmac.New(sha256.New, []byte(benchKey)) }
	return f
}

func (f *hmacFloor) sum(msg []byte) []byte {
	h := f.pool.Get().(hash.Hash)
	h.Reset()
	h.Write(msg)
	sum := h.Sum(f.out[:0])
	f.pool.Put(h)
	return sum
}

// inflateFloor is a klauspost/compress zlib reader that is reset onto each
// input, with a fixed output buffer as large as usersig's document limit.
type inflateFloor struct {
	src bytes.Reader
	zr  io.ReadCloser
	out []byte
}

func newInflateFloor(tb testing.TB) *inflateFloor {
	tb.Helper()
	f := &inflateFloor{out: make([]byte, usersig.MaxDocumentSize+1)}

	// NewReader reads the header at once, so it needs a valid stream.
	f.src.Reset(mustDecodeOuter(tb, specToken))
	zr, err := kzlib.NewReader(&f.src)
	if err != nil {
		tb.Fatalf("klauspost zlib.NewReader: %v", err)
	}
	f.zr = zr
	return f
}

func (f *inflateFloor) inflate(tb testing.TB, z []byte) []byte {
	f.src.Reset(z)
	if err := f.zr.(kzlib.Resetter).Reset(&f.src, nil); err != nil {
		tb.Fatalf("resetting the zlib reader: %v", err)
	}
	n := 0
	for {
		m, err := f.zr.Read(f.out[n:])
		n += m
		if err == io.EOF {
			return f.out[:n]
		}
		if err != nil {
			tb.Fatalf("inflating: %v", err)
		}
	}
}

func mustDecodeOuter(tb testing.TB, token string) []byte {
	tb.Helper()
	z, err := decodeOuter(token)
	if err != nil {
		tb.Fatalf("base64-decoding a token: %v", err)
	}
	return z
}

// TestFloorInputs checks the fixed inputs of the floor benchmarks against
// vector c000: the signed message and its HMAC.
func TestFloorInputs(t *testing.T) {
	spec := userSigCases(t)[0]

	wantMessage := "TLS.identifier:xiaojun\nTLS.sdkappid:1400000000\nTLS.time:1700000000\nTLS.expire:15552000\n"
	if string(spec.message) != wantMessage {
		t.Errorf("signed message %q, want %q", spec.message, wantMessage)
	}

	h := newHMACFloor()
	if got := hex.EncodeToString(h.sum(spec.message)); got != specHMACHex {
		t.Errorf("HMAC %s, want %s", got, specHMACHex)
	}
}
