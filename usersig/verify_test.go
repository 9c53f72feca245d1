package usersig

import (
	"bytes"
	"compress/zlib"
	"errors"
	"io"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"
)

const (
	testKey      = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
	otherKey     = "a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f90"
	testSDKAppID = 1400000000
)

var testNow = time.Unix(1700000000, 0)

func mustIssue(t testing.TB, key string, p Params) string {
	t.Helper()
	token, err := Issue(key, p)
	if err != nil {
		t.Fatal(err)
	}
	return token
}

func mustVerifier(t testing.TB, policy Policy, keys ...string) *Verifier {
	t.Helper()
	v, err := NewVerifier(keys, policy)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestRoundTripUserIDs(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey)
	for _, id := range []string{"", "xiaojun", "张三", "emoji 😀", "quote\" back\\slash", "nul\x00byte", "<script>&", "\u2028", strings.Repeat("a", 3000)} {
		token := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: id, Expire: 300, Time: testNow})
		c, err := v.Verify(token, Request{SDKAppID: testSDKAppID, UserID: id, Now: testNow})
		if err != nil {
			t.Errorf("UserID %q: %v", id, err)
			continue
		}
		if c.UserID != id || c.SDKAppID != testSDKAppID || c.Time != testNow.Unix() || c.Expire != 300 || c.KeyIndex != 0 {
			t.Errorf("UserID %q: claims %+v", id, c)
		}
		doc, err := Decode(token, false)
		if err != nil || doc.UserID != id {
			t.Errorf("UserID %q: Decode gave %q, %v", id, doc.UserID, err)
		}
	}
}

func TestRoundTripExpireRange(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey)
	cases := []struct {
		name   string
		expire int64
		now    time.Time
		want   error
	}{
		{"zero at issue", 0, testNow, nil},
		{"zero one second later", 0, testNow.Add(time.Second), ErrExpired},
		{"negative", -1, testNow, ErrExpired},
		{"min int64", math.MinInt64, testNow, ErrExpired},
		{"max int64 does not overflow", math.MaxInt64, time.Unix(math.MaxInt64/2, 0), nil},
		{"boundary equal", 60, testNow.Add(60 * time.Second), nil},
		{"boundary plus one", 60, testNow.Add(61 * time.Second), ErrExpired},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			token := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: tc.expire, Time: testNow})
			c, err := v.Verify(token, Request{SDKAppID: testSDKAppID, UserID: "u", Now: tc.now})
			if !errors.Is(err, tc.want) || (tc.want == nil && err != nil) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && c.Expire != tc.expire {
				t.Fatalf("expire %d, want %d", c.Expire, tc.expire)
			}
		})
	}
}

func TestVerifyKeyRotationReportsKeyIndex(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey, otherKey)
	for i, key := range []string{testKey, otherKey} {
		token := mustIssue(t, key, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
		c, err := v.Verify(token, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow})
		if err != nil {
			t.Fatalf("key %d: %v", i, err)
		}
		if c.KeyIndex != i {
			t.Errorf("key %d: KeyIndex %d", i, c.KeyIndex)
		}
	}
	// An expired token signed with the second key still reports the key.
	old := mustIssue(t, otherKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
	c, err := v.Verify(old, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow.Add(time.Hour)})
	if !errors.Is(err, ErrExpired) {
		t.Fatalf("expired token: got %v, want ErrExpired", err)
	}
	if c.KeyIndex != 1 || c.UserID != "u" || c.Expire != 60 {
		t.Errorf("expired token: claims %+v, want key 1, UserID u, expire 60", c)
	}

	only := mustVerifier(t, Policy{}, otherKey)
	token := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
	if _, err := only.Verify(token, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); !errors.Is(err, ErrInvalidSignature) {
		t.Errorf("removed key: got %v, want ErrInvalidSignature", err)
	}
}

func TestNewVerifierRejectsMissingKeys(t *testing.T) {
	if _, err := NewVerifier(nil, Policy{}); !errors.Is(err, ErrNoKey) {
		t.Errorf("no keys: %v", err)
	}
	if _, err := NewVerifier([]string{testKey, ""}, Policy{}); !errors.Is(err, ErrNoKey) {
		t.Errorf("empty key: %v", err)
	}
	if _, err := NewSigner(""); !errors.Is(err, ErrNoKey) {
		t.Errorf("empty signer key: %v", err)
	}
}

func TestPolicyMaxSkew(t *testing.T) {
	v := mustVerifier(t, Policy{MaxSkew: 5 * time.Minute}, testKey)
	future := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 3600, Time: testNow.Add(10 * time.Minute)})
	if _, err := v.Verify(future, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); !errors.Is(err, ErrIssuedInFuture) {
		t.Errorf("10 minutes ahead: got %v, want ErrIssuedInFuture", err)
	}
	near := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 3600, Time: testNow.Add(4 * time.Minute)})
	if _, err := v.Verify(near, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); err != nil {
		t.Errorf("4 minutes ahead: %v", err)
	}

	// The skew also applies at expiry.
	short := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
	if _, err := v.Verify(short, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow.Add(60*time.Second + 5*time.Minute)}); err != nil {
		t.Errorf("at expiry plus skew: %v", err)
	}
	if _, err := v.Verify(short, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow.Add(61*time.Second + 5*time.Minute)}); !errors.Is(err, ErrExpired) {
		t.Errorf("past expiry plus skew: got %v, want ErrExpired", err)
	}

	// The library's default accepts any future issue time, as the official
	// verifiers do.
	plain := mustVerifier(t, Policy{}, testKey)
	if _, err := plain.Verify(future, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); err != nil {
		t.Errorf("no policy, future token: %v", err)
	}
}

func TestPolicyMaxLifetime(t *testing.T) {
	v := mustVerifier(t, Policy{MaxLifetime: 24 * time.Hour}, testKey)
	long := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 15552000, Time: testNow})
	if _, err := v.Verify(long, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); !errors.Is(err, ErrLifetimeTooLong) {
		t.Errorf("180 days: got %v, want ErrLifetimeTooLong", err)
	}
	day := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 86400, Time: testNow})
	if _, err := v.Verify(day, Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}); err != nil {
		t.Errorf("one day: %v", err)
	}
}

func TestPolicyLenientBase64(t *testing.T) {
	token := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
	standard := strings.NewReplacer("*", "+", "-", "/", "_", "=").Replace(token)
	unpadded := strings.TrimRight(token, "_")
	if unpadded == token {
		// Make sure the unpadded case is exercised.
		t.Fatalf("token %d characters long has no padding; pick another UserID", len(token))
	}
	r := Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}

	strict := mustVerifier(t, Policy{}, testKey)
	lenient := mustVerifier(t, Policy{LenientBase64: true}, testKey)
	for name, tok := range map[string]string{"standard alphabet": standard, "no padding": unpadded} {
		if _, err := strict.Verify(tok, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("strict, %s: got %v, want ErrMalformed", name, err)
		}
		if _, err := lenient.Verify(tok, r); err != nil {
			t.Errorf("lenient, %s: %v", name, err)
		}
	}
	if _, err := lenient.Verify(token, r); err != nil {
		t.Errorf("lenient, canonical: %v", err)
	}
	if _, err := lenient.Verify(token[:len(token)-1]+"=", r); err != nil && !strings.HasSuffix(token, "__") {
		t.Errorf("lenient, '=' padding: %v", err)
	}
	for _, bad := range []string{token + "_", token[:len(token)-3], "A", "a b"} {
		if _, err := lenient.Verify(bad, r); !errors.Is(err, ErrMalformed) {
			t.Errorf("lenient, %q: got %v, want ErrMalformed", bad, err)
		}
	}
}

func TestModes(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey)
	plain := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow})
	withBuf := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow, UserBuf: []byte{1, 2, 3}})
	empty := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 60, Time: testNow, UserBuf: []byte{}})
	cases := []struct {
		name  string
		token string
		r     Request
		want  error
	}{
		{"plain as usersig", plain, Request{Mode: ModeUserSig}, nil},
		{"userbuf as usersig", withBuf, Request{Mode: ModeUserSig}, ErrUnexpectedUserBuf},
		{"empty userbuf as usersig", empty, Request{Mode: ModeUserSig}, ErrUnexpectedUserBuf},
		{"plain with userbuf", plain, Request{Mode: ModeWithUserBuf}, ErrUserBufMismatch},
		{"userbuf with userbuf", withBuf, Request{Mode: ModeWithUserBuf}, nil},
		{"empty userbuf with userbuf", empty, Request{Mode: ModeWithUserBuf}, nil},
		{"userbuf matches", withBuf, Request{Mode: ModeWithUserBuf, MatchUserBuf: true, UserBuf: []byte{1, 2, 3}}, nil},
		{"userbuf differs", withBuf, Request{Mode: ModeWithUserBuf, MatchUserBuf: true, UserBuf: []byte{1, 2}}, ErrUserBufMismatch},
		{"plain as any", plain, Request{Mode: ModeAny}, nil},
		{"userbuf as any", withBuf, Request{Mode: ModeAny}, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.r.SDKAppID, tc.r.UserID, tc.r.Now = testSDKAppID, "u", testNow
			c, err := v.Verify(tc.token, tc.r)
			if tc.want == nil {
				if err != nil {
					t.Fatalf("unexpected %v", err)
				}
				if tc.token == withBuf && string(c.UserBuf) != "\x01\x02\x03" {
					t.Fatalf("UserBuf %x", c.UserBuf)
				}
				return
			}
			if !errors.Is(err, tc.want) {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
		})
	}
}

func TestErrorKindsAndCodes(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey)
	good := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "alice", Expire: 60, Time: testNow})
	forged := mustIssue(t, otherKey, Params{SDKAppID: testSDKAppID, UserID: "alice", Expire: 60, Time: testNow})
	cases := []struct {
		name   string
		token  string
		r      Request
		kind   error
		code   int
		result string
	}{
		{"empty", "", Request{SDKAppID: testSDKAppID, UserID: "alice", Now: testNow}, ErrEmpty, CodeEmpty, "malformed"},
		{"garbage", "!!!!", Request{SDKAppID: testSDKAppID, UserID: "alice", Now: testNow}, ErrMalformed, CodeMalformed, "malformed"},
		{"expired", good, Request{SDKAppID: testSDKAppID, UserID: "alice", Now: testNow.Add(time.Hour)}, ErrExpired, CodeExpired, "expired"},
		{"forged", forged, Request{SDKAppID: testSDKAppID, UserID: "alice", Now: testNow}, ErrInvalidSignature, CodeInvalidSignature, "invalid-signature"},
		{"other user", good, Request{SDKAppID: testSDKAppID, UserID: "bob", Now: testNow}, ErrIdentifierMismatch, CodeIdentifierMismatch, "identifier-mismatch"},
		{"other app", good, Request{SDKAppID: testSDKAppID + 1, UserID: "alice", Now: testNow}, ErrSDKAppIDMismatch, CodeSDKAppIDMismatch, "sdkappid-mismatch"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := v.Verify(tc.token, tc.r)
			if !errors.Is(err, tc.kind) {
				t.Fatalf("got %v, want %v", err, tc.kind)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("%T is not *Error", err)
			}
			if e.Code() != tc.code {
				t.Errorf("code %d, want %d", e.Code(), tc.code)
			}
			if e.Result() != tc.result {
				t.Errorf("result %q, want %q", e.Result(), tc.result)
			}
			msg := err.Error()
			if strings.Contains(msg, testKey) || strings.Contains(msg, otherKey) || (tc.token != "" && strings.Contains(msg, tc.token)) {
				t.Errorf("message %q leaks the key or the token", msg)
			}
			for _, other := range []error{ErrMalformed, ErrExpired, ErrInvalidSignature, ErrIdentifierMismatch, ErrSDKAppIDMismatch, ErrUnexpectedUserBuf, ErrUserBufMismatch} {
				if other != e.Kind() && errors.Is(err, other) {
					t.Errorf("error also matches %v", other)
				}
			}
		})
	}
}

func TestDecodeRejectsOversizeInput(t *testing.T) {
	for _, n := range []int{MaxTokenLength + 4, 1 << 20} {
		_, err := Decode(strings.Repeat("A", n), false)
		if !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "maximum length") {
			t.Errorf("%d characters: got %v", n, err)
		}
	}
}

// TestInflateBombUsesBoundedMemory builds a zlib bomb that fits in the
// token length limit (the vector file's 11 MiB bomb is longer and is
// rejected before inflating) and checks that inflating stops after
// MaxDocumentSize bytes of output, allocating almost nothing.
func TestInflateBombUsesBoundedMemory(t *testing.T) {
	var z bytes.Buffer
	w, _ := zlib.NewWriterLevel(&z, zlib.BestCompression)
	w.Write(bytes.Repeat([]byte(" "), 5<<20))
	w.Write([]byte(`{"TLS.ver":"2.0","TLS.sig":"lIWG8ppKhrn/aqIUqrosCV9kCxZ6IBv6uxwFc5bIXoA="}`))
	w.Close()
	bomb := string(encodeOuter(nil, z.Bytes()))
	if len(bomb) > MaxTokenLength {
		t.Fatalf("bomb token is %d characters, over the limit", len(bomb))
	}

	v := mustVerifier(t, Policy{}, testKey)
	r := Request{SDKAppID: testSDKAppID, UserID: "u", Now: testNow}
	if _, err := v.Verify(bomb, r); !errors.Is(err, errInflateTooBig) {
		t.Fatalf("got %v, want the inflate size error", err)
	}

	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	const rounds = 20
	for range rounds {
		v.Verify(bomb, r)
	}
	runtime.ReadMemStats(&after)
	perCall := (after.TotalAlloc - before.TotalAlloc) / rounds
	if perCall > 64<<10 {
		t.Errorf("each rejected bomb allocated %d bytes, want at most 64 KiB", perCall)
	}
	t.Logf("bomb of %d characters (5 MiB inflated): %d bytes allocated per rejection", len(bomb), perCall)
}

func TestVerifyAllocations(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items, so allocations are not counted")
	}
	v := mustVerifier(t, Policy{}, benchKey)
	r := Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: time.Unix(benchTime, 0)}
	allocs := testing.AllocsPerRun(100, func() {
		if _, err := v.Verify(benchToken, r); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 2 {
		t.Errorf("Verify allocates %.1f times per call, want at most 2", allocs)
	}
}

func TestIssueCompressionLevels(t *testing.T) {
	v := mustVerifier(t, Policy{}, testKey)
	lengths := map[int]int{}
	for level := 0; level <= 9; level++ {
		token := mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "xiaojun", Expire: 60, Time: testNow, CompressionLevel: level})
		if _, err := v.Verify(token, Request{SDKAppID: testSDKAppID, UserID: "xiaojun", Now: testNow}); err != nil {
			t.Errorf("level %d: %v", level, err)
		}
		lengths[level] = len(token)
	}
	if lengths[6] >= lengths[0] {
		t.Errorf("level 6 token (%d characters) is not shorter than the stored one (%d)", lengths[6], lengths[0])
	}
	for _, level := range []int{-1, 10} {
		if _, err := Issue(testKey, Params{UserID: "u", Time: testNow, CompressionLevel: level}); !errors.Is(err, ErrInvalidLevel) {
			t.Errorf("level %d: got %v, want ErrInvalidLevel", level, err)
		}
	}

	// A document longer than one stored block (65535 bytes) is split.
	long := strings.Repeat("x", 70000)
	stored := appendStoredZlib(nil, []byte(long))
	if got, err := inflateUnbounded(stored); err != nil || string(got) != long {
		t.Errorf("two stored blocks: %d bytes, %v", len(got), err)
	}
}

func TestIssueRejectsInvalidInput(t *testing.T) {
	if _, err := Issue(testKey, Params{UserID: "bad\xffutf8", Time: testNow}); !errors.Is(err, ErrInvalidUserID) {
		t.Errorf("invalid UTF-8: %v", err)
	}
	if _, err := Issue(testKey, Params{UserID: "u", Time: time.Unix(-1, 0)}); !errors.Is(err, ErrInvalidTime) {
		t.Errorf("time before 1970: %v", err)
	}
}

// TestCheckAgreesWithVerify checks that Check on verified claims returns
// what Verify returns for the same token and request.
func TestCheckAgreesWithVerify(t *testing.T) {
	v := mustVerifier(t, Policy{MaxSkew: time.Minute, MaxLifetime: time.Hour}, testKey)
	tokens := map[string]string{
		"plain":  mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 600, Time: testNow}),
		"buf":    mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 600, Time: testNow, UserBuf: []byte{9}}),
		"long":   mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 7200, Time: testNow}),
		"future": mustIssue(t, testKey, Params{SDKAppID: testSDKAppID, UserID: "u", Expire: 600, Time: testNow.Add(10 * time.Minute)}),
	}
	requests := map[string]Request{
		"same":          {SDKAppID: testSDKAppID, UserID: "u", Now: testNow, Mode: ModeAny},
		"other user":    {SDKAppID: testSDKAppID, UserID: "v", Now: testNow, Mode: ModeAny},
		"other app":     {SDKAppID: testSDKAppID + 1, UserID: "u", Now: testNow, Mode: ModeAny},
		"at expiry":     {SDKAppID: testSDKAppID, UserID: "u", Now: testNow.Add(11 * time.Minute), Mode: ModeAny},
		"after expiry":  {SDKAppID: testSDKAppID, UserID: "u", Now: testNow.Add(11*time.Minute + time.Second), Mode: ModeAny},
		"plain only":    {SDKAppID: testSDKAppID, UserID: "u", Now: testNow, Mode: ModeUserSig},
		"userbuf only":  {SDKAppID: testSDKAppID, UserID: "u", Now: testNow, Mode: ModeWithUserBuf},
		"userbuf match": {SDKAppID: testSDKAppID, UserID: "u", Now: testNow, Mode: ModeWithUserBuf, MatchUserBuf: true, UserBuf: []byte{9}},
		"userbuf other": {SDKAppID: testSDKAppID, UserID: "u", Now: testNow, Mode: ModeWithUserBuf, MatchUserBuf: true, UserBuf: []byte{8}},
	}
	for tokenName, token := range tokens {
		// Claims as a cache would hold them: verified in ModeAny at a
		// time when the token was acceptable.
		issued, _ := Decode(token, false)
		claims, err := mustVerifier(t, Policy{}, testKey).Verify(token, Request{SDKAppID: testSDKAppID, UserID: "u", Now: time.Unix(issued.Time, 0), Mode: ModeAny})
		if err != nil {
			t.Fatalf("%s: %v", tokenName, err)
		}
		for requestName, r := range requests {
			_, want := v.Verify(token, r)
			got := v.Check(claims, r)
			if got != want {
				t.Errorf("%s, %s: Check gives %v, Verify gives %v", tokenName, requestName, got, want)
			}
		}
	}
}

// inflateUnbounded inflates z with the standard library, for checking
// streams larger than MaxDocumentSize.
func inflateUnbounded(z []byte) ([]byte, error) {
	r, err := zlib.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}
