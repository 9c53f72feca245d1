package caddymodule

import (
	"math/bits"
	"sync/atomic"
)

// Sizes of a doorkeeper, per entry of the caches it guards.
const (
	// doorkeeperBitsPerEntry is the number of filter bits per cache
	// entry. With two bits set per token and a reset after as many
	// marks as entries, at most about 12 % of the bits are set. So a
	// new token passes as seen before at most about once in 70.
	doorkeeperBitsPerEntry = 16

	// minDoorkeeperBits keeps tiny caches from a filter that fills at
	// once.
	minDoorkeeperBits = 1 << 12
)

// doorkeeper remembers which tokens were seen recently, so that the cache
// stores the result of a token only from its second request. It is a
// Bloom filter with two bits per token, one taken from each half of the
// tokenKey, and is cleared after as many new tokens as the caches hold.
//
// A client sends the same UserSig on request after request, so a genuine
// token costs one more verification, once. Tokens sent only once are then
// never stored, such as random ones from a scanner or tokens that a
// client issues for each request. They push no other client's token out
// of the cache, and cost no entry for the garbage collector to scan.
//
// The filter is an array of integers without pointers, which the garbage
// collector does not scan. It is safe for concurrent use. Two requests
// racing to mark one token may both find it new, and a mark may be lost
// to a concurrent reset; both cost at most one more verification.
type doorkeeper struct {
	words []atomic.Uint64
	shift uint   // 64 - log2(number of bits): lo >> shift is a bit index
	mask  uint64 // number of bits - 1: hi & mask is a bit index
	marks atomic.Int64
	limit int64 // marks between two resets
}

// newDoorkeeper returns a doorkeeper for caches that hold up to entries
// entries in all, entries > 0.
func newDoorkeeper(entries int) *doorkeeper {
	n := max(entries*doorkeeperBitsPerEntry, minDoorkeeperBits)
	log := bits.Len(uint(n - 1)) // the number of bits is 1<<log, at least n
	return &doorkeeper{
		words: make([]atomic.Uint64, (1<<log)/64),
		shift: uint(64 - log),
		mask:  1<<log - 1,
		limit: int64(entries),
	}
}

// seen marks key and reports whether it was marked before, since the last
// reset. The two bits of a key are the top of lo and the bottom of hi,
// the ends of its two independent halves that shardedCache does not use
// to pick a shard and a slot.
func (d *doorkeeper) seen(key tokenKey) bool {
	if d.marked(key) {
		return true
	}
	a, b := d.bits(key)
	d.words[a/64].Or(1 << (a % 64))
	d.words[b/64].Or(1 << (b % 64))
	if n := d.marks.Add(1); n >= d.limit && d.marks.CompareAndSwap(n, 0) {
		d.reset()
	}
	return false
}

// bits returns the indexes of the two bits of key.
func (d *doorkeeper) bits(key tokenKey) (a, b uint64) {
	return key.lo >> d.shift, key.hi & d.mask
}

// marked reports whether both bits of key are set.
func (d *doorkeeper) marked(key tokenKey) bool {
	a, b := d.bits(key)
	return d.words[a/64].Load()&(1<<(a%64)) != 0 && d.words[b/64].Load()&(1<<(b%64)) != 0
}

// reset clears every mark.
func (d *doorkeeper) reset() {
	for i := range d.words {
		d.words[i].Store(0)
	}
}
