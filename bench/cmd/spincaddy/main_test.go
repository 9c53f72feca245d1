package main

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/caddyserver/caddy/v2/caddyconfig"
)

// adapt turns a Caddyfile into Caddy's JSON config.
func adapt(t *testing.T, caddyfile string) (string, error) {
	t.Helper()
	cfg, _, err := caddyconfig.GetAdapter("caddyfile").Adapt([]byte(caddyfile), map[string]any{"filename": "Caddyfile"})
	return string(cfg), err
}

func TestSpinDirective(t *testing.T) {
	cfg, err := adapt(t, ":8080 {\n\trespond ok\n\tspin 900\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	// The directive order puts spin before respond whatever the order in
	// the site block.
	spin := strings.Index(cfg, `"handler":"spin"`)
	respond := strings.Index(cfg, `"handler":"static_response"`)
	if spin < 0 || respond < 0 || spin > respond {
		t.Fatalf("want spin before respond in %s", cfg)
	}
	if !strings.Contains(cfg, `"nanoseconds":900`) {
		t.Fatalf("want nanoseconds 900 in %s", cfg)
	}
	var parsed map[string]any
	if err := json.Unmarshal([]byte(cfg), &parsed); err != nil {
		t.Fatalf("the adapted config is not JSON: %v", err)
	}
}

func TestSpinDirectiveErrors(t *testing.T) {
	for _, args := range []string{"", "x", "-1", "1.5", "900 x", "900 -1", "900 3 3", "1000000001", "900 1001", "99999999999999999999", "900 {\n\t\tbogus\n\t}"} {
		if cfg, err := adapt(t, ":8080 {\n\tspin "+args+"\n}\n"); err == nil {
			t.Errorf("spin %q: got config %s, want an error", args, cfg)
		}
	}
}

func TestSpinDirectiveAllocations(t *testing.T) {
	cfg, err := adapt(t, ":8080 {\n\tspin 900 3\n\trespond ok\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(cfg, `"allocations":3`) {
		t.Fatalf("want allocations 3 in %s", cfg)
	}
}

func TestSpinValidate(t *testing.T) {
	for _, tc := range []struct {
		spin  Spin
		valid bool
	}{
		{Spin{Nanoseconds: 900, Allocations: 3}, true},
		{Spin{Nanoseconds: maxSpinNanoseconds, Allocations: maxSpinAllocations}, true},
		{Spin{Nanoseconds: -1}, false},
		{Spin{Nanoseconds: maxSpinNanoseconds + 1}, false},
		{Spin{Allocations: -1}, false},
		{Spin{Allocations: maxSpinAllocations + 1}, false},
	} {
		if err := tc.spin.Validate(); (err == nil) != tc.valid {
			t.Errorf("%+v: Validate = %v, want valid %v", tc.spin, err, tc.valid)
		}
	}
}

func TestSpinAllocates(t *testing.T) {
	next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	s := &Spin{Allocations: 3}
	if err := s.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
		t.Fatal(err)
	}
	n := 0
	for g := lastGarbage.Load(); g != nil; g = g.next {
		n++
	}
	if n != 3 {
		t.Errorf("the request left %d objects, want 3", n)
	}
}

func TestSpinCallsNext(t *testing.T) {
	for _, ns := range []int64{0, 1000} {
		called := false
		next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error {
			called = true
			w.WriteHeader(http.StatusTeapot)
			return nil
		})
		w := httptest.NewRecorder()
		s := &Spin{Nanoseconds: ns}
		if err := s.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil), next); err != nil {
			t.Fatal(err)
		}
		if !called || w.Code != http.StatusTeapot {
			t.Errorf("spin %d ns: next called %v, status %d", ns, called, w.Code)
		}
	}
}

type handlerFunc func(http.ResponseWriter, *http.Request) error

func (f handlerFunc) ServeHTTP(w http.ResponseWriter, r *http.Request) error { return f(w, r) }

// BenchmarkSpin times the handler in process. Its loop stops at the first
// clock read past its time, so a call takes somewhat longer than asked.
func BenchmarkSpin(b *testing.B) {
	next := handlerFunc(func(w http.ResponseWriter, r *http.Request) error { return nil })
	w := httptest.NewRecorder()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	for _, ns := range []int64{400, 900, 1800} {
		b.Run(strconv.FormatInt(ns, 10), func(b *testing.B) {
			s := &Spin{Nanoseconds: ns}
			for b.Loop() {
				if err := s.ServeHTTP(w, r, next); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
