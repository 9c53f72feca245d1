//go:build unix

package caddymodule

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// serverBench is a running Caddy with two sites from one Caddyfile: plain
// Caddy's respond route, and the same route behind the usersig directive.
type serverBench struct {
	plain, gateway *caddyhttp.Server
}

// newServerBench loads the config and finds the two servers that Caddy
// built from it. The benchmarks call their ServeHTTP methods directly, so
// they measure everything that Caddy and the handler do for a request
// except the network.
func newServerBench(b *testing.B) *serverBench {
	b.Helper()
	port := func() string {
		return strconv.Itoa(freePort(b))
	}
	plainPort, gatewayPort := port(), port()

	caddyfile := "{\n\tadmin 127.0.0.1:" + port() + "\n\tpersist_config off\n\tauto_https off\n\tlog {\n\t\toutput discard\n\t}\n}\n\n" +
		"http://127.0.0.1:" + plainPort + " {\n\trespond \"ok\" 200\n}\n\n" +
		"http://127.0.0.1:" + gatewayPort + " {\n\tusersig {\n\t\tapp " + strconv.Itoa(testAppID) + " " + testKey +
		"\n\t}\n\trespond \"ok\" 200\n}\n"
	cfgJSON, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	if err != nil {
		b.Fatalf("adapting the Caddyfile: %v", err)
	}
	if err := caddy.Load(cfgJSON, true); err != nil {
		b.Fatalf("loading the config: %v", err)
	}
	b.Cleanup(func() {
		if err := caddy.Stop(); err != nil {
			b.Errorf("stopping Caddy: %v", err)
		}
	})

	app, err := caddy.ActiveContext().App("http")
	if err != nil {
		b.Fatal(err)
	}
	sb := &serverBench{}
	for _, srv := range app.(*caddyhttp.App).Servers {
		switch srv.Listen[0] {
		case ":" + plainPort:
			sb.plain = srv
		case ":" + gatewayPort:
			sb.gateway = srv
		}
	}
	if sb.plain == nil || sb.gateway == nil {
		b.Fatalf("the config has no server for port %s or %s", plainPort, gatewayPort)
	}
	return sb
}

// BenchmarkServer measures a whole request in Caddy's server: the plain
// site, and the gateway with a cached token (hit) or a new token on every
// request (fresh). The gateway's cost per request is the difference from
// plain. Each iteration parses its request with http.ReadRequest from the
// kind of HTTP/1.1 text that bench/e2e.sh sends, which costs all three the
// same.
func BenchmarkServer(b *testing.B) {
	sb := newServerBench(b)
	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		b.Fatal(err)
	}
	requests := func(n int, prefix string) []string {
		raw := make([]string, n)
		now := time.Now()
		for i := range raw {
			userID := prefix + strconv.Itoa(i)
			token, err := signer.Issue(usersig.Params{SDKAppID: testAppID, UserID: userID, Time: now, Expire: 86400})
			if err != nil {
				b.Fatal(err)
			}
			raw[i] = "GET /v4/group_open_http_svc/get_group_list?sdkappid=" + strconv.Itoa(testAppID) +
				"&identifier=" + userID + "&usersig=" + token + "&random=99999999&contenttype=json HTTP/1.1\r\n" +
				"Host: 127.0.0.1\r\nUser-Agent: bench/1.0\r\n\r\n"
		}
		return raw
	}
	hit := requests(benchTokenCount, "hit")

	run := func(b *testing.B, srv *caddyhttp.Server, raw []string) {
		// Warm the cache with the hit tokens. The cache stores a token
		// from its second request.
		for range 2 {
			for _, text := range hit {
				serveRaw(b, srv, text)
			}
		}
		b.ReportAllocs()
		cpu := startCPUClock()
		i := 0
		for b.Loop() {
			serveRaw(b, srv, raw[i%len(raw)])
			i++
		}
		cpu.report(b)
	}
	b.Run("plain", func(b *testing.B) { run(b, sb.plain, hit) })
	b.Run("hit", func(b *testing.B) { run(b, sb.gateway, hit) })
	b.Run("fresh", func(b *testing.B) { run(b, sb.gateway, requests(65536, "fresh")) })
}

// serveRaw parses one HTTP/1.1 request and serves it.
func serveRaw(b *testing.B, srv *caddyhttp.Server, text string) {
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(text)))
	if err != nil {
		b.Fatal(err)
	}
	w := httptest.NewRecorder()
	srv.ServeHTTP(w, r)
	if w.Code != http.StatusOK {
		b.Fatalf("status %d: %s", w.Code, w.Body)
	}
}
