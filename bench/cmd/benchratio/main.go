// Command benchratio reads the output of several rounds of the bench
// module's benchmarks and prints, for each pair of benchmarks that the
// comparison needs, the ratio of their times in each round and the median
// of those ratios.
//
// A round is one run of every benchmark, such as one `go test -bench .
// -count 1`. The n-th result of a benchmark belongs to round n, so both
// sides of a ratio come from the same pass over the benchmarks. Such ratios
// stay steadier than ratios of medians when the machine's load changes
// during the run.
//
// Usage:
//
//	benchratio [-metric UNIT] FILE...
//
// -metric selects the unit compared, such as ns/op (the default) or
// cpu-ns/op.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
)

// pair is a ratio to report: the time of numerator divided by the time of
// denominator, both benchmark names without the Benchmark prefix and the
// GOMAXPROCS suffix.
type pair struct {
	label       string
	numerator   string
	denominator string
}

var tokens = []string{"spec-example", "ours-level6", "official-level0"}

func pairs() []pair {
	var out []pair
	for _, t := range tokens {
		out = append(out, pair{"verify official/ours " + t, "Verify/official/" + t, "Verify/ours/" + t})
	}
	out = append(out,
		pair{"issue official/ours", "Issue/official", "Issue/ours"},
		pair{"privatemapkey issue official/ours", "PrivateMapKey/issue/official", "PrivateMapKey/issue/ours"},
	)
	for _, t := range tokens[1:] {
		out = append(out, pair{"privatemapkey verify official/ours " + t, "PrivateMapKey/verify/official/" + t, "PrivateMapKey/verify/ours/" + t})
	}
	for _, t := range tokens {
		out = append(out, pair{"verify ours/floor " + t, "Verify/ours/" + t, "Floor/hmac+inflate/" + t})
	}
	return out
}

func main() {
	metric := flag.String("metric", "ns/op", "unit of the values to compare, such as ns/op or cpu-ns/op")
	flag.Parse()
	if flag.NArg() == 0 {
		fmt.Fprintln(os.Stderr, "usage: benchratio [-metric UNIT] FILE...")
		os.Exit(2)
	}
	results := map[string][]float64{}
	for _, path := range flag.Args() {
		if err := readResults(path, *metric, results); err != nil {
			fmt.Fprintf(os.Stderr, "benchratio: %v\n", err)
			os.Exit(1)
		}
	}

	fmt.Printf("%-52s %6s %8s %8s %8s\n", "ratio of "+*metric, "rounds", "median", "min", "max")
	for _, p := range pairs() {
		num, den := results[p.numerator], results[p.denominator]
		rounds := min(len(num), len(den))
		if rounds == 0 {
			fmt.Printf("%-52s %6d %8s\n", p.label, 0, "missing")
			continue
		}
		ratios := make([]float64, rounds)
		for i := range rounds {
			ratios[i] = num[i] / den[i]
		}
		slices.Sort(ratios)
		fmt.Printf("%-52s %6d %8.2f %8.2f %8.2f\n", p.label, rounds, median(ratios), ratios[0], ratios[rounds-1])
	}
}

// readResults appends the value in unit of every benchmark line in path to
// results, keyed by the name without "Benchmark" and "-GOMAXPROCS". A
// line is "Name Iterations Value Unit [Value Unit]...".
func readResults(path, unit string, results map[string][]float64) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()

	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 4 || !strings.HasPrefix(fields[0], "Benchmark") {
			continue
		}
		name := strings.TrimPrefix(fields[0], "Benchmark")
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		for i := 2; i+1 < len(fields); i += 2 {
			if fields[i+1] != unit {
				continue
			}
			v, err := strconv.ParseFloat(fields[i], 64)
			if err != nil {
				return fmt.Errorf("%s: invalid %s value %q for %s", path, unit, fields[i], name)
			}
			results[name] = append(results[name], v)
		}
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	return nil
}

// median returns the median of sorted, which must not be empty.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}
