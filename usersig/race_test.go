//go:build race

package usersig

// raceEnabled reports whether the tests run with the race detector, under
// which sync.Pool drops items at random, so pooled buffers are allocated
// again and allocation counts are higher.
const raceEnabled = true
