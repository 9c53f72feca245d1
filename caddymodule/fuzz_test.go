package caddymodule

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// Long runs, five minutes a target:
//
//	go test ./caddymodule -run '^$' -fuzz '^FuzzCredentials$' -fuzztime 5m -parallel 1
//	go test ./caddymodule -run '^$' -fuzz '^FuzzCaddyfile$' -fuzztime 5m -parallel 1

// fuzzGatewayCaddyfile reads every credential from a query parameter, a
// header and a cookie, and accepts both token types.
var fuzzGatewayCaddyfile = fmt.Sprintf(`usersig {
	app %d %s %s
	app %d %s
	sdkappid_from query:sdkappid header:X-SDKAppID cookie:sdkappid
	userid_from query:identifier query:userid header:X-UserID cookie:userid
	usersig_from query:usersig header:X-UserSig cookie:usersig
	token_type any
}`, testAppID, testKey, testOldKey, otherAppID, otherAppKey)

// identity is the SDKAppID and UserID that a token asserts.
type identity struct {
	sdkAppID uint64
	userID   string
}

// fuzzGateway is a handler and a provider provisioned by Caddy from
// fuzzGatewayCaddyfile, and the genuine tokens of the seeds.
type fuzzGateway struct {
	handler  *Handler
	provider *Provider
	genuine  map[[32]byte]usersig.Document // decoded genuine tokens by TLS.sig
	byUser   map[string]string             // UserID → its plain UserSig
}

func newFuzzGateway(f *testing.F) *fuzzGateway {
	f.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	f.Cleanup(cancel)

	g := &fuzzGateway{handler: new(Handler), provider: new(Provider), genuine: make(map[[32]byte]usersig.Document), byUser: make(map[string]string)}
	for _, module := range []interface {
		caddyfile.Unmarshaler
		caddy.Provisioner
		caddy.Validator
	}{g.handler, g.provider} {
		if err := module.UnmarshalCaddyfile(caddyfile.NewTestDispenser(fuzzGatewayCaddyfile)); err != nil {
			f.Fatalf("parsing the gateway config: %v", err)
		}
		if err := module.Provision(ctx); err != nil {
			f.Fatalf("provisioning the gateway: %v", err)
		}
		if err := module.Validate(); err != nil {
			f.Fatalf("validating the gateway: %v", err)
		}
	}

	// The tokens do not depend on the clock, so that the inputs that the
	// fuzzer stored in earlier runs hold the same genuine tokens. They
	// expire in 2100.
	issued := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	lifetime := int64(time.Date(2100, 1, 1, 0, 0, 0, 0, time.UTC).Sub(issued) / time.Second)
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		f.Fatal(err)
	}
	privateMapKey, err := signer.IssuePrivateMapKey(usersig.Params{SDKAppID: testAppID, UserID: testUserID, Time: issued, Expire: lifetime}, 1234, usersig.PrivilegeAll)
	if err != nil {
		f.Fatal(err)
	}
	g.addGenuine(f, privateMapKey)
	for _, p := range []struct {
		key      string
		sdkAppID uint64
		userID   string
	}{
		{testKey, testAppID, testUserID},
		{testOldKey, testAppID, "bob"},
		{otherAppKey, otherAppID, "carol"},
		{testKey, testAppID, "张三"},
	} {
		token, err := usersig.Issue(p.key, usersig.Params{SDKAppID: p.sdkAppID, UserID: p.userID, Time: issued, Expire: lifetime})
		if err != nil {
			f.Fatal(err)
		}
		g.addGenuine(f, token)
		g.byUser[p.userID] = token
	}
	return g
}

// buildFuzzRequest writes a GET request with the given query, up to two
// headers and a Cookie header, and parses it as Go's HTTP server does. It
// returns false for input that the server would reject.
func buildFuzzRequest(query, name1, value1, name2, value2, cookie string) (*http.Request, bool) {
	var b strings.Builder
	b.WriteString("GET /fuzz?" + query + " HTTP/1.1\r\nHost: gateway.test\r\n")
	for _, h := range [][2]string{{name1, value1}, {name2, value2}} {
		if h[0] != "" {
			b.WriteString(h[0] + ": " + h[1] + "\r\n")
		}
	}
	if cookie != "" {
		b.WriteString("Cookie: " + cookie + "\r\n")
	}
	b.WriteString("\r\n")

	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(b.String())))
	if err != nil {
		return nil, false
	}
	// The checks that net/http's server adds to ReadRequest.
	if len(req.Header["Host"]) > 1 {
		return nil, false
	}
	for name, values := range req.Header {
		if !validHeaderName(name) {
			return nil, false
		}
		for _, v := range values {
			if !validFieldValue(v) {
				return nil, false
			}
		}
	}
	delete(req.Header, "Host")
	req.RemoteAddr = "127.0.0.1:40000"
	return req, true
}

// validFieldValue reports whether v has no control character other than
// horizontal tab, as RFC 9110 section 5.5 requires of a field value.
func validFieldValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < ' ' && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

// fuzzQueryValues returns the values of the parameter name in rawQuery,
// decoded, skipping the ones that do not decode.
func fuzzQueryValues(rawQuery, name string) []string {
	var values []string
	for pair := range strings.SplitSeq(rawQuery, "&") {
		key, value, _ := strings.Cut(pair, "=")
		key, err := url.QueryUnescape(key)
		if err != nil || key != name {
			continue
		}
		if value, err = url.QueryUnescape(value); err == nil {
			values = append(values, value)
		}
	}
	return values
}

// userSigValues returns every value that the fuzz gateway's UserSig
// sources hold in r.
func userSigValues(r *http.Request) []string {
	values := fuzzQueryValues(r.URL.RawQuery, "usersig")
	values = append(values, r.Header.Values("X-UserSig")...)
	for _, c := range r.CookiesNamed("usersig") {
		values = append(values, c.Value)
	}
	return values
}

// addGenuine stores the decoded document of a genuine token.
func (g *fuzzGateway) addGenuine(f *testing.F, token string) {
	doc, err := usersig.Decode(token, false)
	if err != nil {
		f.Fatalf("decoding a genuine token: %v", err)
	}
	g.genuine[doc.Signature] = doc
}

// carriesGenuineToken reports whether r holds a genuine token of id in a
// UserSig source. A value is genuine when it decodes to the document of a
// genuine token, so that a spelling of the same document (CR and LF
// inserted, unused bits of the zlib stream changed) counts too. Without
// the secret key, the fuzzer cannot make a new document with a matching
// TLS.sig.
func (g *fuzzGateway) carriesGenuineToken(r *http.Request, id identity) bool {
	for _, v := range userSigValues(r) {
		doc, err := usersig.Decode(v, false)
		if err != nil {
			continue
		}
		known, ok := g.genuine[doc.Signature]
		sameDocument := ok && doc.UserID == known.UserID && doc.SDKAppID == known.SDKAppID &&
			doc.Time == known.Time && doc.Expire == known.Expire &&
			doc.HasUserBuf == known.HasUserBuf && doc.UserBufText == known.UserBufText
		if sameDocument && doc.SDKAppID == id.sdkAppID && doc.UserID == id.userID {
			return true
		}
	}
	return false
}

// knownCodes are the error codes that a rejection may carry.
var knownCodes = map[int]bool{
	usersig.CodeExpired: true, usersig.CodeEmpty: true, usersig.CodeMalformed: true,
	usersig.CodeInvalidSignature: true, usersig.CodeIdentifierMismatch: true,
	usersig.CodeSDKAppIDMismatch: true, CodeSDKAppIDNotConfigured: true,
}

// checkHandler sends req through the handler and checks the outcome: a
// 401 or 403 with a known code, or the next handler called with the
// identity of a genuine token that req carries, and without the token.
func (g *fuzzGateway) checkHandler(t *testing.T, req *http.Request) {
	original := req.Clone(context.Background())
	rec := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, nil)
	var forwarded *http.Request
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		forwarded = r
		w.WriteHeader(http.StatusOK)
		return nil
	})

	if err := g.handler.ServeHTTP(rec, req, next); err != nil {
		var handlerErr caddyhttp.HandlerError
		if !errors.As(err, &handlerErr) || handlerErr.StatusCode < 400 || handlerErr.StatusCode > 499 {
			t.Fatalf("ServeHTTP returned %v, which Caddy would answer with a 5xx", err)
		}
		return
	}

	if forwarded == nil {
		if rec.Code != http.StatusUnauthorized && rec.Code != http.StatusForbidden {
			t.Fatalf("rejection status = %d, want 401 or 403", rec.Code)
		}
		var body tencentError
		if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || !knownCodes[body.ErrorCode] {
			t.Fatalf("rejection body %q: error %v, or an unknown code", rec.Body.String(), err)
		}
		return
	}

	userIDs := forwarded.Header.Values("X-UserSig-UserID")
	sdkAppIDs := forwarded.Header.Values("X-UserSig-SDKAppID")
	if len(userIDs) != 1 || len(sdkAppIDs) != 1 {
		t.Fatalf("forwarded identity headers: UserID %q, SDKAppID %q, want one of each", userIDs, sdkAppIDs)
	}
	sdkAppID, err := strconv.ParseUint(sdkAppIDs[0], 10, 64)
	if err != nil {
		t.Fatalf("forwarded SDKAppID %q: %v", sdkAppIDs[0], err)
	}
	if !g.carriesGenuineToken(original, identity{sdkAppID, userIDs[0]}) {
		t.Fatalf("request forwarded as UserID %q of app %d without a genuine token of that identity", userIDs[0], sdkAppID)
	}
	for name := range forwarded.Header {
		spoofedUserID := name != "X-Usersig-Userid" && sameHeaderName(name, "X-UserSig-UserID")
		spoofedSDKAppID := name != "X-Usersig-Sdkappid" && sameHeaderName(name, "X-UserSig-SDKAppID")
		if spoofedUserID || spoofedSDKAppID {
			t.Fatalf("forwarded the spoofed identity header %q", name)
		}
	}
	if values := userSigValues(forwarded); len(values) > 0 {
		t.Fatalf("forwarded the request with %d UserSig values", len(values))
	}
	if _, query, _ := strings.Cut(forwarded.RequestURI, "?"); query != forwarded.URL.RawQuery {
		t.Fatalf("forwarded request URI query %q differs from the URL query %q", query, forwarded.URL.RawQuery)
	}
}

// checkProvider sends req through the authentication provider: it must
// either authenticate a genuine token that req carries, or reject with a
// WWW-Authenticate header, and never return an error.
func (g *fuzzGateway) checkProvider(t *testing.T, req *http.Request) {
	original := req.Clone(context.Background())
	rec := httptest.NewRecorder()
	req = caddyhttp.PrepareRequest(req, caddy.NewReplacer(), rec, nil)

	user, ok, err := g.provider.Authenticate(rec, req)
	if err != nil {
		t.Fatalf("Authenticate returned %v, which the authentication handler answers with a 5xx", err)
	}
	if !ok {
		if rec.Header().Get("WWW-Authenticate") == "" {
			t.Fatal("rejection without WWW-Authenticate")
		}
		return
	}
	sdkAppID, err := strconv.ParseUint(user.Metadata["sdkappid"], 10, 64)
	if err != nil {
		t.Fatalf("authenticated SDKAppID %q: %v", user.Metadata["sdkappid"], err)
	}
	if !g.carriesGenuineToken(original, identity{sdkAppID, user.ID}) {
		t.Fatalf("authenticated UserID %q of app %d without a genuine token of that identity", user.ID, sdkAppID)
	}
}

// FuzzCredentials builds a request from a fuzzed query string, two fuzzed
// headers and a fuzzed Cookie header, and sends it through the usersig
// handler and the usersig authentication provider, provisioned by Caddy.
// Neither may panic, return an error that Caddy turns into a 5xx, or
// accept a request without a genuine token.
func FuzzCredentials(f *testing.F) {
	g := newFuzzGateway(f)
	alice, bob, carol := g.byUser[testUserID], g.byUser["bob"], g.byUser["carol"]
	forged, err := usersig.Issue(otherAppKey, usersig.Params{SDKAppID: testAppID, UserID: testUserID, Expire: testLifetime})
	if err != nil {
		f.Fatal(err)
	}
	half := len(alice) / 2
	creds := "sdkappid=1400000001&identifier=alice"

	seeds := [][6]string{
		{creds + "&usersig=" + alice, "", "", "", "", ""},
		{"sdkappid=1400000001&identifier=bob&usersig=" + bob, "", "", "", "", ""},
		{"sdkappid=1400000002&userid=carol&usersig=" + carol, "", "", "", "", ""},
		{creds, "X-UserSig", alice, "", "", ""},
		{creds, "x-usersig", alice, "X-USERSIG", forged, ""},
		{"", "X-SDKAppID", "1400000001", "X-UserID", "alice", "usersig=" + alice},
		{"", "", "", "", "", "sdkappid=1400000001; userid=alice; usersig=" + alice},
		{creds + "&usersig=" + alice, "X_UserSig_UserID", "mallory", "x-usersig-sdkappid", "1", ""},
		{creds + "&usersig=" + alice + "&usersig=" + forged, "", "", "", "", ""},
		{creds + "&user%73ig=" + alice, "", "", "", "", ""},
		{creds + "&usersig=" + alice[:half] + "%0D%0A" + alice[half:], "", "", "", "", ""},
		{creds + "&usersig=" + alice + "%00", "", "", "", "", ""},
		{"sdkappid=1400000001&identifier=%FF&usersig=" + alice, "", "", "", "", ""},
		{creds + "&usersig=" + forged, "", "", "", "", ""},
		{creds + "&usersig=%ZZ&identifier=%ZZ", "Cookie", "usersig=" + alice, "", "", `usersig="` + alice + `"`},
		{creds, "X-UserSig", alice, "", "", "usersig=" + alice},
		{"sdkappid=01400000001&identifier=alice&usersig=" + alice, "", "", "", "", ""},
		{creds + "&usersig=" + alice + ";x=1", "", "", "", "", ""},
		{"", "", "", "", "", ""},
	}
	for _, seed := range seeds {
		f.Add(seed[0], seed[1], seed[2], seed[3], seed[4], seed[5])
	}

	f.Fuzz(func(t *testing.T, query, name1, value1, name2, value2, cookie string) {
		req, ok := buildFuzzRequest(query, name1, value1, name2, value2, cookie)
		if !ok {
			return
		}
		g.checkHandler(t, req)

		req, _ = buildFuzzRequest(query, name1, value1, name2, value2, cookie)
		g.checkProvider(t, req)
	})
}

// FuzzCaddyfile parses fuzzed text as a usersig directive. Parsing must
// not panic, an accepted directive must read back the same from its JSON
// form (the form the Caddyfile adapter produces), and provisioning and
// validating it must not panic.
func FuzzCaddyfile(f *testing.F) {
	seeds := []string{
		"usersig {\n\tapp 1400000001 key\n}",
		"usersig {\n\tapp 1400000001 key-a key-b\n\tapp 1400000002 key-c\n}",
		"usersig {\n\tapp 1400000001 key\n\tsdkappid_from query:sdkappid header:X-SDKAppID cookie:sdkappid\n\tuserid_from query:identifier query:userid\n\tusersig_from header:X-UserSig cookie:usersig\n}",
		"usersig {\n\tapp 1400000001 key\n\ttoken_type privatemapkey\n\trequire_room query:room\n\trequire_privilege enter send-audio\n}",
		"usersig {\n\tapp 1400000001 key\n\tmode optional\n}",
		"usersig {\n\tapp 1400000001 key\n\tclock_skew 30s\n\tmax_lifetime 1d\n\tlenient_base64\n}",
		"usersig {\n\tapp 1400000001 key\n\tcache_size 0\n\tnegative_cache_size 50\n\tnegative_cache_ttl 1m\n}",
		"usersig {\n\tapp 1400000001 key\n\tuserid_header X-User\n\tsdkappid_header -\n\tkeep_usersig\n\trealm \"chat app\"\n\tcheck_preflight\n}",
		"usersig {\n\tapp 1400000001 {env.USERSIG_KEY}\n}",
		"usersig {\n\tapp 4294967295 key\n\tclock_skew 0\n}",
		"usersig {\n\tapp 1400000001 key\n\tlockout {\n\t\tmax_failures 5\n\t}\n}",
		"usersig",
		"usersig {\n}",
		"usersig /api/* {\n\tapp 1 k\n}",
		"usersig {\n\tapp 1 `k`\n\trealm `a\"b`\n}",
		"usersig {\n\tapp 99999999999999999999 k\n}",
		"usersig {\n\tapp 1 k {\n\t}\n}",
	}
	for _, seed := range seeds {
		f.Add(seed)
	}
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	f.Cleanup(cancel)

	f.Fuzz(func(t *testing.T, text string) {
		// The Caddyfile lexer replaces {$NAME} with environment
		// variables before NewTestDispenser tokenizes, and
		// NewTestDispenser exits the process on a syntax error.
		if strings.Contains(text, "{$") {
			return
		}
		if _, err := caddyfile.Tokenize([]byte(text), "Caddyfile"); err != nil {
			return
		}
		var h Handler
		if err := h.UnmarshalCaddyfile(caddyfile.NewTestDispenser(text)); err != nil {
			return
		}

		// json.Marshal replaces invalid UTF-8, so only valid text can
		// read back unchanged.
		if utf8.ValidString(text) {
			data, err := json.Marshal(&h)
			if err != nil {
				t.Fatalf("encoding the accepted config: %v", err)
			}
			var back Handler
			if err := json.Unmarshal(data, &back); err != nil {
				t.Fatalf("decoding the accepted config %s: %v", data, err)
			}
			if !reflect.DeepEqual(h, back) {
				t.Fatalf("the config reads back differently from JSON:\nparsed %+v\nJSON   %s", h.Gateway, data)
			}
		}

		// Keys with placeholders would read environment variables or
		// files, which a fuzzer must not choose.
		for _, app := range h.Apps {
			for _, key := range app.Keys {
				if strings.Contains(key, "{") {
					return
				}
			}
		}
		if err := h.Provision(ctx); err != nil {
			return
		}
		defer h.Cleanup()
		_ = h.Validate()
	})
}
