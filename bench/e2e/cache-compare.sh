#!/bin/sh
# Compares the verification cache of the working tree with the one of an
# earlier commit, on the benchmarks of caddymodule/cache_bench_test.go.
#
# It builds two test binaries from copies of the working tree: "after" as
# it is, and "before" with caddymodule/cache.go and cache_test.go taken
# from BASE. The before copy gets the benchmark file and the fixtures of
# the working tree's cache_test.go, so both run the same benchmarks on the
# same tokens. Then it runs the binaries in alternating order, one pass
# of every cache benchmark each per round, and prints benchstat's summary.
# BenchmarkCacheMemory runs three times per binary, once per round.
#
# Environment (defaults in brackets):
#   BASE [83dcc6c]     commit of the "before" cache: the single
#                      golang-lru design that this comparison started from
#   ROUNDS [10]        rounds
#   BENCHTIME [0.5s]   -test.benchtime of each benchmark
#   OUT [e2e/results]  folder of the results, relative to bench/
#   BENCHSTAT          benchstat from PATH or ~/go/bin
set -eu
cd "$(dirname "$0")/.."

base=${BASE:-83dcc6c}
rounds=${ROUNDS:-10}
benchtime=${BENCHTIME:-0.5s}
out=${OUT:-e2e/results}
benchstat=${BENCHSTAT:-$(command -v benchstat || echo "$HOME/go/bin/benchstat")}
repo=$(cd .. && pwd)

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

mkdir "$tmp/before"
(cd "$repo" && tar --exclude=.git -cf - .) | tar -x -C "$tmp/before"
(cd "$repo" && git show "$base:caddymodule/cache.go") >"$tmp/before/caddymodule/cache.go"
(cd "$repo" && git show "$base:caddymodule/cache_test.go") >"$tmp/before/caddymodule/cache_test.go"

# The fixtures: from the cacheFixture type to the first sharded-cache
# test, and from the memory constants to the end of the file.
fixtures=$tmp/before/caddymodule/zz_cache_fixtures_test.go
cat >"$fixtures" <<'EOF'
package caddymodule

import (
	"fmt"
	"runtime"
	"testing"
	"time"

	"github.com/caddy-usersig/caddy-usersig/usersig"
)

EOF
sed -n '/^\/\/ cacheFixture is a verifier/,/^func TestShardedCacheSizes/p' "$repo/caddymodule/cache_test.go" |
	sed '$d' >>"$fixtures"
sed -n '/^\/\/ memoryEntries is the number/,$p' "$repo/caddymodule/cache_test.go" >>"$fixtures"

echo "building the test binaries" >&2
(cd "$tmp/before" && go test -c -o "$tmp/before.test" ./caddymodule/)
(cd "$repo" && go test -c -o "$tmp/after.test" ./caddymodule/)

mkdir -p "$out"
for side in before after; do
	: >"$out/cache-$side.txt"
	: >"$out/cache-memory-$side.txt"
done

round=1
while [ "$round" -le "$rounds" ]; do
	if [ $((round % 2)) = 1 ]; then order="before after"; else order="after before"; fi
	for side in $order; do
		"$tmp/$side.test" -test.run '^$' -test.bench 'Cache(Hit|Miss|RejectHit)|VerifyUncached' \
			-test.benchmem -test.count 1 -test.benchtime "$benchtime" -test.cpu 2 >>"$out/cache-$side.txt"
		if [ "$round" -le 3 ]; then
			"$tmp/$side.test" -test.run '^$' -test.bench 'CacheMemory' -test.benchtime 1x \
				-test.count 1 >>"$out/cache-memory-$side.txt"
		fi
	done
	round=$((round + 1))
done

"$benchstat" "$out/cache-before.txt" "$out/cache-after.txt"
grep -h '^BenchmarkCacheMemory' "$out/cache-memory-before.txt" "$out/cache-memory-after.txt"
