//go:build unix

// The benchmarks report CPU time from getrusage, which only Unix systems
// have, so this file builds on Unix only. The cache tests in cache_test.go
// run everywhere.

package caddymodule

import (
	"runtime"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// benchTokenCount is the number of distinct tokens that the hit benchmarks
// cycle through, so that lookups spread over the cache as they do with
// many clients.
const benchTokenCount = 1024

// cpuClock measures the CPU time, user and system, of all threads of the
// process during a benchmark loop. Unlike ns/op it leaves out the time
// spent waiting for a core, so it stays steady while other jobs share the
// machine. In a parallel benchmark it adds up the time of every goroutine,
// so time lost to lock contention shows as a higher cpu-ns/op.
type cpuClock struct {
	start int64
}

func startCPUClock() cpuClock { return cpuClock{start: processCPUTime()} }

// report adds the metric cpu-ns/op. It runs after the loop, when b.N
// holds the number of iterations.
func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPUTime()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPUTime() int64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return usage.Utime.Nano() + usage.Stime.Nano()
}

// checkHit reports whether a lookup was a successful cache hit, and marks
// the benchmark failed when it was not. It calls Errorf rather than Fatalf
// because RunParallel bodies must not stop the benchmark's goroutine.
func checkHit(b *testing.B, fail *failure, outcome cacheOutcome) bool {
	if fail != nil || outcome != cacheHit {
		b.Errorf("lookup gave failure %v and outcome %d, want success and a hit", fail, outcome)
		return false
	}
	return true
}

// BenchmarkCacheHit measures a lookup of a stored genuine token, checked
// against its request, in one goroutine.
func BenchmarkCacheHit(b *testing.B) {
	f := newCacheFixture(b, benchTokenCount)
	c := newDefaultCache(b)
	f.fill(b, c)

	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	for i := 0; i < b.N; i++ {
		n := i % benchTokenCount
		_, fail, outcome := c.verify(f.verifier, f.tokens[n], &f.requests[n])
		if !checkHit(b, fail, outcome) {
			return
		}
	}
	cpu.report(b)
}

// BenchmarkCacheHitParallel measures cache hits from GOMAXPROCS goroutines
// at once (-cpu 2 gives two), either over many tokens, as with many
// clients, or all on one token. Its ns/op is wall time divided by the
// lookups of all goroutines, so perfect scaling over two cores halves it
// compared with BenchmarkCacheHit, while cpu-ns/op stays the same.
func BenchmarkCacheHitParallel(b *testing.B) {
	f := newCacheFixture(b, benchTokenCount)

	b.Run("distinct-tokens", func(b *testing.B) {
		c := newDefaultCache(b)
		f.fill(b, c)
		var goroutines atomic.Int64
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPUClock()
		b.RunParallel(func(pb *testing.PB) {
			// Each goroutine starts at another place in the token list.
			i := int(goroutines.Add(1)) * 397
			for pb.Next() {
				n := i % benchTokenCount
				_, fail, outcome := c.verify(f.verifier, f.tokens[n], &f.requests[n])
				if !checkHit(b, fail, outcome) {
					return
				}
				i++
			}
		})
		cpu.report(b)
	})

	b.Run("one-token", func(b *testing.B) {
		c := newDefaultCache(b)
		f.fill(b, c)
		b.ReportAllocs()
		b.ResetTimer()
		cpu := startCPUClock()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				_, fail, outcome := c.verify(f.verifier, f.tokens[0], &f.requests[0])
				if !checkHit(b, fail, outcome) {
					return
				}
			}
		})
		cpu.report(b)
	})
}

// BenchmarkCacheMiss measures a lookup that misses, verifies the token and
// stores it, pushing out an older entry: a later request of a token that
// the doorkeeper has still marked. The tokens are four times as many as the
// cache holds and come in a fixed cycle, so none is still stored when it
// comes again.
func BenchmarkCacheMiss(b *testing.B) {
	const size = benchTokenCount / 4
	f := newCacheFixture(b, benchTokenCount)
	c, err := newVerifyCache(size, defaultNegativeCacheSize, defaultNegativeCacheTTL)
	if err != nil {
		b.Fatal(err)
	}
	f.fill(b, c)

	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	for i := 0; i < b.N; i++ {
		n := i % benchTokenCount
		_, fail, outcome := c.verify(f.verifier, f.tokens[n], &f.requests[n])
		if fail != nil || outcome != cacheMiss {
			b.Fatalf("lookup gave failure %v and outcome %d, want success and a miss", fail, outcome)
		}
	}
	cpu.report(b)
}

// BenchmarkCacheFirstRequest measures a lookup that misses on the first
// request of a token: it verifies the token and stores nothing. The
// tokens come in a cycle four times as long as the doorkeeper's memory,
// so each is new again when it comes back.
func BenchmarkCacheFirstRequest(b *testing.B) {
	const size = benchTokenCount / 4
	f := newCacheFixture(b, benchTokenCount)
	c, err := newVerifyCache(size, 0, 0)
	if err != nil {
		b.Fatal(err)
	}

	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	hits := 0
	for i := 0; i < b.N; i++ {
		n := i % benchTokenCount
		_, fail, outcome := c.verify(f.verifier, f.tokens[n], &f.requests[n])
		if fail != nil {
			b.Fatalf("lookup gave failure %v, want success", fail)
		}
		// A token that the doorkeeper takes for one seen before is
		// stored, and may still be stored when it comes back.
		if outcome == cacheHit {
			hits++
		}
	}
	cpu.report(b)
	b.ReportMetric(float64(hits)/float64(b.N), "hits/op")
}

// BenchmarkVerifyUncached measures usersig.Verifier.Verify alone on the
// tokens of BenchmarkCacheMiss, the floor of a cache miss.
func BenchmarkVerifyUncached(b *testing.B) {
	f := newCacheFixture(b, benchTokenCount)

	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	for i := 0; i < b.N; i++ {
		n := i % benchTokenCount
		if _, err := f.verifier.Verify(f.tokens[n], f.requests[n]); err != nil {
			b.Fatal(err)
		}
	}
	cpu.report(b)
}

// BenchmarkCacheRejectHit measures a lookup of a token with an invalid
// signature that the negative cache holds.
func BenchmarkCacheRejectHit(b *testing.B) {
	f := newCacheFixture(b, 1)
	forged := issue(b, "0000000000000000000000000000000000000000000000000000000000000000", usersig.Params{SDKAppID: testAppID, UserID: f.requests[0].UserID})
	c := newDefaultCache(b)
	// The second request of a token stores its failure.
	for range 2 {
		if _, fail, _ := c.verify(f.verifier, forged, &f.requests[0]); fail == nil || fail.code != usersig.CodeInvalidSignature {
			b.Fatalf("forged token gave failure %v, want code %d", fail, usersig.CodeInvalidSignature)
		}
	}

	b.ReportAllocs()
	b.ResetTimer()
	cpu := startCPUClock()
	for i := 0; i < b.N; i++ {
		_, fail, outcome := c.verify(f.verifier, forged, &f.requests[0])
		if fail == nil || outcome != cacheRejectHit {
			b.Fatalf("lookup gave failure %v and outcome %d, want a stored rejection", fail, outcome)
		}
	}
	cpu.report(b)
}

// BenchmarkCacheMemory reports the heap held by memoryEntries cached
// tokens, as MB and as bytes an entry. Its ns/op is the time to fill the
// cache, collections included. Run it with -benchtime 1x.
func BenchmarkCacheMemory(b *testing.B) {
	f := newCacheFixture(b, memoryEntries)
	var heapBytes uint64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		heapBytes = measureCacheHeap(b, f)
	}
	b.ReportMetric(float64(heapBytes)/(1<<20), "heap-MB")
	b.ReportMetric(float64(heapBytes)/memoryEntries, "heap-B/entry")
}

// BenchmarkCacheGC measures a forced garbage collection with a cache of
// 100,000 stored tokens, and without one. The difference is what the
// cache's entries add to each collection, which the server pays on every
// GC cycle while the cache is full.
func BenchmarkCacheGC(b *testing.B) {
	f := newCacheFixture(b, memoryEntries)
	collect := func(b *testing.B) {
		runtime.GC()
		b.ResetTimer()
		cpu := startCPUClock()
		for b.Loop() {
			runtime.GC()
		}
		cpu.report(b)
	}
	b.Run("empty", collect)
	b.Run("full", func(b *testing.B) {
		c, err := newVerifyCache(memoryEntries, defaultNegativeCacheSize, defaultNegativeCacheTTL)
		if err != nil {
			b.Fatal(err)
		}
		f.fill(b, c)
		collect(b)
		runtime.KeepAlive(c)
	})
}
