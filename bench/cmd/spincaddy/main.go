// Command spincaddy is Caddy with its standard modules, the UserSig
// gateway and one more handler, spin, for bench/e2e.sh's calibration runs
// (NULL=spin). The spin directive runs a busy loop for a fixed time on each
// request and passes it on:
//
//	spin 900   # nanoseconds per request
//
// The loop stops on the wall clock, so it costs that much CPU time only
// while its thread keeps the core, as it does when e2e.sh pins the server.
// It also takes longer than asked, by its two clock reads and up to one
// pass of the loop: BenchmarkSpin timed spin 400 at about 470 ns a call
// on machine B in BENCHMARKS.md. It allocates
// nothing and touches only one shared word, so a run with it shows what a
// handler that only costs CPU time does to requests per second on this
// machine. Comparing the gateway with such handlers tells how much of the
// gateway's cost is its own CPU time and how much comes from what it does
// to the rest of the process.
package main

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/caddyserver/caddy/v2"
	"github.com/caddyserver/caddy/v2/caddyconfig/httpcaddyfile"
	caddycmd "github.com/caddyserver/caddy/v2/cmd"
	"github.com/caddyserver/caddy/v2/modules/caddyhttp"

	_ "github.com/caddyserver/caddy/v2/modules/standard"

	_ "github.com/caddy-usersig/caddy-usersig/caddymodule"
)

func init() {
	caddy.RegisterModule(Spin{})
	httpcaddyfile.RegisterHandlerDirective("spin", parseSpin)
	httpcaddyfile.RegisterDirectiveOrder("spin", httpcaddyfile.Before, "respond")
}

// Spin is an HTTP handler that runs for a fixed time on each request
// before it calls the next handler.
type Spin struct {
	// Nanoseconds is the time to spend on each request.
	Nanoseconds int64 `json:"nanoseconds,omitempty"`
}

// CaddyModule returns the Caddy module information.
func (Spin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.spin", New: func() caddy.Module { return new(Spin) }}
}

// spinState keeps the loop's result, so that the compiler cannot drop the
// loop. It is atomic because requests run on several goroutines; which
// request's result it keeps does not matter.
var spinState atomic.Uint64

// ServeHTTP spins, then calls next.
func (s *Spin) ServeHTTP(w http.ResponseWriter, r *http.Request, next caddyhttp.Handler) error {
	if s.Nanoseconds > 0 {
		x := spinState.Load()
		start := time.Now()
		for time.Since(start) < time.Duration(s.Nanoseconds) {
			// A few multiplications between two clock reads keep the
			// share of the loop spent reading the clock small.
			for range 8 {
				x = x*6364136223846793005 + 1442695040888963407
			}
		}
		spinState.Store(x)
	}
	return next.ServeHTTP(w, r)
}

func parseSpin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next() // the directive name
	if !h.NextArg() {
		return nil, h.ArgErr()
	}
	n, err := strconv.ParseInt(h.Val(), 10, 64)
	if err != nil || n < 0 {
		return nil, h.Errf("invalid number of nanoseconds %q: want a whole number, 0 or more", h.Val())
	}
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	if h.NextBlock(0) {
		return nil, h.Err("unexpected block: spin takes only a number of nanoseconds")
	}
	return &Spin{Nanoseconds: n}, nil
}

var _ caddyhttp.MiddlewareHandler = (*Spin)(nil)

func main() {
	caddycmd.Main()
}
