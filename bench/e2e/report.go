package main

import (
	"bufio"
	"errors"
	"fmt"
	"maps"
	"os"
	"slices"
	"strconv"
	"strings"
)

// run is one wrk run, as e2e.sh writes it: one line of key=value fields.
type run struct {
	scenario string // "hit" or "fresh"
	server   string // "plain" or "gateway"
	round    int
	fields   map[string]float64
	runs     int // the number of runs merged into this one by mergeRounds
}

// rps returns the requests per second of the run.
func (r run) rps() float64 {
	return r.fields["requests"] / (r.fields["duration_us"] / 1e6)
}

// cpuPerRequest returns the server's CPU time per request in
// microseconds, or 0 when the run has no server_cpu_us field (results
// from before e2e.sh read it).
func (r run) cpuPerRequest() float64 {
	if r.fields["requests"] == 0 {
		return 0
	}
	return r.fields["server_cpu_us"] / r.fields["requests"]
}

// ratioRange formats the median and range of sorted per-round ratios as
// percentages, or "" when there are none.
func ratioRange(sorted []float64) string {
	if len(sorted) == 0 {
		return ""
	}
	return fmt.Sprintf("%.1f %% (%.1f-%.1f)", 100*median(sorted), 100*sorted[0], 100*sorted[len(sorted)-1])
}

// runReport prints, for each scenario, the medians over the rounds of the
// requests per second, latencies and CPU time per request of each server.
// It also prints the medians of two ratios taken within each round: the
// gateway's requests per second over plain Caddy's, and plain Caddy's CPU
// time per request over the gateway's. The second is the throughput ratio
// of two servers that each have a core to themselves. Counts are summed over the
// rounds. Wraps of the token list are reported for the gateway in the
// fresh scenario, where a wrap means that tokens were sent again, which
// the gateway no longer remembers unless it shows a cache hit.
func runReport(args []string) error {
	if len(args) != 1 {
		return errors.New("expected one argument, the results file")
	}
	runs, err := readRuns(args[0])
	if err != nil {
		return err
	}
	runs = mergeRounds(runs)

	fmt.Printf("| scenario | server | rounds | req/s | p50 | p99 | gateway/plain req/s (min-max) | server CPU µs/req | plain/gateway CPU per request (min-max) | allocated B/req | GC cycles per 1,000 req | cache hits | cache misses | non-2xx | socket errors | fresh list wraps |\n")
	fmt.Printf("|---|---|---:|---:|---:|---:|---|---:|---|---:|---:|---:|---:|---:|---:|---:|\n")
	for _, scenario := range []string{"hit", "fresh"} {
		byServer := map[string]map[int]run{"plain": {}, "gateway": {}}
		for _, r := range runs {
			if r.scenario == scenario && byServer[r.server] != nil {
				byServer[r.server][r.round] = r
			}
		}

		var ratios, cpuRatios []float64
		for round, g := range byServer["gateway"] {
			if p, ok := byServer["plain"][round]; ok {
				ratios = append(ratios, g.rps()/p.rps())
				if g.cpuPerRequest() > 0 && p.cpuPerRequest() > 0 {
					cpuRatios = append(cpuRatios, p.cpuPerRequest()/g.cpuPerRequest())
				}
			}
		}
		slices.Sort(ratios)
		slices.Sort(cpuRatios)

		for _, server := range []string{"plain", "gateway"} {
			rounds := byServer[server]
			if len(rounds) == 0 {
				continue
			}
			ratio, cpuRatio := "", ""
			if server == "gateway" {
				ratio, cpuRatio = ratioRange(ratios), ratioRange(cpuRatios)
			}
			fmt.Printf("| %s | %s | %d | %.0f | %s | %s | %s | %.2f | %s | %s | %s | %s | %s | %.0f | %.0f | %s |\n",
				scenario, server, len(rounds),
				medianOf(rounds, run.rps),
				formatMicros(medianOf(rounds, field("p50_us"))),
				formatMicros(medianOf(rounds, field("p99_us"))),
				ratio,
				medianOf(rounds, run.cpuPerRequest),
				cpuRatio,
				perRequest(rounds, "alloc_bytes", 1, "%.0f"),
				perRequest(rounds, "gc_cycles", 1000, "%.2f"),
				sumIf(server == "gateway", rounds, "cache_hit"),
				sumIf(server == "gateway", rounds, "cache_miss"),
				sum(rounds, "non2xx"), sum(rounds, "socket_errors"),
				sumIf(scenario == "fresh" && server == "gateway", rounds, "wraps"))
		}
	}
	return nil
}

// perRequest formats the median over the rounds of a field divided by the
// requests and multiplied by scale, or "" when the runs lack the field
// (results from before e2e.sh read it).
func perRequest(rounds map[int]run, name string, scale float64, format string) string {
	var values []float64
	for _, r := range rounds {
		if v, ok := r.fields[name]; ok && r.fields["requests"] > 0 {
			values = append(values, v*scale/r.fields["requests"])
		}
	}
	if len(values) == 0 {
		return ""
	}
	slices.Sort(values)
	return fmt.Sprintf(format, median(values))
}

// readRuns parses the results file.
func readRuns(path string) ([]run, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()

	var runs []run
	sc := bufio.NewScanner(f)
	for line := 1; sc.Scan(); line++ {
		text := strings.TrimSpace(sc.Text())
		if text == "" || strings.HasPrefix(text, "#") {
			continue
		}
		r := run{fields: make(map[string]float64)}
		for _, field := range strings.Fields(text) {
			name, value, ok := strings.Cut(field, "=")
			if !ok {
				return nil, fmt.Errorf("%s:%d: field %q is not name=value", path, line, field)
			}
			switch name {
			case "scenario":
				r.scenario = value
			case "server":
				r.server = value
			case "round":
				r.round, err = strconv.Atoi(value)
			default:
				r.fields[name], err = strconv.ParseFloat(value, 64)
			}
			if err != nil {
				return nil, fmt.Errorf("%s:%d: invalid value in %q", path, line, field)
			}
		}
		if r.scenario == "" || r.server == "" || r.fields["duration_us"] <= 0 {
			return nil, fmt.Errorf("%s:%d: scenario, server or duration_us missing", path, line)
		}
		runs = append(runs, r)
	}
	return runs, sc.Err()
}

// mergeRounds merges the runs of each server in each scenario and round
// into one, which e2e.sh measures twice in the order A B B A. Counts and
// durations are summed, so the merged requests per second are those of the
// two runs together; latencies are averaged.
func mergeRounds(runs []run) []run {
	type key struct {
		scenario, server string
		round            int
	}
	index := make(map[key]int)
	var merged []run
	for _, r := range runs {
		k := key{r.scenario, r.server, r.round}
		i, ok := index[k]
		if !ok {
			index[k] = len(merged)
			merged = append(merged, run{scenario: r.scenario, server: r.server, round: r.round, fields: maps.Clone(r.fields), runs: 1})
			continue
		}
		m := &merged[i]
		for name, v := range r.fields {
			switch name {
			case "p50_us", "p99_us":
				m.fields[name] = (m.fields[name]*float64(m.runs) + v) / float64(m.runs+1)
			default:
				m.fields[name] += v
			}
		}
		m.runs++
	}
	return merged
}

// parseFields parses "name=value name=value ..." with numeric values.
func parseFields(text string) (map[string]float64, error) {
	fields := make(map[string]float64)
	for _, field := range strings.Fields(text) {
		name, value, ok := strings.Cut(field, "=")
		if !ok {
			return nil, fmt.Errorf("field %q is not name=value", field)
		}
		v, err := strconv.ParseFloat(value, 64)
		if err != nil {
			return nil, fmt.Errorf("invalid value in %q", field)
		}
		fields[name] = v
	}
	return fields, nil
}

func field(name string) func(run) float64 {
	return func(r run) float64 { return r.fields[name] }
}

func medianOf(rounds map[int]run, value func(run) float64) float64 {
	values := make([]float64, 0, len(rounds))
	for _, r := range rounds {
		values = append(values, value(r))
	}
	slices.Sort(values)
	return median(values)
}

func sum(rounds map[int]run, name string) float64 {
	total := 0.0
	for _, r := range rounds {
		total += r.fields[name]
	}
	return total
}

// sumIf formats the sum of a field over the rounds, or "" when ok is
// false or no run has the field. With NULL set, for example, the second
// server has no usersig handler and its runs have no cache counts.
func sumIf(ok bool, rounds map[int]run, name string) string {
	if !ok || !hasField(rounds, name) {
		return ""
	}
	return fmt.Sprintf("%.0f", sum(rounds, name))
}

// hasField reports whether a run of rounds has the field name.
func hasField(rounds map[int]run, name string) bool {
	for _, r := range rounds {
		if _, ok := r.fields[name]; ok {
			return true
		}
	}
	return false
}

// median returns the median of sorted, or 0 when it is empty.
func median(sorted []float64) float64 {
	n := len(sorted)
	switch {
	case n == 0:
		return 0
	case n%2 == 1:
		return sorted[n/2]
	default:
		return (sorted[n/2-1] + sorted[n/2]) / 2
	}
}

// formatMicros writes a latency given in microseconds in ms.
func formatMicros(us float64) string {
	return fmt.Sprintf("%.2f ms", us/1000)
}
