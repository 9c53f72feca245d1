package usersig

import (
	"bufio"
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"os"
	"strconv"
	"testing"
	"time"
)

// vector is one line of testdata/usersig-v2.jsonl, made by Tencent's
// official libraries or by hand (see testdata/README.md).
type vector struct {
	Impl             string          `json:"impl"`
	CaseID           string          `json:"case_id"`
	Case             string          `json:"case"`
	API              string          `json:"api"`
	SDKAppID         uint64          `json:"sdkappid"`
	Key              string          `json:"key"`
	UserID           string          `json:"userid"`
	Time             int64           `json:"time"`
	Expire           json.Number     `json:"expire"`
	UserSig          string          `json:"usersig"`
	DecodedJSON      string          `json:"decoded_json"`
	UserBufB64       *string         `json:"userbuf_b64"`
	Now              int64           `json:"now"`
	VerifyMode       string          `json:"verify_mode"`
	Expect           string          `json:"expect"`
	ExpectUserBufB64 *string         `json:"expect_userbuf_b64"`
	RoomID           *uint32         `json:"roomid"`
	RoomStr          *string         `json:"roomstr"`
	Privilege        *uint32         `json:"privilege"`
	UserBufParsed    json.RawMessage `json:"userbuf_parsed"`
}

func (v vector) name() string {
	if v.Case != "" {
		return v.Case
	}
	return v.Impl + "/" + v.CaseID + "/" + v.API
}

func loadVectors(t testing.TB) []vector {
	t.Helper()
	f, err := os.Open("testdata/usersig-v2.jsonl")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []vector
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		dec := json.NewDecoder(bytes.NewReader(sc.Bytes()))
		dec.UseNumber()
		var v vector
		if err := dec.Decode(&v); err != nil {
			t.Fatalf("line %d: %v", len(out)+1, err)
		}
		out = append(out, v)
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if len(out) != 457 {
		t.Fatalf("loaded %d vectors, want 457", len(out))
	}
	return out
}

// requestFor builds the Verify request that a vector line describes.
func requestFor(t testing.TB, v vector) Request {
	r := Request{SDKAppID: v.SDKAppID, UserID: v.UserID, Now: time.Unix(v.Now, 0)}
	switch v.VerifyMode {
	case "usersig":
		r.Mode = ModeUserSig
	case "with_userbuf":
		r.Mode = ModeWithUserBuf
		if v.ExpectUserBufB64 != nil {
			buf, err := base64.StdEncoding.DecodeString(*v.ExpectUserBufB64)
			if err != nil {
				t.Fatalf("%s: expect_userbuf_b64: %v", v.name(), err)
			}
			r.MatchUserBuf, r.UserBuf = true, buf
		}
	default:
		t.Fatalf("%s: unknown verify_mode %q", v.name(), v.VerifyMode)
	}
	return r
}

// resultOf maps a Verify error to the vector file's verdict names.
func resultOf(err error) string {
	if err == nil {
		return "valid"
	}
	var e *Error
	if !errors.As(err, &e) {
		return "untyped error: " + err.Error()
	}
	return e.Result()
}

func TestVectorsGiveExpectedVerdicts(t *testing.T) {
	counts := map[string]int{}
	for _, v := range loadVectors(t) {
		verifier, err := NewVerifier([]string{v.Key}, Policy{})
		if err != nil {
			t.Fatalf("%s: %v", v.name(), err)
		}
		claims, err := verifier.Verify(v.UserSig, requestFor(t, v))
		got := resultOf(err)
		if got != v.Expect {
			t.Errorf("%s: got %s (%v), want %s", v.name(), got, err, v.Expect)
			continue
		}
		counts[got]++
		if err != nil {
			continue
		}
		if claims.SDKAppID != v.SDKAppID || claims.UserID != v.UserID {
			t.Errorf("%s: claims name %d/%q, want %d/%q", v.name(), claims.SDKAppID, claims.UserID, v.SDKAppID, v.UserID)
		}
		if v.Case == "" {
			if claims.Time != v.Time || strconv.FormatInt(claims.Expire, 10) != v.Expire.String() {
				t.Errorf("%s: claims time %d expire %d, want %d and %s", v.name(), claims.Time, claims.Expire, v.Time, v.Expire)
			}
		}
	}
	t.Logf("verdicts: %v", counts)
}
