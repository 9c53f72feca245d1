//go:build !unix

package bench

import "testing"

// cpuClock reports nothing where getrusage is not available.
type cpuClock struct{}

func startCPUClock() cpuClock { return cpuClock{} }

func (cpuClock) report(*testing.B) {}
