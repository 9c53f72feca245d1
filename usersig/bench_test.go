package usersig

import (
	"hash/adler32"
	"testing"
	"time"
)

// benchKey and the token below are the spec's worked example (vector c000
// from the Node library): a typical 7-character UserID.
const (
	benchKey      = "3edf87da6dc2bd9a148492b81d6e1f8962847ac1d94938ad0267cdf6a2d778cd"
	benchSDKAppID = 1400000000
	benchUserID   = "xiaojun"
	benchToken    = "eJyrVgrxCdYrSy1SslIy0jNQ0gHzM1NS80oy0zLBwhWZiflZpXlQqeKU7MSCgswUJStDEwMogMiUZOamKlkZmqOKplYUZBaBxE1NTY3gosWZ6UpWSjme4e4WBQXeGUV5*omFnqGFRfnFzmGW2c4VUWaeTmVmpRXlbsmmSZ4R*Y62SrUAs6wy2g__"
	benchTime     = 1700000000
)

func BenchmarkVerify(b *testing.B) {
	v, err := NewVerifier([]string{benchKey}, Policy{})
	if err != nil {
		b.Fatal(err)
	}
	r := Request{SDKAppID: benchSDKAppID, UserID: benchUserID, Now: time.Unix(benchTime, 0)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := v.Verify(benchToken, r); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkIssue(b *testing.B) {
	s, err := NewSigner(benchKey)
	if err != nil {
		b.Fatal(err)
	}
	p := Params{SDKAppID: benchSDKAppID, UserID: benchUserID, Expire: 15552000, Time: time.Unix(benchTime, 0)}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.Issue(p); err != nil {
			b.Fatal(err)
		}
	}
}

// benchLayers returns the zlib stream and the JSON document of the
// benchmark token, in buffers of their own.
func benchLayers(b *testing.B) (zlibStream, document []byte) {
	s := getScratch()
	defer putScratch(s)
	z, err := decodeOuter(benchToken, false, s)
	if err != nil {
		b.Fatal(err)
	}
	text, err := inflate(z, s)
	if err != nil {
		b.Fatal(err)
	}
	return append([]byte(nil), z...), append([]byte(nil), text...)
}

// BenchmarkSteps measures the steps of Verify one by one on the
// benchmark token, to show where the time of BenchmarkVerify goes.
func BenchmarkSteps(b *testing.B) {
	z, text := benchLayers(b)
	v, err := NewVerifier([]string{benchKey}, Policy{})
	if err != nil {
		b.Fatal(err)
	}
	s := getScratch()
	defer putScratch(s)

	b.Run("base64", func(b *testing.B) {
		for b.Loop() {
			if _, err := decodeOuter(benchToken, false, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("inflate", func(b *testing.B) {
		for b.Loop() {
			if _, err := inflate(z, s); err != nil {
				b.Fatal(err)
			}
		}
	})
	var d rawDoc
	b.Run("parse", func(b *testing.B) {
		for b.Loop() {
			if err := parseDocument(text, s, &d); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("signature", func(b *testing.B) {
		for b.Loop() {
			if _, err := v.checkSignature(&d, s); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkAdler32 compares adler32Checksum with hash/adler32 on the
// inflated JSON of the benchmark token.
func BenchmarkAdler32(b *testing.B) {
	_, text := benchLayers(b)

	b.Run("ours", func(b *testing.B) {
		for b.Loop() {
			adler32Sink = adler32Checksum(text)
		}
	})
	b.Run("hash-adler32", func(b *testing.B) {
		for b.Loop() {
			adler32Sink = adler32.Checksum(text)
		}
	})
}

var adler32Sink uint32
