//go:build !race

package usersig

// raceEnabled reports whether the tests run with the race detector.
const raceEnabled = false
