package usersig

import (
	"bufio"
	"bytes"
	stdzlib "compress/zlib"
	"encoding/base64"
	"encoding/json"
	"errors"
	"io"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// addVectorSeeds adds every token of the vector file to the corpus.
func addVectorSeeds(f *testing.F, add func(v vector)) {
	file, err := os.Open("testdata/usersig-v2.jsonl")
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var v vector
		if err := json.Unmarshal(sc.Bytes(), &v); err != nil {
			f.Fatal(err)
		}
		add(v)
	}
}

// FuzzDecode checks that Decode never panics, returns only *Error values
// of kind ErrMalformed, and agrees with Verify: a token that decodes never
// fails Verify as malformed, except for a userbuf that is not base64.
func FuzzDecode(f *testing.F) {
	addVectorSeeds(f, func(v vector) { f.Add(v.UserSig, false) })
	f.Fuzz(func(t *testing.T, token string, lenient bool) {
		doc, err := Decode(token, lenient)
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) {
				t.Fatalf("Decode error %v is not a malformed *Error", err)
			}
			return
		}
		if !lenient {
			checkAgainstStandardLibrary(t, token, doc)
		}
		v, _ := NewVerifier([]string{testKey}, Policy{LenientBase64: lenient})
		_, err = v.Verify(token, Request{SDKAppID: doc.SDKAppID, UserID: doc.UserID, Now: time.Unix(doc.Time, 0), Mode: ModeAny})
		if errors.Is(err, ErrMalformed) && !(doc.HasUserBuf && doc.UserBuf == nil) {
			t.Fatalf("token decodes but Verify says %v", err)
		}
	})
}

// FuzzVerify checks that Verify never panics, returns only *Error values
// with a Tencent code, and returns claims that match the request.
func FuzzVerify(f *testing.F) {
	addVectorSeeds(f, func(v vector) { f.Add(v.UserSig, v.UserID, v.SDKAppID, v.Now) })
	f.Fuzz(func(t *testing.T, token, userID string, sdkAppID uint64, now int64) {
		v, _ := NewVerifier([]string{testKey}, Policy{MaxSkew: 5 * time.Minute, MaxLifetime: time.Hour})
		c, err := v.Verify(token, Request{SDKAppID: sdkAppID, UserID: userID, Now: time.Unix(now, 0), Mode: ModeAny})
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Code() == 0 {
				t.Fatalf("Verify error %v is not a coded *Error", err)
			}
			return
		}
		if c.UserID != userID || c.SDKAppID != sdkAppID {
			t.Fatalf("claims %+v do not match the request", c)
		}
	})
}

// FuzzParsePrivilegeMap checks that parsing never panics and that every
// record it accepts marshals back to the same bytes.
func FuzzParsePrivilegeMap(f *testing.F) {
	addVectorSeeds(f, func(v vector) {
		if len(v.UserBufParsed) == 0 {
			return
		}
		if doc, err := Decode(v.UserSig, false); err == nil {
			f.Add(doc.UserBuf)
		}
	})
	f.Add([]byte{1, 0, 0})
	f.Fuzz(func(t *testing.T, b []byte) {
		m, err := ParsePrivilegeMap(b)
		if err != nil {
			if !errors.Is(err, ErrMalformed) {
				t.Fatalf("error %v is not ErrMalformed", err)
			}
			return
		}
		back, err := m.MarshalBinary()
		if err != nil {
			t.Fatalf("parsed map %+v does not marshal: %v", m, err)
		}
		if string(back) != string(b) {
			t.Fatalf("round trip changed %x into %x", b, back)
		}
	})
}

// checkAgainstStandardLibrary decodes a token that Decode accepted with
// encoding/base64, compress/zlib and encoding/json, and requires the same
// fields: our small parsers must never accept what the standard ones
// reject, nor read a different value.
func checkAgainstStandardLibrary(t *testing.T, token string, doc Document) {
	t.Helper()
	mapped := strings.NewReplacer("*", "+", "-", "/", "_", "=", "\r", "", "\n", "").Replace(token)
	z, err := base64.StdEncoding.Strict().DecodeString(mapped)
	if err != nil {
		t.Fatalf("encoding/base64 rejects a token we accept: %v", err)
	}

	zr, err := stdzlib.NewReader(bytes.NewReader(z))
	if err != nil {
		t.Fatalf("compress/zlib rejects a stream we accept: %v", err)
	}
	text, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("compress/zlib fails on a stream we accept: %v", err)
	}

	dec := json.NewDecoder(bytes.NewReader(text))
	dec.UseNumber()
	var m map[string]any
	if err := dec.Decode(&m); err != nil {
		t.Fatalf("encoding/json rejects a document we accept: %v", err)
	}
	if !utf8.Valid(text) {
		t.Fatalf("we accepted invalid UTF-8")
	}

	if id, ok := m["TLS.identifier"]; ok && id != doc.UserID {
		t.Fatalf("identifier %q, encoding/json reads %q", doc.UserID, id)
	}
	for name, want := range map[string]string{
		"TLS.sdkappid": strconv.FormatUint(doc.SDKAppID, 10),
		"TLS.time":     strconv.FormatInt(doc.Time, 10),
		"TLS.expire":   strconv.FormatInt(doc.Expire, 10),
	} {
		if n, ok := m[name]; ok && n.(json.Number).String() != want {
			t.Fatalf("%s %s, encoding/json reads %v", name, want, n)
		}
	}
	if ub, ok := m["TLS.userbuf"]; ok != doc.HasUserBuf || ok && ub != doc.UserBufText {
		t.Fatalf("userbuf %q (present %v), encoding/json reads %v", doc.UserBufText, doc.HasUserBuf, ub)
	}
}
