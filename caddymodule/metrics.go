package caddymodule

import (
	"errors"
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// The gateway's Prometheus collectors. They are package variables, so a
// count survives config reloads, and every config registers the same
// collectors in its own metrics registry (Caddy creates a new registry for
// each config and serves it on the admin API's /metrics).
//
// Every label has a bounded set of values: results and reasons are
// constant names, codes are Tencent's error codes, and SDKAppIDs and key
// indexes come from the configuration. No label holds a UserID, a room ID
// or a token.
var (
	metricRequests = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "requests_total",
		Help:      "Requests checked by the usersig gateway, by result: allowed, denied, or passed without a valid credential (modes optional and annotate).",
	}, []string{"result"})

	metricDenied = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "denied_total",
		Help:      "Requests rejected by the usersig gateway, by Tencent error code and reason.",
	}, []string{"code", "reason"})

	metricCacheLookups = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "cache_lookups_total",
		Help:      "UserSig verifications by how the verification cache answered: hit, miss, reject_hit or shared.",
	}, []string{"outcome"})

	metricKeyMatches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "key_matches_total",
		Help:      "Genuine UserSigs by SDKAppID and by the index of the secret key that verified them (0 for the current key).",
	}, []string{"sdkappid", "key_index"})

	metricLockouts = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "lockouts_total",
		Help:      "Lockouts started after repeated failures.",
	})

	metricRevocations = prometheus.NewCounter(prometheus.CounterOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "revocations_total",
		Help:      "Requests rejected because their UserSig or UserID was revoked.",
	})

	metricVerifyDuration = prometheus.NewHistogram(prometheus.HistogramOpts{
		Namespace: "caddy",
		Subsystem: "usersig",
		Name:      "verify_duration_seconds",
		Help:      "Time spent verifying a UserSig that was not in the cache: decoding, inflating, parsing and the HMAC.",
		// From 0.1µs to 10ms (a verification on a busy machine), in
		// steps of 1, 2.5 and 5. A verification takes about 1µs on an
		// idle core. Cache hits are not timed: reading the clock twice
		// would cost more than the hit itself.
		Buckets: []float64{
			1e-7, 2.5e-7, 5e-7,
			1e-6, 2.5e-6, 5e-6,
			1e-5, 2.5e-5, 5e-5,
			1e-4, 2.5e-4, 5e-4,
			1e-3, 2.5e-3, 5e-3,
			1e-2,
		},
	})
)

// metricCollectors lists every collector that registerMetrics registers.
var metricCollectors = []prometheus.Collector{
	metricRequests,
	metricDenied,
	metricCacheLookups,
	metricKeyMatches,
	metricLockouts,
	metricRevocations,
	metricVerifyDuration,
}

// Values of the result label of requests_total.
const (
	resultAllowed = "allowed"
	resultDenied  = "denied"
	resultPassed  = "passed"
)

// The series with fixed labels, created at start-up so that a scrape
// shows them with 0 before the first request.
var (
	requestsAllowed = metricRequests.WithLabelValues(resultAllowed)
	requestsDenied  = metricRequests.WithLabelValues(resultDenied)
	requestsPassed  = metricRequests.WithLabelValues(resultPassed)

	cacheHits       = metricCacheLookups.WithLabelValues("hit")
	cacheMisses     = metricCacheLookups.WithLabelValues("miss")
	cacheRejectHits = metricCacheLookups.WithLabelValues("reject_hit")
	cacheShares     = metricCacheLookups.WithLabelValues("shared")
)

// registerMetrics adds the gateway's collectors to registry. Several
// gateways of one config share a registry: the first registers the
// collectors, and the others find them already there and reuse them.
// A nil registry, which only a Context built outside Caddy has, is
// skipped.
func registerMetrics(registry *prometheus.Registry) error {
	if registry == nil {
		return nil
	}
	for _, c := range metricCollectors {
		err := registry.Register(c)
		if err == nil {
			continue
		}
		var already prometheus.AlreadyRegisteredError
		if errors.As(err, &already) && already.ExistingCollector == c {
			continue
		}
		return fmt.Errorf("registering metrics: %w", err)
	}
	return nil
}

// countLockout counts one lockout in caddy_usersig_lockouts_total.
func countLockout() {
	metricLockouts.Inc()
}

// countRevocation counts one rejection of a revoked credential in
// caddy_usersig_revocations_total.
func countRevocation() {
	metricRevocations.Inc()
}

// countCacheLookup counts one result of the verification cache.
func countCacheLookup(outcome cacheOutcome) {
	switch outcome {
	case cacheHit:
		cacheHits.Inc()
	case cacheRejectHit:
		cacheRejectHits.Inc()
	case cacheShared:
		cacheShares.Inc()
	default:
		cacheMisses.Inc()
	}
}

// countDenied counts a rejected request in requests_total and
// denied_total. f.result is one of a fixed set of names, so the reason
// label stays bounded.
func countDenied(f *failure) {
	requestsDenied.Inc()
	metricDenied.WithLabelValues(strconv.Itoa(f.code), f.result).Inc()
}

// keyMatchCounters returns the key_matches_total series of each app, one
// per secret key, so that a request does not format labels.
func keyMatchCounters(apps []App) map[uint64][]prometheus.Counter {
	counters := make(map[uint64][]prometheus.Counter, len(apps))
	for _, app := range apps {
		id := strconv.FormatUint(app.SDKAppID, 10)
		series := make([]prometheus.Counter, len(app.Keys))
		for i := range app.Keys {
			series[i] = metricKeyMatches.WithLabelValues(id, strconv.Itoa(i))
		}
		counters[app.SDKAppID] = series
	}
	return counters
}
