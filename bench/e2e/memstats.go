package main

import (
	"encoding/json"
	"errors"
	"io"
)

// memStats holds the fields of runtime.MemStats that runMemstats reads.
type memStats struct {
	NumGC      uint32
	TotalAlloc uint64
	Mallocs    uint64
}

// memFields are the fields that runMemstats prints.
var memFields = []string{"gc_cycles", "alloc_bytes", "allocs"}

// runMemstats prints a Caddy process's garbage collection count and the
// bytes and objects it has allocated, read from the expvar page
// /debug/vars of its admin endpoint at url, as "gc_cycles=N
// alloc_bytes=N allocs=N". With -since, it prints the growth since the
// counts in the file that an earlier call wrote.
func runMemstats(args []string) error {
	return printCounts("memstats", "URL of the expvar page /debug/vars", args, readMemStats, memFields)
}

// readMemStats reads the memstats object of an expvar page, as memFields
// names its counts.
func readMemStats(r io.Reader) (map[string]float64, error) {
	var page struct {
		MemStats *memStats `json:"memstats"`
	}
	if err := json.NewDecoder(r).Decode(&page); err != nil {
		return nil, err
	}
	if page.MemStats == nil {
		return nil, errors.New("no memstats object")
	}
	m := page.MemStats
	return map[string]float64{
		"gc_cycles":   float64(m.NumGC),
		"alloc_bytes": float64(m.TotalAlloc),
		"allocs":      float64(m.Mallocs),
	}, nil
}
