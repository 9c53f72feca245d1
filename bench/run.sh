#!/bin/sh
# Runs every benchmark of this module in rounds of one pass each (-count 1)
# and appends them to one results file. Then it summarises the file with
# benchstat and prints the ratios that BENCHMARKS.md reports. Each ratio is
# taken within a round, for wall time (ns/op) and for process CPU time
# (cpu-ns/op).
#
# Environment: ROUNDS (default 10), OUT (default results/rounds.txt,
# replaced), BENCHSTAT (default benchstat from PATH or ~/go/bin).
set -eu
cd "$(dirname "$0")"

rounds=${ROUNDS:-10}
out=${OUT:-results/rounds.txt}
benchstat=${BENCHSTAT:-$(command -v benchstat || echo "$HOME/go/bin/benchstat")}

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
go test -c -o "$tmp/bench.test" .

mkdir -p "$(dirname "$out")"
: >"$out"
i=1
while [ "$i" -le "$rounds" ]; do
	"$tmp/bench.test" -test.run '^$' -test.bench . -test.benchmem -test.count 1 >>"$out"
	i=$((i + 1))
done

"$benchstat" "$out"
go run ./cmd/benchratio "$out"
go run ./cmd/benchratio -metric cpu-ns/op "$out"
