package usersig

import (
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
