package caddymodule

import (
	"math/bits"
	"sync/atomic"
)

// Sizes of a doorkeeper.
const (
	// doorkeeperBitsPerEntry is the least number of filter bits per
	// entry of the caches; the total is rounded up to a power of two.
	// With two bits set per token and at most as many marks as entries,
	// at most about 12 % of the bits are set. So a new token passes as
	// seen before at most about once in 70.
	doorkeeperBitsPerEntry = 16

	// minDoorkeeperBits keeps tiny caches from a filter that fills at
	// once.
	minDoorkeeperBits = 1 << 12

	// maxDoorkeeperEntries bounds the filter at 8 MB, which it reaches
	// for caches of 4,194,304 entries in all. Larger caches get this
	// filter: a token must then come back within that many new tokens
	// to be stored. The bound also keeps a reset, which clears the
	// whole filter within one request, short.
	maxDoorkeeperEntries = 1 << 22
)

// doorkeeper remembers which tokens were seen recently, so that the cache
// stores the result of a token only from its second request. It is a
// Bloom filter with two bits per token, one taken from each half of the
// tokenKey, and is cleared after as many new tokens as the caches hold.
//
// A client sends the same UserSig on request after request, so a genuine
// token costs one more verification each time it enters the cache.
// Tokens sent only once are then stored only when the filter takes them
// for ones seen before (see doorkeeperBitsPerEntry), such as random ones
// from a scanner or tokens that a client issues for each request. They
// push no other client's token out of the cache, and cost no entry for
// the garbage collector to scan.
//
// The filter is an array of integers without pointers, which the garbage
// collector does not scan. It is safe for concurrent use. Two requests
// racing to mark one token may both find it new. A mark may also be lost
// to a concurrent reset. Either costs at most one more verification.
type doorkeeper struct {
	words []atomic.Uint64
	shift uint         // 64 - log2(number of bits): lo >> shift is a bit index
	mask  uint64       // number of bits - 1: hi & mask is a bit index
	marks atomic.Int64 // marks since the last reset, the reset's own included
	limit int64        // the maximum number of marks the filter keeps
}

// newDoorkeeper returns a doorkeeper for caches that hold up to entries
// entries in all, entries > 0.
func newDoorkeeper(entries int) *doorkeeper {
	entries = min(entries, maxDoorkeeperEntries)
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
	// A mark past the limit clears the filter first, so that the
	// filter always keeps the latest marks, this one included.
	if n := d.marks.Add(1); n > d.limit && d.marks.CompareAndSwap(n, 1) {
		d.reset()
	}
	a, b := d.bits(key)
	d.words[a/64].Or(1 << (a % 64))
	d.words[b/64].Or(1 << (b % 64))
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
