package usersig

import (
	"bytes"
	"compress/zlib"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"reflect"
	"strings"
	"testing"
	"time"
)

// zlibStream compresses doc with compress/zlib at the given level.
func zlibStream(t *testing.T, doc string, level int) []byte {
	t.Helper()
	var z bytes.Buffer
	w, err := zlib.NewWriterLevel(&z, level)
	if err != nil {
		t.Fatal(err)
	}
	w.Write([]byte(doc))
	w.Close()
	return z.Bytes()
}

const framingDocument = `{"TLS.ver":"2.0","TLS.sig":"lIWG8ppKhrn/aqIUqrosCV9kCxZ6IBv6uxwFc5bIXoA="}`

// TestInflateChecksZlibFraming covers the checks that inflate makes after
// the deflate data: the Adler-32 trailer and the bytes after it.
func TestInflateChecksZlibFraming(t *testing.T) {
	good := zlibStream(t, framingDocument, 6)
	body := good[:len(good)-4]
	badSum := append(bytes.Clone(body), 0, 0, 0, 0)

	cases := []struct {
		name string
		z    []byte
		want error
	}{
		{"valid", good, nil},
		{"no trailer", body, errZlibData},
		{"three trailer bytes", good[:len(good)-1], errZlibData},
		{"wrong checksum", badSum, errZlibChecksum},
		{"wrong checksum and a trailing byte", append(bytes.Clone(badSum), 0), errZlibChecksum},
		{"trailing byte", append(bytes.Clone(good), 0), errZlibTrailing},
		{"trailing zlib stream", append(bytes.Clone(good), good...), errZlibTrailing},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc, err := Decode(string(encodeOuter(nil, tc.z)), false)
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && doc.Version != "2.0" {
				t.Fatalf("decoded %+v", doc)
			}
		})
	}
}

// TestDecodeIntegerLimits checks the 64-bit bounds of TLS.sdkappid, whose
// overflow check compares the text of twenty-digit numbers.
func TestDecodeIntegerLimits(t *testing.T) {
	cases := []struct {
		text string
		want error
	}{
		{"18446744073709551615", nil},
		{"9999999999999999999", nil},
		{"18446744073709551616", errSDKAppIDValue},
		{"99999999999999999999", errSDKAppIDValue},
		{"100000000000000000000", errSDKAppIDValue},
		{"01844674407370955161", errSDKAppIDValue},
		{"0", nil},
		{"00", errSDKAppIDValue},
		{"-1", errSDKAppIDValue},
		{"1.0", errSDKAppIDValue},
	}
	for _, tc := range cases {
		t.Run(tc.text, func(t *testing.T) {
			doc := `{"TLS.ver":"2.0","TLS.sdkappid":` + tc.text + `,"TLS.sig":"lIWG8ppKhrn/aqIUqrosCV9kCxZ6IBv6uxwFc5bIXoA="}`
			got, err := Decode(string(encodeOuter(nil, zlibStream(t, doc, 0))), false)
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil && got.SDKAppID == 0 && tc.text != "0" {
				t.Fatalf("SDKAppID %d from %s", got.SDKAppID, tc.text)
			}
		})
	}
}

// TestVerifySignsIntegersAsWritten signs documents by hand and checks
// that Verify signs the integer members in the same decimal form, for
// absent members (0) and the extreme values.
func TestVerifySignsIntegersAsWritten(t *testing.T) {
	cases := []struct {
		name                     string
		sdkAppID, issued, expire string // JSON text, "" for an absent member
		wantSDKAppID             uint64
	}{
		{"typical", "1400000000", "1700000000", "15552000", 1400000000},
		{"all absent", "", "", "", 0},
		{"extremes", "18446744073709551615", "9223372036854775807", "-9223372036854775808", 18446744073709551615},
		{"zeros", "0", "0", "0", 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			msg := "TLS.identifier:u\nTLS.sdkappid:" + orZero(tc.sdkAppID) + "\nTLS.time:" + orZero(tc.issued) +
				"\nTLS.expire:" + orZero(tc.expire) + "\n"
			mac := hmac.New(sha256.New, []byte(testKey))
			mac.Write([]byte(msg))
			sig := base64.StdEncoding.EncodeToString(mac.Sum(nil))

			doc := `{"TLS.ver":"2.0","TLS.identifier":"u"`
			for _, member := range [][2]string{{"TLS.sdkappid", tc.sdkAppID}, {"TLS.time", tc.issued}, {"TLS.expire", tc.expire}} {
				if member[1] != "" {
					doc += `,"` + member[0] + `":` + member[1]
				}
			}
			doc += `,"TLS.sig":"` + sig + `"}`
			token := string(encodeOuter(nil, zlibStream(t, doc, 6)))

			v := mustVerifier(t, Policy{}, testKey)
			_, err := v.Verify(token, Request{SDKAppID: tc.wantSDKAppID, UserID: "u", Now: time.Unix(0, 0)})
			if errors.Is(err, ErrInvalidSignature) || errors.Is(err, ErrMalformed) {
				t.Fatalf("Verify: %v", err)
			}
		})
	}
}

func orZero(text string) string {
	if text == "" {
		return "0"
	}
	return text
}

// TestDecodeSignatureSpelling checks that TLS.sig must be the canonical
// padded base64 of 32 bytes. The unpadded 44-character case decodes to 33
// bytes, which must be rejected without writing past the signature.
func TestDecodeSignatureSpelling(t *testing.T) {
	const sig = "lIWG8ppKhrn/aqIUqrosCV9kCxZ6IBv6uxwFc5bIXoA="
	cases := []struct {
		name string
		text string
		want error
	}{
		{"canonical", sig, nil},
		{"no padding", sig[:43], errSigValue},
		{"unused bits set", sig[:42] + "B=", errSigValue},
		{"two padding characters", sig[:42] + "==", errSigValue},
		{"outer alphabet", strings.ReplaceAll(sig, "/", "-"), errSigValue},
		{"escaped line break", sig[:40] + `\n` + sig[40:42] + "=", errSigValue},
		{"unpadded 33 bytes", sig[:43] + "A", errSigValue},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			doc := `{"TLS.ver":"2.0","TLS.sig":"` + tc.text + `"}`
			got, err := Decode(string(encodeOuter(nil, zlibStream(t, doc, 6))), false)
			if err != tc.want {
				t.Fatalf("got %v, want %v", err, tc.want)
			}
			if err == nil {
				want, _ := base64.StdEncoding.DecodeString(sig)
				if !bytes.Equal(got.Signature[:], want) {
					t.Fatalf("signature %x, want %x", got.Signature, want)
				}
			}
		})
	}
}

// TestDecodeOuterLineBreaks checks that a token with CR and LF, which the
// first decoding attempt rejects, decodes like the same token without them.
func TestDecodeOuterLineBreaks(t *testing.T) {
	token := string(encodeOuter(nil, zlibStream(t, framingDocument, 6)))
	want, err := Decode(token, false)
	if err != nil {
		t.Fatal(err)
	}
	for _, broken := range []string{token[:10] + "\r\n" + token[10:], token + "\n", "\n" + token, token[:4] + "\r" + token[4:8] + "\n" + token[8:]} {
		got, err := Decode(broken, false)
		if err != nil || !reflect.DeepEqual(got, want) {
			t.Errorf("with line breaks: got %+v, %v", got, err)
		}
	}
	if _, err := Decode("\r\n", false); !errors.Is(err, ErrEmpty) {
		t.Errorf("only line breaks: got %v, want ErrEmpty", err)
	}
}
