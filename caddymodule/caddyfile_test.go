package caddymodule

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/caddyconfig/caddyfile"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/adapt from the current output")

func TestUnmarshalCaddyfileAllOptions(t *testing.T) {
	d := caddyfile.NewTestDispenser(`usersig {
		app 1400000001 key-a key-b
		app 1400000002 {env.KEY}
		sdkappid_from header:X-SDKAppID
		userid_from query:uid cookie:uid
		usersig_from header:x-usersig
		token_type privatemapkey
		require_room query:room
		require_privilege enter send-audio
		mode annotate
		clock_skew 30s
		max_lifetime 24h
		lenient_base64
		cache_size 0
		negative_cache_size 50
		negative_cache_ttl 1m
		userid_header X-User
		sdkappid_header -
		keep_usersig
		realm chat
		check_preflight
	}`)
	var g Gateway
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}

	zero, fifty := 0, 50
	want := Gateway{
		Apps: []App{
			{SDKAppID: 1400000001, Keys: []string{"key-a", "key-b"}},
			{SDKAppID: 1400000002, Keys: []string{"{env.KEY}"}},
		},
		SDKAppIDFrom:      []string{"header:X-SDKAppID"},
		UserIDFrom:        []string{"query:uid", "cookie:uid"},
		UserSigFrom:       []string{"header:x-usersig"},
		TokenType:         "privatemapkey",
		RequireRoom:       "query:room",
		RequirePrivilege:  "enter,send-audio",
		Mode:              "annotate",
		ClockSkew:         caddy.Duration(30 * time.Second),
		MaxLifetime:       caddy.Duration(24 * time.Hour),
		LenientBase64:     true,
		CacheSize:         &zero,
		NegativeCacheSize: &fifty,
		NegativeCacheTTL:  caddy.Duration(time.Minute),
		UserIDHeader:      "X-User",
		SDKAppIDHeader:    "-",
		KeepUserSig:       true,
		Realm:             "chat",
		CheckPreflight:    true,
	}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("parsed\n%+v\nwant\n%+v", g, want)
	}
}

func TestUnmarshalCaddyfileMinimal(t *testing.T) {
	d := caddyfile.NewTestDispenser(`usersig {
		app 1400000001 key-a
	}`)
	var g Gateway
	if err := g.UnmarshalCaddyfile(d); err != nil {
		t.Fatalf("UnmarshalCaddyfile: %v", err)
	}
	want := Gateway{Apps: []App{{SDKAppID: 1400000001, Keys: []string{"key-a"}}}}
	if !reflect.DeepEqual(g, want) {
		t.Errorf("parsed %+v, want %+v", g, want)
	}
}

func TestUnmarshalCaddyfileErrors(t *testing.T) {
	tests := []struct {
		name  string
		input string
		want  string
	}{
		{"no block", `usersig`, "at least one app is required"},
		{"no app", "usersig {\n realm x\n}", "at least one app is required"},
		{"empty key", "usersig {\n app 1400000001 \"\"\n}", "app 1400000001: secret key 1 is empty"},
		{"missing key", "usersig {\n app 1400000001\n}", "app 1400000001: missing secret key"},
		{"duplicate", "usersig {\n app 1400000001 a\n app 1400000001 b\n}", "app: duplicate SDKAppID 1400000001"},
		{"too large", "usersig {\n app 4294967296 a\n}", "app: SDKAppID 4294967296 out of range: must be from 1 to 4294967295"},
		{"far too large", "usersig {\n app 99999999999999999999 a\n}", "app: SDKAppID 99999999999999999999 out of range"},
		{"zero", "usersig {\n app 0 a\n}", "app: SDKAppID 0 out of range"},
		{"not a number", "usersig {\n app -1 a\n}", `app: SDKAppID "-1" is not a number`},
		{"unknown subdirective", "usersig {\n app 1 a\n cache_ttl 5m\n}", `unknown subdirective "cache_ttl"`},
		{"source kind", "usersig {\n app 1 a\n userid_from body:uid\n}", `userid_from: invalid source "body:uid": unknown kind "body"`},
		{"source without name", "usersig {\n app 1 a\n sdkappid_from query:\n}", `sdkappid_from: invalid source "query:"`},
		{"source without colon", "usersig {\n app 1 a\n usersig_from usersig\n}", `usersig_from: invalid source "usersig"`},
		{"source header name", "usersig {\n app 1 a\n usersig_from \"header:X Sig\"\n}", `"X Sig" is not a valid header name`},
		{"no sources", "usersig {\n app 1 a\n usersig_from\n}", "wrong argument count"},
		{"bad duration", "usersig {\n app 1 a\n clock_skew soon\n}", `clock_skew: invalid duration "soon"`},
		{"negative duration", "usersig {\n app 1 a\n max_lifetime -1h\n}", `max_lifetime: duration "-1h" is negative`},
		{"bad size", "usersig {\n app 1 a\n cache_size many\n}", `cache_size: "many" is not a non-negative number of entries`},
		{"negative size", "usersig {\n app 1 a\n negative_cache_size -5\n}", `negative_cache_size: "-5" is not a non-negative number of entries`},
		{"token type", "usersig {\n app 1 a\n token_type jwt\n}", `token_type: unknown value "jwt"`},
		{"header name", "usersig {\n app 1 a\n userid_header \"X User\"\n}", `userid_header: "X User" is not a valid header name`},
		{"realm quote", "usersig {\n app 1 a\n realm `a\"b`\n}", "realm:"},
		{"repeated option", "usersig {\n app 1 a\n realm a\n realm b\n}", "realm: set more than once"},
		{"flag argument", "usersig {\n app 1 a\n lenient_base64 yes\n}", "wrong argument count"},
		{"directive argument", "usersig strict {\n app 1 a\n}", "wrong argument count"},
		{"room source kind", "usersig {\n app 1 a\n require_room body:room\n}", `require_room: invalid source "body:room": unknown kind "body"`},
		{"room source bare", "usersig {\n app 1 a\n require_room room\n}", `require_room: invalid source "room"`},
		{"room placeholder unclosed", "usersig {\n app 1 a\n require_room {http.request.uri.path.1\n}", `require_room: invalid source`},
		{"room two arguments", "usersig {\n app 1 a\n require_room query:a query:b\n}", "wrong argument count"},
		{"privilege name", "usersig {\n app 1 a\n require_privilege enter,speak\n}", `require_privilege: unknown privilege "speak"`},
		{"privilege zero", "usersig {\n app 1 a\n require_privilege 0\n}", `require_privilege: "0" requires no privilege`},
		{"privilege undefined bits", "usersig {\n app 1 a\n require_privilege 0x100\n}", `require_privilege: "0x100" has undefined privilege bits 0x100`},
		{"privilege missing", "usersig {\n app 1 a\n require_privilege\n}", "wrong argument count"},
		{"mode", "usersig {\n app 1 a\n mode strict\n}", `mode: unknown value "strict": expected enforce, optional or annotate`},
		{"repeated mode", "usersig {\n app 1 a\n mode optional\n mode annotate\n}", "mode: set more than once"},
		{"token type usersig with room", "usersig {\n app 1 a\n token_type usersig\n require_room query:room\n}", "token_type: usersig conflicts with require_room and require_privilege"},
		{"token type any with privilege", "usersig {\n app 1 a\n require_privilege enter\n token_type any\n}", "token_type: any conflicts with require_room and require_privilege"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var g Gateway
			err := g.UnmarshalCaddyfile(caddyfile.NewTestDispenser(tc.input))
			if err == nil {
				t.Fatalf("UnmarshalCaddyfile accepted %q", tc.input)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
		})
	}
}

// TestAdaptGolden adapts each testdata/adapt/*.caddyfile and compares the
// JSON, or the error message for files named error-*, with the file of the
// same name ending in .json or .error. Run with -update to rewrite them.
func TestAdaptGolden(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "adapt", "*.caddyfile"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("no testdata/adapt/*.caddyfile files")
	}
	adapter := caddyconfig.GetAdapter("caddyfile")

	for _, file := range files {
		name := strings.TrimSuffix(filepath.Base(file), ".caddyfile")
		t.Run(name, func(t *testing.T) {
			input, err := os.ReadFile(file)
			if err != nil {
				t.Fatal(err)
			}
			out, _, adaptErr := adapter.Adapt(input, map[string]any{"filename": filepath.Base(file)})

			var got []byte
			var golden string
			if strings.HasPrefix(name, "error-") {
				golden = strings.TrimSuffix(file, ".caddyfile") + ".error"
				if adaptErr == nil {
					t.Fatalf("adapting %s succeeded, want an error", file)
				}
				got = []byte(adaptErr.Error() + "\n")
			} else {
				golden = strings.TrimSuffix(file, ".caddyfile") + ".json"
				if adaptErr != nil {
					t.Fatalf("adapting %s: %v", file, adaptErr)
				}
				var indented bytes.Buffer
				if err := json.Indent(&indented, out, "", "\t"); err != nil {
					t.Fatal(err)
				}
				indented.WriteByte('\n')
				got = indented.Bytes()
			}

			if *update {
				if err := os.WriteFile(golden, got, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("reading golden file (run with -update to create it): %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("adapting %s gives\n%s\nwant (%s)\n%s", file, got, golden, want)
			}
		})
	}
}

// TestLoadErrors checks the errors of configurations that are only
// rejected when Caddy loads them, as JSON configs can be.
func TestLoadErrors(t *testing.T) {
	t.Setenv("USERSIG_EMPTY_KEY", "")
	tests := []struct {
		name    string
		handler string
		want    string
		only    string // "provider" for a row that only the provider rejects
	}{
		{"no app", `{}`, "apps: at least one app is required", ""},
		{"empty key", `{"apps":[{"sdkappid":1400000001,"keys":[""]}]}`, "app 1400000001: secret key 1 is empty", ""},
		{"no keys", `{"apps":[{"sdkappid":1400000001}]}`, "app 1400000001: keys: at least one secret key is required", ""},
		{"duplicate SDKAppID", `{"apps":[{"sdkappid":1400000001,"keys":["a"]},{"sdkappid":1400000001,"keys":["b"]}]}`, "apps: duplicate SDKAppID 1400000001", ""},
		{"SDKAppID out of range", `{"apps":[{"sdkappid":4294967296,"keys":["a"]}]}`, "apps: SDKAppID 4294967296 out of range", ""},
		{"SDKAppID zero", `{"apps":[{"keys":["a"]}]}`, "apps: SDKAppID 0 out of range", ""},
		{"key placeholder empty", `{"apps":[{"sdkappid":1400000001,"keys":["{env.USERSIG_EMPTY_KEY}"]}]}`, "app 1400000001: secret key 1: replacing placeholders", ""},
		{"key file missing", `{"apps":[{"sdkappid":1400000001,"keys":["{file./nonexistent/usersig.key}"]}]}`, "app 1400000001: secret key 1: replacing placeholders: evaluated placeholder {file./nonexistent/usersig.key} is empty (a missing or unreadable {file.*}", ""},
		{"unknown field", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"cache_ttl":"5m"}`, `unknown field "cache_ttl"`, ""},
		{"bad source", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"usersig_from":["form:sig"]}`, `usersig_from: invalid source "form:sig"`, ""},
		{"token type", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"token_type":"jwt"}`, `token_type: unknown value "jwt"`, ""},
		{"clock skew below a second", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"clock_skew":"500ms"}`, "clock_skew: 500ms is less than the minimum of 1s", ""},
		{"negative cache size", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"cache_size":-1}`, "cache_size: -1 is negative", ""},
		{"header name", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"userid_header":"X User"}`, `userid_header: "X User" is not a valid header name`, ""},
		{"realm", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"realm":"a\"b"}`, "realm:", ""},
		{"room source", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"require_room":"path:1"}`, `require_room: invalid source "path:1"`, ""},
		{"privilege name", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"require_privilege":"enter,talk"}`, `require_privilege: unknown privilege "talk"`, ""},
		{"token type with room", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"token_type":"any","require_room":"query:room"}`, "token_type: any conflicts with require_room", ""},
		{"mode", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"mode":"audit"}`, `mode: unknown value "audit"`, ""},
		{"mode optional", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"mode":"optional"}`, `mode: "optional" is not supported by the authentication provider`, "provider"},
		{"mode annotate", `{"apps":[{"sdkappid":1400000001,"keys":["a"]}],"mode":"annotate"}`, `mode: "annotate" is not supported by the authentication provider`, "provider"},
	}
	for _, tc := range tests {
		for _, module := range []string{"handler", "provider"} {
			if tc.only != "" && module != tc.only {
				continue
			}
			t.Run(tc.name+"/"+module, func(t *testing.T) {
				route := `{"handler":"usersig",` + strings.TrimPrefix(tc.handler, "{")
				if module == "provider" {
					route = `{"handler":"authentication","providers":{"usersig":` + tc.handler + `}}`
				}
				route = strings.Replace(route, `"usersig",}`, `"usersig"}`, 1)
				cfgJSON := `{"admin":{"disabled":true},"apps":{"http":{"servers":{"test":{"listen":["127.0.0.1:0"],"routes":[{"handle":[` + route + `]}]}}}}}`

				var cfg caddy.Config
				if err := json.Unmarshal([]byte(cfgJSON), &cfg); err != nil {
					t.Fatalf("test config %s: %v", cfgJSON, err)
				}
				err := caddy.Validate(&cfg)
				if err == nil {
					t.Fatalf("config %s loaded, want an error", cfgJSON)
				}
				if !strings.Contains(err.Error(), tc.want) {
					t.Errorf("error %q does not contain %q", err, tc.want)
				}
			})
		}
	}
}

func TestCaddyfileExampleAdapts(t *testing.T) {
	input, err := os.ReadFile(filepath.Join("..", "Caddyfile.example"))
	if err != nil {
		t.Fatal(err)
	}
	out, _, err := caddyconfig.GetAdapter("caddyfile").Adapt(input, map[string]any{"filename": "Caddyfile.example"})
	if err != nil {
		t.Fatalf("adapting Caddyfile.example: %v", err)
	}
	if !bytes.Contains(out, []byte(`"handler":"usersig"`)) {
		t.Errorf("adapted Caddyfile.example has no usersig handler:\n%s", out)
	}
	if !bytes.Contains(out, []byte(DemoKey)) {
		t.Error("Caddyfile.example does not use DemoKey, so its warning would not appear")
	}
}
