package caddymodule

import (
	"bufio"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"unicode"
)

// TestWithoutQueryParam checks the removal that parses the whole query,
// with "/p" as the path before it.
func TestWithoutQueryParam(t *testing.T) {
	tests := []struct {
		name, query, want string
		removes           bool
	}{
		{"only parameter", "usersig=abc", "", true},
		{"first", "usersig=abc&a=1&b=2", "a=1&b=2", true},
		{"middle", "a=1&usersig=abc&b=2", "a=1&b=2", true},
		{"repeated", "usersig=x&a=1&usersig=y", "a=1", true},
		{"escaped name", "%75sersig=abc&a=1", "a=1", true},
		{"without value", "a=1&usersig", "a=1", true},
		{"similar names kept", "usersig2=x&xusersig=y", "usersig2=x&xusersig=y", false},
		{"order and escaping kept", "z=%2F&usersig=abc&a=b+c", "z=%2F&a=b+c", true},
		{"absent", "a=1", "a=1", false},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			uri, removed := withoutQueryParam("/p", tc.query, "usersig")
			if removed != tc.removes {
				t.Fatalf("withoutQueryParam(%q) removed = %v, want %v", tc.query, removed, tc.removes)
			}
			if !removed {
				return
			}
			want := "/p"
			if tc.want != "" {
				want += "?" + tc.want
			}
			if uri != want {
				t.Errorf("withoutQueryParam(%q) = %q, want %q", tc.query, uri, want)
			}
		})
	}
}

func TestRemoveUserSigKeepsRequestURIConsistent(t *testing.T) {
	cr := newCredentialReader(nil, nil, []source{{kind: fromQuery, name: "usersig"}})
	tests := []struct {
		name, target, wantQuery, wantURI string
	}{
		{"other parameters", "/a/b?x=1&usersig=abc&y=2", "x=1&y=2", "/a/b?x=1&y=2"},
		{"only the UserSig", "/a?usersig=abc", "", "/a"},
		{"escaped path", "/a%3Fb?usersig=abc&x=1", "x=1", "/a%3Fb?x=1"},
		{"empty pairs around", "/a?&usersig=abc&usersig=abc", "", "/a"},
		{"empty pair kept", "/a?x=1&&usersig=abc&y=2", "x=1&&y=2", "/a?x=1&&y=2"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			cr.removeUserSig(r, &credentials{})
			if r.URL.RawQuery != tc.wantQuery {
				t.Errorf("RawQuery = %q, want %q", r.URL.RawQuery, tc.wantQuery)
			}
			if r.RequestURI != tc.wantURI {
				t.Errorf("RequestURI = %q, want %q", r.RequestURI, tc.wantURI)
			}
		})
	}
}

// TestRemoveUserSigAfterRead checks that removing the UserSig at the
// position that read recorded gives the same request as the removal that
// parses the query again.
func TestRemoveUserSigAfterRead(t *testing.T) {
	cr := newCredentialReader(
		[]source{{kind: fromQuery, name: "sdkappid"}},
		[]source{{kind: fromQuery, name: "identifier"}},
		[]source{{kind: fromQuery, name: "usersig"}, {kind: fromQuery, name: "sig"}},
	)
	targets := []string{
		"/v4/a?sdkappid=1&identifier=alice&usersig=tok&random=7&contenttype=json",
		"/v4/a?usersig=tok&sdkappid=1",
		"/v4/a?sdkappid=1&usersig=tok",
		"/v4/a?usersig=tok",
		"/v4/a?usersig=tok&usersig=tok&x=1",
		"/v4/a?usersig=tok&sig=tok&x=1",
		"/v4/a?sig=&usersig=tok&x=1",
		"/v4/a?%75sersig=tok&x=1",
		"/v4/a?x=1&usersig=",
		"/v4/a?usersig=tok&identifier=alice&identifier=bob&usersig=tok2",
		"/a%3Fb?x=1&usersig=tok&y=2",
		"/v4/a?x=1",
		"/v4/a?&usersig=tok&x=1",
		"/v4/a?usersig=tok&&x=1",
		"/v4/a?&usersig=tok&usersig=tok",
		"/v4/a?x=1&&usersig=tok",
	}
	for _, target := range targets {
		t.Run(target, func(t *testing.T) {
			fast := httptest.NewRequest(http.MethodGet, target, nil)
			var creds credentials
			_ = cr.read(fast, &creds)
			cr.removeUserSig(fast, &creds)

			slow := httptest.NewRequest(http.MethodGet, target, nil)
			cr.removeUserSig(slow, &credentials{})

			if fast.URL.RawQuery != slow.URL.RawQuery {
				t.Errorf("RawQuery = %q, want %q", fast.URL.RawQuery, slow.URL.RawQuery)
			}
			if fast.RequestURI != slow.RequestURI {
				t.Errorf("RequestURI = %q, want %q", fast.RequestURI, slow.RequestURI)
			}
			if strings.Contains(fast.URL.RawQuery, "sig=tok") {
				t.Errorf("RawQuery %q still has the UserSig", fast.URL.RawQuery)
			}
		})
	}
}

// TestQuerySourceNameWithPlus checks that a configured query name with
// '+' in it matches the name as written, and its escaped spelling.
func TestQuerySourceNameWithPlus(t *testing.T) {
	cr := newCredentialReader(nil, nil, []source{{kind: fromQuery, name: "a+b"}})
	for _, target := range []string{"/p?a+b=tok&x=1", "/p?a%2Bb=tok&x=1"} {
		r := httptest.NewRequest(http.MethodGet, target, nil)
		var creds credentials
		if fail := cr.read(r, &creds); fail != nil || creds.userSig != "tok" {
			t.Errorf("%s: read = %q, %v; want the UserSig tok", target, creds.userSig, fail)
		}
		cr.removeUserSig(r, &creds)
		if r.URL.RawQuery != "x=1" {
			t.Errorf("%s: RawQuery after removal = %q, want %q", target, r.URL.RawQuery, "x=1")
		}
	}
}

func TestReadCredentials(t *testing.T) {
	cr := newCredentialReader(
		[]source{{kind: fromQuery, name: "sdkappid"}, {kind: fromHeader, name: "X-Sdkappid"}},
		[]source{{kind: fromQuery, name: "identifier"}, {kind: fromCookie, name: "uid"}},
		[]source{{kind: fromQuery, name: "usersig"}},
	)
	tests := []struct {
		name     string
		target   string
		header   http.Header
		want     credentials
		conflict bool
	}{
		{"query", "/?sdkappid=1&identifier=alice&usersig=t", nil, credentials{sdkAppID: "1", userID: "alice", userSig: "t"}, false},
		{"escaped", "/?sdkappid=1&%69dentifier=a%20b&usersig=t", nil, credentials{sdkAppID: "1", userID: "a b", userSig: "t"}, false},
		{"header and cookie", "/?usersig=t", http.Header{"X-Sdkappid": {"1"}, "Cookie": {"uid=alice"}}, credentials{sdkAppID: "1", userID: "alice", userSig: "t"}, false},
		{"same value twice", "/?sdkappid=1&identifier=alice&usersig=t", http.Header{"X-Sdkappid": {"1"}, "Cookie": {"uid=alice"}}, credentials{sdkAppID: "1", userID: "alice", userSig: "t"}, false},
		{"empty values ignored", "/?sdkappid=&identifier=alice&usersig=t", http.Header{"X-Sdkappid": {"1"}}, credentials{sdkAppID: "1", userID: "alice", userSig: "t"}, false},
		{"query conflict", "/?sdkappid=1&identifier=alice&identifier=bob", nil, credentials{}, true},
		{"query and header conflict", "/?sdkappid=1", http.Header{"X-Sdkappid": {"2"}}, credentials{}, true},
		{"two header lines", "/", http.Header{"X-Sdkappid": {"1", "2"}}, credentials{}, true},
		{"two cookies", "/?identifier=alice", http.Header{"Cookie": {"uid=alice; uid=bob"}}, credentials{}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, tc.target, nil)
			for name, values := range tc.header {
				r.Header[name] = values
			}
			var got credentials
			fail := cr.read(r, &got)
			if tc.conflict {
				if fail != failConflicting {
					t.Errorf("read = %+v, %v; want the conflicting-credentials failure", got, fail)
				}
				return
			}
			if fail != nil {
				t.Fatalf("read failed: %v", fail)
			}
			if got.sdkAppID != tc.want.sdkAppID || got.userID != tc.want.userID || got.userSig != tc.want.userSig {
				t.Errorf("read = %q %q %q, want %q %q %q", got.sdkAppID, got.userID, got.userSig,
					tc.want.sdkAppID, tc.want.userID, tc.want.userSig)
			}
		})
	}
}

func TestRemoveCookie(t *testing.T) {
	h := http.Header{"Cookie": {"a=1; usersig=abc; b=2", "usersig=def"}}
	removeCookie(h, "usersig")
	if got := h.Values("Cookie"); len(got) != 1 || got[0] != "a=1; b=2" {
		t.Errorf("Cookie = %q, want [\"a=1; b=2\"]", got)
	}

	h = http.Header{"Cookie": {"usersig=abc"}}
	removeCookie(h, "usersig")
	if _, ok := h["Cookie"]; ok {
		t.Errorf("Cookie = %q, want no Cookie header", h.Values("Cookie"))
	}
}

func TestSameHeaderName(t *testing.T) {
	tests := []struct {
		a, b string
		want bool
	}{
		{"X-UserSig-UserID", "X-Usersig-Userid", true},
		{"x_usersig_userid", "X-UserSig-UserID", true},
		{"X-UserSig-UserId2", "X-UserSig-UserID", false},
		{"X-UserSig-SDKAppID", "X-UserSig-UserID", false},
	}
	for _, tc := range tests {
		if got := sameHeaderName(tc.a, tc.b); got != tc.want {
			t.Errorf("sameHeaderName(%q, %q) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestRemoveSpoofedIdentityLookup checks that looking up the spellings of
// the identity header names removes what comparing every header removes,
// on requests parsed by net/http. Each request carries every spelling of
// both names, with '-' or '_' at each separator and a random mix of upper
// and lower case, and headers that only resemble them.
func TestRemoveSpoofedIdentityLookup(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, names := range [][2]string{
		{defaultUserIDHeader, defaultSDKAppIDHeader},
		{"X_Custom-User", "App"},
		{"X-User", disabledHeader},
		{"A-B-C-D-E-User", "X-App"}, // five separators: the scan
	} {
		g := &Gateway{UserIDHeader: names[0], SDKAppIDHeader: names[1]}
		for i, name := range names {
			if name != disabledHeader {
				names[i] = http.CanonicalHeaderKey(name)
			}
		}
		g.UserIDHeader, g.SDKAppIDHeader = names[0], names[1]
		g.spoofed = newSpoofedKeys(names[0], names[1])
		if wantScan := strings.Count(names[0], "-")+strings.Count(names[0], "_") > maxSpoofSeparators; g.spoofed.scan != wantScan {
			t.Errorf("%q: scan = %v, want %v", names[0], g.spoofed.scan, wantScan)
		}

		var wire strings.Builder
		wire.WriteString("GET / HTTP/1.1\r\nHost: gateway.test\r\n")
		spellings, enabled := 0, 0
		for _, name := range names {
			if name == disabledHeader {
				continue
			}
			enabled++
			for _, key := range headerSpellings(name) {
				spelling := []byte(key)
				for j, c := range spelling {
					if rng.IntN(2) == 0 {
						spelling[j] = byte(unicode.ToLower(rune(c)))
					} else {
						spelling[j] = byte(unicode.ToUpper(rune(c)))
					}
				}
				wire.WriteString(string(spelling) + ": spoofed\r\n")
				spellings++
			}
			wire.WriteString(name + "x: kept\r\n" + name[:len(name)-1] + ": kept\r\n")
		}
		wire.WriteString("\r\n")

		for _, remove := range []struct {
			method string
			run    func(*http.Request)
		}{
			{"removeSpoofedIdentity", g.removeSpoofedIdentity},
			{"scanSpoofedIdentity", func(r *http.Request) { g.scanSpoofedIdentity(r.Header) }},
		} {
			r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(wire.String())))
			if err != nil {
				t.Fatal(err)
			}
			if len(r.Header) < spellings {
				t.Fatalf("%v: the request has %d headers, want at least %d", names, len(r.Header), spellings)
			}
			remove.run(r)
			for key, values := range r.Header {
				if values[0] != "kept" {
					t.Errorf("%v, %s: header %q is still there", names, remove.method, key)
				}
			}
			if want := 2 * enabled; len(r.Header) != want {
				t.Errorf("%v, %s: %d headers kept, want %d: %v", names, remove.method, len(r.Header), want, r.Header)
			}
		}
	}
}

func TestClientTextIsJSONSafe(t *testing.T) {
	if got, want := clientText(`TLS.ver is not "2.0"`), `TLS.ver is not '2.0'`; got != want {
		t.Errorf("clientText = %q, want %q", got, want)
	}
	if got, want := clientText("a\\b\nc"), "a b c"; got != want {
		t.Errorf("clientText = %q, want %q", got, want)
	}
}

// plainQueryReader reads the default query names and two that test the
// edges of readPlainQuery: a name that is a prefix of another, and a name
// with '=' in it, which only an encoded parameter name can match.
var plainQueryReader = newCredentialReader(
	[]source{{kind: fromQuery, name: "sdkappid"}},
	[]source{{kind: fromQuery, name: "identifier"}, {kind: fromQuery, name: "id"}},
	[]source{{kind: fromQuery, name: "usersig"}, {kind: fromQuery, name: "a=b"}},
)

// checkQueryReadersAgree fails t when readPlainQuery and readEscapedQuery
// read rawQuery differently. rawQuery must not contain '%' or '+'.
func checkQueryReadersAgree(t *testing.T, rawQuery string) {
	t.Helper()
	var plain, escaped credentials
	plainOK := plainQueryReader.readPlainQuery(rawQuery, &plain)
	escapedOK := plainQueryReader.readEscapedQuery(rawQuery, &escaped)
	if plainOK != escapedOK || (plainOK && plain != escaped) {
		t.Errorf("query %q: readPlainQuery = %v %+v, readEscapedQuery = %v %+v", rawQuery, plainOK, plain, escapedOK, escaped)
	}
}

// TestReadPlainQueryMatchesEscaped checks that the loop for queries
// without escapes reads what the general loop reads, including where the
// UserSig parameter is, on the edge cases of names and empty values.
func TestReadPlainQueryMatchesEscaped(t *testing.T) {
	for _, rawQuery := range []string{
		"",
		"&",
		"sdkappid=1&identifier=alice&usersig=t&random=5",
		"usersig",
		"usersig=",
		"&&usersig=t&&",
		"usersig=t&usersig=t",
		"usersig=t&usersig=u",
		"usersig&usersig=t",
		"usersigx=t&xusersig=u&usersi=v",
		"id=alice&identifier=alice",
		"id=alice&identifier=bob",
		"id=alice=x",
		"a=b=c",
		"a=b",
		"sdkappid=1=2&usersig==t",
		"=t&=&usersig=t;x",
		"id=abcd=x&usersig=t",
		"sdk=1234=6&sdkappid=1",
	} {
		checkQueryReadersAgree(t, rawQuery)
	}
}

// FuzzReadPlainQuery compares the two query loops on fuzzed queries,
// with '%' and '+' removed, since only readEscapedQuery reads those.
func FuzzReadPlainQuery(f *testing.F) {
	for _, seed := range []string{"sdkappid=1&identifier=alice&usersig=t", "usersig&id=a&a=b=c", "usersig=t&usersig=u"} {
		f.Add(seed)
	}
	f.Fuzz(func(t *testing.T, rawQuery string) {
		rawQuery = strings.NewReplacer("%", "", "+", "").Replace(rawQuery)
		checkQueryReadersAgree(t, rawQuery)
	})
}

// BenchmarkReadQuery reads the credentials with the default sources from
// a query shaped as Tencent's REST API sends it, without escapes.
func BenchmarkReadQuery(b *testing.B) {
	var g Gateway
	if err := g.provisionSources(); err != nil {
		b.Fatal(err)
	}
	cr := g.credentials
	rawQuery := "sdkappid=1400000001&identifier=user1&usersig=" + strings.Repeat("eAEArABT-3siVExTLnZl", 10) +
		"&random=99999999&contenttype=json"
	b.ReportAllocs()
	for b.Loop() {
		var c credentials
		if !cr.readQuery(rawQuery, &c) || c.userSig == "" || c.userID != "user1" {
			b.Fatalf("read %+v", c)
		}
	}
}
