//go:build unix

package caddymodule

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"testing"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"go.uber.org/zap"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// handlerBench is a provisioned Handler with the request templates of
// one benchmark.
type handlerBench struct {
	handler *Handler
	uris    []string // request URIs, each with a different token
	header  http.Header
	ctx     context.Context
}

// newHandlerBench provisions a Handler with the default settings and one
// app, and issues n tokens for n different users, each in its own request
// URI shaped as Tencent's REST API expects it.
func newHandlerBench(b *testing.B, n int) *handlerBench {
	b.Helper()
	ctx, cancel := caddy.NewContext(caddy.Context{Context: context.Background()})
	b.Cleanup(cancel)

	h := &Handler{Gateway: Gateway{Apps: []App{{SDKAppID: testAppID, Keys: []string{testKey}}}}}
	if err := h.Provision(ctx); err != nil {
		b.Fatal(err)
	}
	if err := h.Validate(); err != nil {
		b.Fatal(err)
	}
	// The context's default logger writes debug entries, which Caddy's
	// default log level (INFO) drops before they are built.
	h.logger = zap.NewNop()
	b.Cleanup(func() { _ = h.Cleanup() })

	signer, err := usersig.NewSigner(testKey)
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	uris := make([]string, n)
	for i := range uris {
		userID := "user" + strconv.Itoa(i)
		token, err := signer.Issue(usersig.Params{SDKAppID: testAppID, UserID: userID, Time: now, Expire: 86400})
		if err != nil {
			b.Fatal(err)
		}
		uris[i] = "/v4/group_open_http_svc/get_group_list?sdkappid=" + strconv.Itoa(testAppID) +
			"&identifier=" + userID + "&usersig=" + token + "&random=99999999&contenttype=json"
	}
	header := http.Header{
		"User-Agent":      {"bench/1.0"},
		"Accept":          {"*/*"},
		"Accept-Encoding": {"gzip"},
		"Content-Type":    {"application/json"},
	}
	return &handlerBench{handler: h, uris: uris, header: header, ctx: ctx}
}

// request builds the request that Caddy's server would hand to the first
// handler for uri: a new request with its own URL and headers, a new
// replacer, and the context that caddyhttp.PrepareRequest sets up. The
// benchmarks run it in the loop, and the baseline benchmark measures its
// cost alone.
func (hb *handlerBench) request(uri string, w http.ResponseWriter) *http.Request {
	u, err := url.ParseRequestURI(uri)
	if err != nil {
		panic(err)
	}
	r := &http.Request{
		Method:     http.MethodGet,
		URL:        u,
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Header:     make(http.Header, len(hb.header)+2),
		Host:       "127.0.0.1:8080",
		RemoteAddr: "127.0.0.1:40000",
		RequestURI: uri,
	}
	for k, v := range hb.header {
		r.Header[k] = v
	}
	r = r.WithContext(hb.ctx)
	return caddyhttp.PrepareRequest(r, caddy.NewReplacer(), w, nil)
}

// BenchmarkHandler measures the Handler on the path of one request. The
// baseline sub-benchmark builds the request and calls a next handler
// without the Handler, so the Handler's own cost per request is the
// difference between it and the others:
//   - hit: every token is in the cache (1,024 tokens, stored before the loop);
//   - fresh: every token is new to the cache. The 65,536 tokens are 6.5
//     times the default cache size, so each comes back after the cache's
//     doorkeeper forgot it, and is verified without being stored. The
//     hits/op metric shows how many were cached anyway;
//   - rejected: a request without a UserSig, which gets 401.
func BenchmarkHandler(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error {
		if r.Header.Get(defaultUserIDHeader) == "" {
			return errBenchNoIdentity
		}
		return nil
	})

	b.Run("baseline", func(b *testing.B) {
		hb := newHandlerBench(b, benchTokenCount)
		w := httptest.NewRecorder()
		b.ReportAllocs()
		cpu := startCPUClock()
		i := 0
		for b.Loop() {
			r := hb.request(hb.uris[i%len(hb.uris)], w)
			r.Header.Set(defaultUserIDHeader, "x")
			if err := next.ServeHTTP(w, r); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cpu.report(b)
	})

	run := func(b *testing.B, tokens int, warm bool) {
		hb := newHandlerBench(b, tokens)
		w := httptest.NewRecorder()
		if warm {
			// The cache stores a token from its second request.
			for range 2 {
				for _, uri := range hb.uris {
					if err := hb.handler.ServeHTTP(w, hb.request(uri, w), next); err != nil {
						b.Fatal(err)
					}
				}
			}
		}
		hitsBefore := counterValue(b, cacheHits)
		b.ReportAllocs()
		cpu := startCPUClock()
		i := 0
		for b.Loop() {
			r := hb.request(hb.uris[i%len(hb.uris)], w)
			if err := hb.handler.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
			i++
		}
		cpu.report(b)
		b.ReportMetric((counterValue(b, cacheHits)-hitsBefore)/float64(i), "hits/op")
		if w.Code != http.StatusOK {
			b.Fatalf("a request got status %d", w.Code)
		}
	}
	b.Run("hit", func(b *testing.B) { run(b, benchTokenCount, true) })
	b.Run("fresh", func(b *testing.B) { run(b, 65536, false) })

	b.Run("rejected", func(b *testing.B) {
		hb := newHandlerBench(b, 1)
		uri := "/v4/group_open_http_svc/get_group_list?sdkappid=" + strconv.Itoa(testAppID) + "&identifier=alice"
		b.ReportAllocs()
		cpu := startCPUClock()
		for b.Loop() {
			w := httptest.NewRecorder()
			if err := hb.handler.ServeHTTP(w, hb.request(uri, w), next); err != nil {
				b.Fatal(err)
			}
			if w.Code != http.StatusUnauthorized {
				b.Fatalf("status %d, want 401", w.Code)
			}
		}
		cpu.report(b)
	})
}

var errBenchNoIdentity = caddyhttp.Error(http.StatusInternalServerError, errors.New("the next handler got no identity header"))

// counterValue reads the current value of a Prometheus counter.
func counterValue(b *testing.B, c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		b.Fatal(err)
	}
	return m.GetCounter().GetValue()
}

// BenchmarkHandlerAlone times only the Handler's ServeHTTP on a cached
// token. The requests are built in batches with the timer stopped, so the
// result is the Handler's cost without the baseline that BenchmarkHandler
// subtracts, and varies less from run to run.
func BenchmarkHandlerAlone(b *testing.B) {
	next := caddyhttp.HandlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	hb := newHandlerBench(b, benchTokenCount)
	w := httptest.NewRecorder()
	// The cache stores a token from its second request.
	for range 2 {
		for _, uri := range hb.uris {
			if err := hb.handler.ServeHTTP(w, hb.request(uri, w), next); err != nil {
				b.Fatal(err)
			}
		}
	}
	hitsBefore := counterValue(b, cacheHits)

	batch := make([]*http.Request, len(hb.uris))
	b.ReportAllocs()
	b.ResetTimer()
	for done := 0; done < b.N; done += len(batch) {
		b.StopTimer()
		n := min(len(batch), b.N-done)
		for i := range n {
			batch[i] = hb.request(hb.uris[i], w)
		}
		b.StartTimer()
		for _, r := range batch[:n] {
			if err := hb.handler.ServeHTTP(w, r, next); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.StopTimer()

	if hits := counterValue(b, cacheHits) - hitsBefore; hits != float64(b.N) {
		b.Fatalf("%v cache hits in %d requests", hits, b.N)
	}
	if w.Code != http.StatusOK {
		b.Fatalf("a request got status %d", w.Code)
	}
}
