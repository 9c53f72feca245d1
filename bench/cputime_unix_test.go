//go:build unix

package bench

import (
	"syscall"
	"testing"
)

// cpuClock measures the CPU time (user and system, all threads of the
// process) that a benchmark loop uses. Unlike ns/op it does not count the
// time the process waits for a core, so ratios of it stay steady when
// other work shares the machine. Garbage collection on other threads is
// counted, since it is work that the benchmarked code causes.
type cpuClock struct {
	start int64
}

func startCPUClock() cpuClock { return cpuClock{start: processCPUTime()} }

// report adds the metric cpu-ns/op. It must run after b.Loop has
// returned false, when b.N holds the number of iterations.
func (c cpuClock) report(b *testing.B) {
	if b.N > 0 {
		b.ReportMetric(float64(processCPUTime()-c.start)/float64(b.N), "cpu-ns/op")
	}
}

func processCPUTime() int64 {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return ru.Utime.Nano() + ru.Stime.Nano()
}
