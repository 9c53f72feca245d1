// Command spincaddy is Caddy with its standard modules, the UserSig
// gateway and one more handler, spin, for bench/e2e.sh's calibration runs
// (NULL=spin). The spin directive runs a busy loop for a fixed time on each
// request and passes it on:
//
//	spin 900     # nanoseconds per request
//	spin 900 3   # and 3 objects of 48 bytes allocated per request
//
// The loop stops on the wall clock, so it costs that much CPU time only
// while its thread keeps the core, as it does when e2e.sh pins the server.
// It also takes longer than asked, by its two clock reads and up to one
// pass of the loop: BenchmarkSpin timed spin 400 at about 470 ns a call
// on machine B in BENCHMARKS.md. Without the second argument it
// allocates nothing and touches only one shared word, so a run with it
// shows what a handler that only costs CPU time does to requests per
// second on this machine. The second argument adds the garbage that a
// handler's allocations leave, to measure what they cost as well.
// Comparing the gateway with such handlers shows how much of the
// gateway's cost is its own CPU time and how much comes from what it does
// to the rest of the process.
package main

import (
	"fmt"
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

	// Allocations is the number of garbage objects to allocate on each
	// request. Each is 48 bytes with a pointer, and each request's
	// objects stay reachable until the next request replaces them.
	Allocations int `json:"allocations,omitempty"`
}

// garbage is one object of Spin's allocations: 48 bytes, with a pointer
// so that the garbage collector scans it as it scans a handler's objects.
type garbage struct {
	next *garbage
	_    [5]uint64
}

// lastGarbage keeps the objects of the latest request reachable, so that
// the compiler cannot put them on the stack.
var lastGarbage atomic.Pointer[garbage]

// CaddyModule returns the Caddy module information.
func (Spin) CaddyModule() caddy.ModuleInfo {
	return caddy.ModuleInfo{ID: "http.handlers.spin", New: func() caddy.Module { return new(Spin) }}
}

// Validate checks the bounds of a config written as JSON, which
// parseSpin does not see.
func (s *Spin) Validate() error {
	if s.Nanoseconds < 0 || s.Nanoseconds > maxSpinNanoseconds {
		return fmt.Errorf("invalid nanoseconds %d: want 0 to %d", s.Nanoseconds, maxSpinNanoseconds)
	}
	if s.Allocations < 0 || s.Allocations > maxSpinAllocations {
		return fmt.Errorf("invalid allocations %d: want 0 to %d", s.Allocations, maxSpinAllocations)
	}
	return nil
}

// spinState keeps the loop's result, so that the compiler cannot drop the
// loop. It is atomic because requests run on several goroutines. Which
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
	if s.Allocations > 0 {
		var g *garbage
		for range s.Allocations {
			g = &garbage{next: g}
		}
		lastGarbage.Store(g)
	}
	return next.ServeHTTP(w, r)
}

// Bounds of the spin directive's arguments, so that a typing mistake
// cannot make each request run for minutes or allocate without limit.
const (
	maxSpinNanoseconds = int64(time.Second)
	maxSpinAllocations = 1000
)

// parseSpin parses "spin NANOSECONDS [ALLOCATIONS]".
func parseSpin(h httpcaddyfile.Helper) (caddyhttp.MiddlewareHandler, error) {
	h.Next() // the directive name
	if !h.NextArg() {
		return nil, h.ArgErr()
	}
	n, err := strconv.ParseInt(h.Val(), 10, 64)
	if err != nil || n < 0 || n > maxSpinNanoseconds {
		return nil, h.Errf("invalid number of nanoseconds %q: want a whole number from 0 to %d", h.Val(), maxSpinNanoseconds)
	}
	spin := &Spin{Nanoseconds: n}
	if h.NextArg() {
		allocations, err := strconv.Atoi(h.Val())
		if err != nil || allocations < 0 || allocations > maxSpinAllocations {
			return nil, h.Errf("invalid number of allocations %q: want a whole number from 0 to %d", h.Val(), maxSpinAllocations)
		}
		spin.Allocations = allocations
	}
	if h.NextArg() {
		return nil, h.ArgErr()
	}
	if h.NextBlock(0) {
		return nil, h.Err("unexpected block: spin takes a number of nanoseconds and, optionally, of allocations")
	}
	return spin, nil
}

// Interface guards
var (
	_ caddyhttp.MiddlewareHandler = (*Spin)(nil)
	_ caddy.Validator             = (*Spin)(nil)
)

func main() {
	caddycmd.Main()
}
