package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
)

// memFields are the fields that runMemstats prints, with the runtime
// memory statistics they come from.
var memFields = []struct {
	name string
	read func(*memStats) uint64
}{
	{"gc_cycles", func(m *memStats) uint64 { return uint64(m.NumGC) }},
	{"alloc_bytes", func(m *memStats) uint64 { return m.TotalAlloc }},
	{"allocs", func(m *memStats) uint64 { return m.Mallocs }},
}

// memStats holds the fields of runtime.MemStats that runMemstats reads.
type memStats struct {
	NumGC      uint32
	TotalAlloc uint64
	Mallocs    uint64
}

// runMemstats prints a Caddy process's garbage collection count and the
// bytes and objects it has allocated, read from the expvar page
// /debug/vars of its admin endpoint at url, as "gc_cycles=N
// alloc_bytes=N allocs=N". With -since, it prints the growth since the
// counts in the file that an earlier call wrote.
func runMemstats(args []string) error {
	flags := flag.NewFlagSet("memstats", flag.ContinueOnError)
	url := flags.String("url", "", "URL of the expvar page /debug/vars")
	since := flags.String("since", "", "file with the output of an earlier call, to print the growth since")
	if err := flags.Parse(args); err != nil {
		return err
	}
	if *url == "" {
		return errors.New("-url is required")
	}

	resp, err := http.Get(*url)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: status %d", *url, resp.StatusCode)
	}
	var page struct {
		MemStats *memStats `json:"memstats"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&page); err != nil {
		return fmt.Errorf("reading %s: %w", *url, err)
	}
	if page.MemStats == nil {
		return fmt.Errorf("%s has no memstats", *url)
	}

	var earlier map[string]float64
	if *since != "" {
		text, err := os.ReadFile(*since)
		if err != nil {
			return err
		}
		if earlier, err = parseFields(string(text)); err != nil {
			return fmt.Errorf("%s: %w", *since, err)
		}
	}
	for i, f := range memFields {
		if i > 0 {
			fmt.Print(" ")
		}
		fmt.Printf("%s=%.0f", f.name, float64(f.read(page.MemStats))-earlier[f.name])
	}
	fmt.Println()
	return nil
}
