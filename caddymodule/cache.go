package caddymodule

import (
	"errors"
	"fmt"
	"hash/maphash"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

// verifyCalls counts the calls of usersig.Verifier.Verify made by every
// verifyCache in the process. Tests read it to count verifications.
var verifyCalls atomic.Int64

// Test hooks, nil outside tests: testHookVerify runs before each
// verification, testHookFollow when a request starts to wait for the
// verification of the same token by another request, and
// testHookEvictStep at each step of the eviction hand.
var testHookVerify, testHookFollow, testHookEvictStep atomic.Pointer[func()]

func runHook(hook *atomic.Pointer[func()]) {
	if f := hook.Load(); f != nil {
		(*f)()
	}
}

// verifyCache remembers verification results by token, so that a client
// that sends the same UserSig on every request costs two HMACs each time
// its token enters the cache: a result is stored from the token's second
// request (see doorkeeper).
//
// Genuine tokens are stored with their claims. A hit is checked again with
// usersig.Verifier.Check against the request (SDKAppID, UserID, expiry with
// the clock skew), so it gives the same result as verifying the token again
// would. Failures that time cannot change (malformed, invalid signature)
// are stored in a second cache for a short TTL, so a flood of one bad
// token costs two verifications. Concurrent misses for one token after its
// first request wait for a single verification.
//
// Both caches are split into shards with a lock each (see shardedCache),
// so that hits on different tokens do not wait for each other. Entries are
// keyed by a 128-bit hash of the token (see tokenKey) rather than by the
// token itself, which saves memory and compares 16 bytes instead of the
// whole token.
//
// The cache starts no goroutines: expired entries are dropped when a
// lookup finds them, or pushed out by newer ones.
type verifyCache struct {
	seeds     [2]maphash.Seed
	claims    *shardedCache[usersig.Claims] // nil when disabled
	rejects   *shardedCache[rejection]      // nil when disabled
	rejectTTL time.Duration

	// admit lets a result be stored only from a token's second request
	// (see doorkeeper). It is nil when both caches are disabled.
	admit *doorkeeper

	mu      sync.Mutex
	flights map[tokenKey]*flight // verifications in progress
}

// tokenKey is the cache key of a token: two 64-bit maphash values of the
// token under two seeds drawn at random for each cache.
//
// A hit hands the stored claims to any token with the same key, and only
// the request's SDKAppID, UserID and time are checked against them. A
// forged token whose key equals that of a stored genuine token of the
// claimed user would therefore pass. The seeds never leave the process,
// so a client cannot compute keys and can only guess. With n stored
// tokens, a guess matches with a probability of at most n/2^128, assuming
// that maphash values look random to someone who does not know the seed.
// The maphash documentation says that it is not cryptographically secure,
// which is why one 64-bit value alone, at n/2^64 a guess, would leave too
// small a margin. Accidental collisions among n stored tokens have a
// probability of about n²/2^129, below 10^-28 for n = 10^5.
type tokenKey struct {
	hi, lo uint64
}

func (c *verifyCache) key(token string) tokenKey {
	return tokenKey{hi: maphash.String(c.seeds[0], token), lo: maphash.String(c.seeds[1], token)}
}

// rejection is a stored failure. For an invalid signature, the SDKAppID
// and UserID that the request claimed are also those in the token, because
// Verify compares them before it checks the signature.
type rejection struct {
	fail     *failure
	sdkAppID uint64
	userID   string
	storedAt time.Time
}

// flight is a verification in progress. Its fields other than done are
// written before done is released and only read after. done is a
// WaitGroup rather than a channel because it lives inside the flight and
// costs no allocation of its own.
type flight struct {
	done     sync.WaitGroup
	sdkAppID uint64
	userID   string
	finished bool // false when the verification panicked
	claims   *usersig.Claims
	fail     *failure
}

// newVerifyCache returns a cache holding up to size genuine tokens and up
// to rejectSize failures, each kept for rejectTTL. A size of 0 disables
// that part of the cache.
func newVerifyCache(size, rejectSize int, rejectTTL time.Duration) (*verifyCache, error) {
	c := &verifyCache{
		seeds:     [2]maphash.Seed{maphash.MakeSeed(), maphash.MakeSeed()},
		rejectTTL: rejectTTL,
		flights:   make(map[tokenKey]*flight),
	}
	if size > 0 {
		claims, err := newShardedCache[usersig.Claims](size)
		if err != nil {
			return nil, err
		}
		c.claims = claims
	}
	if rejectSize > 0 && rejectTTL > 0 {
		rejects, err := newShardedCache[rejection](rejectSize)
		if err != nil {
			return nil, err
		}
		c.rejects = rejects
	}
	// Each size counts at most the filter's bound, so the sum does not
	// overflow.
	entries := 0
	if c.claims != nil {
		entries += min(size, maxDoorkeeperEntries)
	}
	if c.rejects != nil {
		entries += min(rejectSize, maxDoorkeeperEntries)
	}
	if entries > 0 {
		c.admit = newDoorkeeper(entries)
	}
	return c, nil
}

// cacheOutcome reports where verifyCache.verify found its result.
type cacheOutcome int

const (
	cacheMiss      cacheOutcome = iota // this request verified the token
	cacheHit                           // a stored genuine token
	cacheRejectHit                     // a stored failure
	cacheShared                        // waited for another request's verification
)

// verify checks token against req with v, using and filling the cache.
// req.Mode should be usersig.ModeAny: the cache stores claims whatever the
// token type, and the caller checks the type on every result. The claims
// may be a cache entry, which the caller must not modify.
func (c *verifyCache) verify(v *usersig.Verifier, token string, req *usersig.Request) (*usersig.Claims, *failure, cacheOutcome) {
	key := c.key(token)
	if claims, fail, outcome, ok := c.lookup(key, v, req); ok {
		return claims, fail, outcome
	}
	if c.admit == nil || !c.admit.seen(key) {
		// The first request of a token, or no cache: verify without
		// storing, and without the bookkeeping that lets concurrent
		// requests of one token share a verification.
		claims, fail := c.verifyOnly(v, token, req)
		return claims, fail, cacheMiss
	}

	c.mu.Lock()
	if f, ok := c.flights[key]; ok {
		c.mu.Unlock()
		claims, fail := c.follow(f, key, v, token, req)
		return claims, fail, cacheShared
	}
	// A flight that ended between the lookup above and taking the lock
	// has already stored its result, so look again before starting one.
	if claims, fail, outcome, ok := c.lookup(key, v, req); ok {
		c.mu.Unlock()
		return claims, fail, outcome
	}
	f := &flight{sdkAppID: req.SDKAppID, userID: req.UserID}
	f.done.Add(1)
	c.flights[key] = f
	c.mu.Unlock()

	defer func() {
		c.mu.Lock()
		delete(c.flights, key)
		c.mu.Unlock()
		f.done.Done()
	}()
	f.claims, f.fail = c.verifyAndStore(key, v, token, req)
	f.finished = true
	return f.claims, f.fail, cacheMiss
}

// follow waits for another request's verification of the same token and
// reuses its result where the result does not depend on what the two
// requests claim.
func (c *verifyCache) follow(f *flight, key tokenKey, v *usersig.Verifier, token string, req *usersig.Request) (*usersig.Claims, *failure) {
	runHook(&testHookFollow)
	f.done.Wait()
	switch {
	case !f.finished:
		return c.verifyAndStore(key, v, token, req)
	case f.fail == nil:
		if err := v.Check(*f.claims, *req); err != nil {
			return nil, failureFromError(err)
		}
		return f.claims, nil
	case f.sdkAppID == req.SDKAppID && f.userID == req.UserID:
		return nil, f.fail
	default:
		return c.verifyAndStore(key, v, token, req)
	}
}

// lookup returns the stored result for key, checked against req, which
// kind of entry held it, and whether there was one.
func (c *verifyCache) lookup(key tokenKey, v *usersig.Verifier, req *usersig.Request) (*usersig.Claims, *failure, cacheOutcome, bool) {
	if c.claims != nil {
		if claims, ok := c.claims.get(key); ok {
			fail := c.checkStored(key, v, claims, req)
			if fail != nil {
				return nil, fail, cacheHit, true
			}
			return claims, nil, cacheHit, true
		}
	}

	if c.rejects != nil {
		if r, ok := c.rejects.get(key); ok {
			if req.Now.Sub(r.storedAt) > c.rejectTTL {
				c.rejects.remove(key)
				return nil, nil, cacheMiss, false
			}
			return nil, r.check(req), cacheRejectHit, true
		}
	}
	return nil, nil, cacheMiss, false
}

// checkStored checks the stored claims of a genuine token against req, as
// Verify would, and drops the entry once the token has expired, because
// it can never verify again.
func (c *verifyCache) checkStored(key tokenKey, v *usersig.Verifier, claims *usersig.Claims, req *usersig.Request) *failure {
	err := v.Check(*claims, *req)
	if err == nil {
		return nil
	}

	// A request that claims another SDKAppID or UserID gets the mismatch,
	// which Check reports before the expiry, so the expiry is checked
	// again with the identity of the token itself.
	expired := errors.Is(err, usersig.ErrExpired)
	if !expired {
		own := usersig.Request{SDKAppID: claims.SDKAppID, UserID: claims.UserID, Now: req.Now, Mode: usersig.ModeAny}
		expired = errors.Is(v.Check(*claims, own), usersig.ErrExpired)
	}
	if expired {
		c.claims.remove(key)
	}
	return failureFromError(err)
}

// check returns the failure that verifying the token again for req would
// give. A malformed token fails before anything is compared. For a bad
// signature, Verify first compares the SDKAppID and then the UserID with
// those in the token, which are the ones stored.
func (r *rejection) check(req *usersig.Request) *failure {
	if r.fail.result != usersig.ErrInvalidSignature.Result() {
		return r.fail
	}
	if req.SDKAppID != r.sdkAppID {
		return failSDKAppIDMismatch
	}
	if req.UserID != r.userID {
		return failUserIDMismatch
	}
	return r.fail
}

// verifyAndStore verifies token and stores the result under key when it
// can be reused.
func (c *verifyCache) verifyAndStore(key tokenKey, v *usersig.Verifier, token string, req *usersig.Request) (*usersig.Claims, *failure) {
	claims, err := verifyToken(v, token, req)
	if err == nil {
		if c.claims == nil {
			return &claims, nil
		}
		// Verify returns req.UserID, which may be a substring of a large
		// request string, so the cache keeps a copy rather than pin the
		// request. UserBuf is already a new slice.
		claims.UserID = strings.Clone(claims.UserID)
		return c.claims.add(key, claims), nil
	}

	fail := failureFromError(err)
	if c.rejects != nil && (errors.Is(err, usersig.ErrMalformed) || errors.Is(err, usersig.ErrInvalidSignature)) {
		c.rejects.add(key, rejection{
			fail:     fail,
			sdkAppID: req.SDKAppID,
			userID:   strings.Clone(req.UserID),
			storedAt: req.Now,
		})
	}
	return nil, fail
}

// verifyOnly verifies token without storing the result.
func (c *verifyCache) verifyOnly(v *usersig.Verifier, token string, req *usersig.Request) (*usersig.Claims, *failure) {
	claims, err := verifyToken(v, token, req)
	if err != nil {
		return nil, failureFromError(err)
	}
	return &claims, nil
}

// verifyToken verifies token, counts the verification and times it.
func verifyToken(v *usersig.Verifier, token string, req *usersig.Request) (usersig.Claims, error) {
	runHook(&testHookVerify)
	verifyCalls.Add(1)
	start := time.Now()
	claims, err := v.Verify(token, *req)
	metricVerifyDuration.Observe(time.Since(start).Seconds())
	return claims, err
}

// purge empties the cache. Requests still running may add entries again,
// which are dropped with the cache.
func (c *verifyCache) purge() {
	if c.claims != nil {
		c.claims.purge()
	}
	if c.rejects != nil {
		c.rejects.purge()
	}
}

// Shard counts of a shardedCache. The count is a power of two so that the
// top bits of a key pick the shard.
const (
	maxShards    = 64 // two lookups of different tokens share a shard once in 64
	minShardSize = 64 // smaller caches get fewer shards
	minSlots     = 8  // the slots of a shard's first table
)

// shardedCache is a fixed-size cache of values by tokenKey, split into
// shards by key, each with its own lock. It is safe for concurrent use.
//
// A lookup takes no lock. Each shard keeps its entries in a hash table of
// atomic pointers with linear probing (slotTable), which only writers
// change, under the shard's lock. A lookup loads the table and the
// pointers along the probe sequence of its key, and compares the key of
// each entry it finds. Entries are never changed after they are published,
// except for their referenced flag, so what a lookup finds is always a
// genuine entry for its key, at worst one that a writer has just evicted,
// whose value is still right. A lookup racing with a writer may miss an
// entry that is being added, which costs one more verification.
//
// Each shard evicts with the CLOCK algorithm, an approximation of least
// recently used. A lookup only sets a flag on the entry it finds. Eviction
// walks the entries in a ring, clears the flags it passes and evicts the
// first entry whose flag was clear. An entry stored and never looked up
// again is evicted before any entry that was looked up since the hand last
// passed it.
type shardedCache[V any] struct {
	shards []cacheShard[V]
	shift  uint // 64 - log2(len(shards)): key.hi >> shift is the shard index

	// tombstone marks a table slot whose entry was removed, so that the
	// probe sequences that pass it go on. It is never a real entry.
	tombstone *cacheEntry[V]
}

// cacheShard is one shard of a shardedCache. The fields after mu are
// guarded by it; table is also read without it.
type cacheShard[V any] struct {
	table atomic.Pointer[slotTable[V]]

	mu       sync.Mutex
	used     int              // slots of table that are not nil: entries and tombstones
	ring     []*cacheEntry[V] // in eviction order, nil where an entry was removed
	free     []int            // indexes of the nil slots of ring
	hand     int              // the slot of ring that eviction looks at next
	size     int              // the maximum number of entries
	slots    int              // the number of slots of table, a power of two
	maxSlots int              // the maximum number of slots of table, at least twice size

	// The padding keeps the locks of adjacent shards on separate cache
	// lines, so that a writer on one shard does not slow down lookups on
	// the next.
	_ [64]byte
}

// slotTable is the hash table of a shard: each slot is nil, the cache's
// tombstone or an entry. An entry's probe sequence starts at slot
// key.lo & mask and goes on to the next slot until it meets nil. The
// shard keeps at most 3/4 of the slots in use, and at most half hold
// entries, so probe sequences stay short.
//
// A table starts with minSlots slots and doubles as entries are added,
// up to maxSlots. The garbage collector reads every slot on each cycle,
// so a table sized for a full cache from the start would cost the
// process that time even while the cache is nearly empty.
type slotTable[V any] struct {
	slots []atomic.Pointer[cacheEntry[V]]
	mask  uint64
}

// cacheEntry is a stored value. Every field but referenced is written
// before the entry is published and never changed after, so a reader may
// keep and read an entry without a lock.
type cacheEntry[V any] struct {
	hi, lo     uint64
	slot       int         // index in the shard's ring
	referenced atomic.Bool // looked up since eviction last passed it
	value      V
}

// newShardedCache returns a cache that holds up to size entries, size > 0.
// The shards share size between them as evenly as possible.
func newShardedCache[V any](size int) (*shardedCache[V], error) {
	if size <= 0 {
		return nil, fmt.Errorf("cache size %d is not positive", size)
	}
	n, bits := 1, uint(0)
	for n < maxShards && size/(2*n) >= minShardSize {
		n *= 2
		bits++
	}

	s := &shardedCache[V]{shards: make([]cacheShard[V], n), shift: 64 - bits, tombstone: new(cacheEntry[V])}
	for i := range s.shards {
		sh := &s.shards[i]
		sh.size = size / n
		if i < size%n {
			sh.size++
		}
		sh.maxSlots = minSlots
		for sh.maxSlots < 2*sh.size {
			sh.maxSlots *= 2
		}
		sh.slots = minSlots
		sh.table.Store(newSlotTable[V](sh.slots))
	}
	return s, nil
}

func newSlotTable[V any](slots int) *slotTable[V] {
	return &slotTable[V]{slots: make([]atomic.Pointer[cacheEntry[V]], slots), mask: uint64(slots - 1)}
}

// shard returns the shard of key. A shift of 64 gives 0, the only shard.
func (s *shardedCache[V]) shard(key tokenKey) *cacheShard[V] {
	return &s.shards[key.hi>>s.shift]
}

// get returns the value stored under key and marks it as used. The value
// must not be changed.
func (s *shardedCache[V]) get(key tokenKey) (*V, bool) {
	t := s.shard(key).table.Load()
	i := key.lo & t.mask
	for range t.slots {
		e := t.slots[i].Load()
		if e == nil {
			return nil, false
		}
		if e.hi == key.hi && e.lo == key.lo && e != s.tombstone {
			// Storing only when the flag is clear keeps the cache line
			// of a popular entry shared between cores.
			if !e.referenced.Load() {
				e.referenced.Store(true)
			}
			return &e.value, true
		}
		i = (i + 1) & t.mask
	}
	return nil, false
}

// find returns the table slot that holds the entry of key, or -1, and the
// first slot on key's probe sequence that a new entry can take, nil or a
// tombstone. It must be called with mu locked.
func (sh *cacheShard[V]) find(t *slotTable[V], key tokenKey, tombstone *cacheEntry[V]) (found, vacant int) {
	found, vacant = -1, -1
	i := key.lo & t.mask
	for range t.slots {
		e := t.slots[i].Load()
		switch {
		case e == nil:
			if vacant < 0 {
				vacant = int(i)
			}
			return found, vacant
		case e == tombstone:
			if vacant < 0 {
				vacant = int(i)
			}
		case e.hi == key.hi && e.lo == key.lo:
			return int(i), vacant
		}
		i = (i + 1) & t.mask
	}
	return found, vacant
}

// add stores value under key, evicting an entry of the shard when the
// shard is full, and returns the stored value, which must not be changed.
func (s *shardedCache[V]) add(key tokenKey, value V) *V {
	e := &cacheEntry[V]{hi: key.hi, lo: key.lo, value: value}
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	t := sh.table.Load()
	if found, _ := sh.find(t, key, s.tombstone); found >= 0 {
		old := t.slots[found].Load()
		e.slot = old.slot
		sh.ring[e.slot] = e
		t.slots[found].Store(e)
		return &e.value
	}

	e.slot = sh.freeSlot(s.tombstone)
	switch {
	case sh.entries() > sh.slots/2 && sh.slots < sh.maxSlots:
		sh.slots *= 2
		sh.rebuild(s.tombstone)
		t = sh.table.Load()
	case sh.used >= sh.slots/4*3:
		sh.rebuild(s.tombstone)
		t = sh.table.Load()
	}
	sh.ring[e.slot] = e
	// The eviction above may have left a tombstone on the probe sequence,
	// so the vacant slot is looked up after it.
	_, vacant := sh.find(t, key, s.tombstone)
	if t.slots[vacant].Load() == nil {
		sh.used++
	}
	t.slots[vacant].Store(e)
	return &e.value
}

// entries returns the number of entries of the shard: the slots of ring
// that are not in free. While add fills a slot that freeSlot returned, it
// counts that slot too. It must be called with mu locked.
func (sh *cacheShard[V]) entries() int {
	return len(sh.ring) - len(sh.free)
}

// rebuild publishes a new table of sh.slots slots that holds the entries
// of the ring and no tombstone. Lookups that loaded the old table finish
// on it. It must be called with mu locked.
func (sh *cacheShard[V]) rebuild(tombstone *cacheEntry[V]) {
	t := newSlotTable[V](sh.slots)
	sh.used = 0
	for _, e := range sh.ring {
		if e == nil {
			continue
		}
		_, vacant := sh.find(t, tokenKey{hi: e.hi, lo: e.lo}, tombstone)
		t.slots[vacant].Store(e)
		sh.used++
	}
	sh.table.Store(t)
}

// unlink replaces the table slot of e with a tombstone. It must be called
// with mu locked.
func (sh *cacheShard[V]) unlink(e *cacheEntry[V], tombstone *cacheEntry[V]) {
	t := sh.table.Load()
	if found, _ := sh.find(t, tokenKey{hi: e.hi, lo: e.lo}, tombstone); found >= 0 {
		t.slots[found].Store(tombstone)
	}
}

// freeSlot returns a nil slot of ring for a new entry: a slot left by a
// removed entry, a new slot while the shard is not full, or the slot of
// an entry that it evicts. It must be called with mu locked.
func (sh *cacheShard[V]) freeSlot(tombstone *cacheEntry[V]) int {
	if n := len(sh.free); n > 0 {
		slot := sh.free[n-1]
		sh.free = sh.free[:n-1]
		return slot
	}
	if len(sh.ring) < sh.size {
		sh.ring = append(sh.ring, nil)
		return len(sh.ring) - 1
	}

	// The ring is full and has no nil slot, because free is empty. The
	// hand clears the flag of each entry it skips. Lookups take no lock,
	// so they can set flags again behind the hand while it turns, and
	// after two turns the hand evicts the entry it points to whatever
	// its flag, which bounds the time spent holding mu.
	for step := 0; ; step++ {
		runHook(&testHookEvictStep)
		e := sh.ring[sh.hand]
		slot := sh.hand
		sh.hand = (sh.hand + 1) % len(sh.ring)
		if e.referenced.Load() && step < 2*len(sh.ring) {
			e.referenced.Store(false)
			continue
		}
		sh.unlink(e, tombstone)
		sh.ring[slot] = nil
		return slot
	}
}

// remove drops the entry of key.
func (s *shardedCache[V]) remove(key tokenKey) {
	sh := s.shard(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()

	t := sh.table.Load()
	found, _ := sh.find(t, key, s.tombstone)
	if found < 0 {
		return
	}
	e := t.slots[found].Load()
	t.slots[found].Store(s.tombstone)
	sh.ring[e.slot] = nil
	sh.free = append(sh.free, e.slot)
}

// purge drops every entry.
func (s *shardedCache[V]) purge() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		sh.slots = minSlots
		sh.table.Store(newSlotTable[V](sh.slots))
		sh.used = 0
		clear(sh.ring)
		sh.ring = sh.ring[:0]
		sh.free = sh.free[:0]
		sh.hand = 0
		sh.mu.Unlock()
	}
}

// len returns the number of entries in all shards.
func (s *shardedCache[V]) len() int {
	total := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		total += sh.entries()
		sh.mu.Unlock()
	}
	return total
}
