package usersig

import (
	"bytes"
	"hash/adler32"
	"math/rand/v2"
	"testing"
)

// TestAdler32MatchesStandardLibrary compares adler32Checksum with
// hash/adler32 on random bytes and on all-0xFF bytes (the largest sums),
// for every length up to three reduction blocks.
func TestAdler32MatchesStandardLibrary(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	random := make([]byte, 3*adler32Block+9)
	for i := range random {
		random[i] = byte(rng.Uint32())
	}
	ones := bytes.Repeat([]byte{0xFF}, len(random))

	for n := 0; n <= len(random); n++ {
		if got, want := adler32Checksum(random[:n]), adler32.Checksum(random[:n]); got != want {
			t.Fatalf("random %d bytes: got %#08x, want %#08x", n, got, want)
		}
		if got, want := adler32Checksum(ones[:n]), adler32.Checksum(ones[:n]); got != want {
			t.Fatalf("%d bytes of 0xFF: got %#08x, want %#08x", n, got, want)
		}
	}
}
