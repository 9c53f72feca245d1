package caddymodule

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// checkShardInvariants fails t when the table, ring, free list and
// counters of a shard disagree with each other.
func checkShardInvariants(t *testing.T, s *shardedCache[uint64], step int) {
	t.Helper()
	for index := range s.shards {
		sh := &s.shards[index]
		sh.mu.Lock()
		table := sh.table.Load()
		nonNil, entries := 0, 0
		inTable := map[*cacheEntry[uint64]]int{}
		for i := range table.slots {
			e := table.slots[i].Load()
			if e == nil {
				continue
			}
			nonNil++
			if e == s.tombstone {
				continue
			}
			entries++
			if _, dup := inTable[e]; dup {
				t.Errorf("step %d shard %d: entry %x/%x twice in the table", step, index, e.hi, e.lo)
			}
			inTable[e] = i
		}
		inRing := 0
		for slot, e := range sh.ring {
			if e == nil {
				continue
			}
			inRing++
			if e.slot != slot {
				t.Errorf("step %d shard %d: ring slot %d holds an entry with slot %d", step, index, slot, e.slot)
			}
			if _, ok := inTable[e]; !ok {
				t.Errorf("step %d shard %d: ring entry %x/%x is not in the table", step, index, e.hi, e.lo)
			}
		}
		nilRing := len(sh.ring) - inRing
		if nilRing != len(sh.free) {
			t.Errorf("step %d shard %d: %d nil ring slots but %d free indexes", step, index, nilRing, len(sh.free))
		}
		if entries != inRing || sh.entries() != inRing {
			t.Errorf("step %d shard %d: table entries %d, ring entries %d, entries() %d", step, index, entries, inRing, sh.entries())
		}
		if sh.used != nonNil {
			t.Errorf("step %d shard %d: used = %d, want %d non-nil slots", step, index, sh.used, nonNil)
		}
		if nonNil >= len(table.slots) {
			t.Errorf("step %d shard %d: no nil slot left in %d", step, index, len(table.slots))
		}
		if sh.entries() > sh.size {
			t.Errorf("step %d shard %d: %d entries, above size %d", step, index, sh.entries(), sh.size)
		}
		if len(table.slots) != sh.slots || len(table.slots) > sh.maxSlots {
			t.Errorf("step %d shard %d: table has %d slots, slots %d, max %d", step, index, len(table.slots), sh.slots, sh.maxSlots)
		}
		sh.mu.Unlock()
	}
}

// runCacheOps applies ops to a cache of the given size and checks it
// against a model after each step. Each op byte picks the operation and
// the key; keys share low bits so that probe sequences collide.
func runCacheOps(t *testing.T, size int, ops []byte) {
	s, err := newShardedCache[uint64](size)
	if err != nil {
		t.Fatal(err)
	}
	key := func(n uint64) tokenKey { return tokenKey{hi: n * 0x9e3779b97f4a7c15, lo: n % 5} }
	if len(s.shards) == 1 {
		key = func(n uint64) tokenKey { return tokenKey{hi: n, lo: n % 5} }
	}
	present := map[uint64]uint64{} // keys that must be found, with their value
	for step, op := range ops {
		n := uint64(op & 0x3f)
		switch op >> 6 {
		case 0, 1:
			v := n + uint64(step)<<8
			if got := *s.add(key(n), v); got != v {
				t.Fatalf("step %d: add returned %d, want %d", step, got, v)
			}
			present[n] = v
		case 2:
			s.remove(key(n))
			delete(present, n)
		case 3:
			if n == 0x3f {
				s.purge()
				clear(present)
				break
			}
			if v, ok := s.get(key(n)); ok {
				if want, known := present[n]; known && *v != want {
					t.Fatalf("step %d: get(%d) = %d, want %d", step, n, *v, want)
				}
				if _, known := present[n]; !known {
					t.Fatalf("step %d: get(%d) found a removed key", step, n)
				}
			}
		}
		// A key that the cache no longer contains was evicted, so the model
		// drops it.
		for m, want := range present {
			v, ok := s.get(key(m))
			if !ok {
				delete(present, m)
				continue
			}
			if *v != want {
				t.Fatalf("step %d: get(%d) = %d, want %d", step, m, *v, want)
			}
		}
		if got := s.len(); got < len(present) {
			t.Fatalf("step %d: len = %d, but %d keys are found", step, got, len(present))
		}
		checkShardInvariants(t, s, step)
		if t.Failed() {
			t.FailNow()
		}
	}
}

// FuzzShardedCacheOps runs fuzzed sequences of adds, removes, lookups
// and purges on caches of 1 to 40 entries, checked by runCacheOps.
func FuzzShardedCacheOps(f *testing.F) {
	f.Add(uint8(1), []byte{0, 1, 2, 3, 4, 5, 0x80, 0x81, 6, 7, 8, 9})
	f.Add(uint8(5), []byte{0, 5, 10, 15, 20, 0x80, 25, 30, 0xff, 1, 2})
	f.Fuzz(func(t *testing.T, size uint8, ops []byte) {
		runCacheOps(t, int(size%40)+1, ops)
	})
}

// TestShardedCacheStableKeysFound checks that lookups without a lock
// always find keys that stay stored, while writers add and remove other
// keys of the same shard, which fills the table with tombstones and forces
// rebuilds and growth. No eviction happens: the keys fit in the shard.
func TestShardedCacheStableKeysFound(t *testing.T) {
	const size = 64 // one shard
	s, err := newShardedCache[uint64](size)
	if err != nil {
		t.Fatal(err)
	}
	key := func(n uint64) tokenKey { return tokenKey{hi: n, lo: n % 7} }
	const stable = 20
	for n := range uint64(stable) {
		s.add(key(n), n)
	}

	var wg sync.WaitGroup
	var missed, wrong atomic.Int64
	stop := make(chan struct{})
	for r := range 2 {
		wg.Go(func() {
			for i := uint64(r); ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				n := i % stable
				v, ok := s.get(key(n))
				switch {
				case !ok:
					missed.Add(1)
				case *v != n:
					wrong.Add(1)
				}
			}
		})
	}
	for step := range 200_000 {
		n := stable + uint64(step%40)
		if step%80 < 40 {
			s.add(key(n), n)
		} else {
			s.remove(key(n))
		}
	}
	close(stop)
	wg.Wait()
	if n := missed.Load(); n != 0 {
		t.Errorf("%d lookups missed a key that stayed stored", n)
	}
	if n := wrong.Load(); n != 0 {
		t.Errorf("%d lookups returned the value of another key", n)
	}
	if n := s.len(); n != stable {
		t.Errorf("len = %d, want %d", n, stable)
	}
	checkShardInvariants(t, s, -1)
}

// TestShardedCacheWritersAndPurge runs writers that add, evict, remove
// and purge against lookups, on caches of 1 to 300 entries, then checks
// the shard invariants.
func TestShardedCacheWritersAndPurge(t *testing.T) {
	for _, size := range []int{1, 3, 64, 300} {
		s, err := newShardedCache[uint64](size)
		if err != nil {
			t.Fatal(err)
		}
		key := func(n uint64) tokenKey { return tokenKey{hi: n * 0x9e3779b97f4a7c15, lo: n % 9} }
		var wg sync.WaitGroup
		var wrong atomic.Int64
		stop := make(chan struct{})
		for w := range 2 {
			wg.Go(func() {
				for i := uint64(w); i < 100_000; i += 2 {
					n := (i * 7919) % 1000
					switch {
					case i%1000 == 999:
						s.purge()
					case i%5 == 0:
						s.remove(key(n))
					default:
						s.add(key(n), n)
					}
				}
			})
		}
		wg.Go(func() {
			i := uint64(0)
			lookUpUntil(stop, s, key, func() uint64 {
				n := (i * 31) % 1000
				i++
				return n
			}, &wrong)
		})
		time.Sleep(300 * time.Millisecond)
		close(stop)
		wg.Wait()
		if n := wrong.Load(); n != 0 {
			t.Errorf("size %d: %d lookups returned another key's value", size, n)
		}
		checkShardInvariants(t, s, -1)
	}
}

// TestShardedCachePurgeShrinks checks that purge returns every shard to a
// table of minSlots slots and an empty ring, and that the cache fills to
// its size again afterwards.
func TestShardedCachePurgeShrinks(t *testing.T) {
	const size = 10_000
	s, err := newShardedCache[uint64](size)
	if err != nil {
		t.Fatal(err)
	}
	key := func(n uint64) tokenKey { return tokenKey{hi: n * 0x9e3779b97f4a7c15, lo: n * 0xbf58476d1ce4e5b9} }
	for round := range 3 {
		for n := range uint64(3 * size) {
			s.add(key(n+uint64(round)<<40), n)
			if n%3 == 0 {
				s.remove(key(n/2 + uint64(round)<<40))
			}
		}
		checkShardInvariants(t, s, round)
		s.purge()
		for i := range s.shards {
			sh := &s.shards[i]
			if n := len(sh.table.Load().slots); n != minSlots || len(sh.ring) != 0 || len(sh.free) != 0 || sh.used != 0 {
				t.Errorf("round %d shard %d after purge: %d slots, ring %d, free %d, used %d", round, i, n, len(sh.ring), len(sh.free), sh.used)
			}
		}
		if n := s.len(); n != 0 {
			t.Errorf("round %d: len after purge = %d", round, n)
		}
	}
	for n := range uint64(3 * size) {
		s.add(key(n), n)
	}
	if n := s.len(); n != size {
		t.Errorf("len after refill = %d, want %d", n, size)
	}
	checkShardInvariants(t, s, -1)
}
