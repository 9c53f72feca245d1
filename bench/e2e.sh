#!/bin/sh
# End-to-end load test: requests per second and latency of the gateway
# compared with plain Caddy serving the same respond route, both built from
# this repository and run on 127.0.0.1, with wrk as the load generator.
#
# Two scenarios:
#   hit    Every request carries one of 1,000 tokens, all cached during the
#          warm-up, so the gateway finds each one in its cache.
#   fresh  Every request carries a token that the gateway does not
#          remember, so each one costs a full verification. wrk sends a
#          list of 60,000 tokens in turn, starting over at its end. A
#          token comes back after 60,000 other tokens, long after the
#          cache (10,000 entries) and its doorkeeper (which clears its
#          marks after 11,000 new tokens) dropped it, so it is new to
#          the gateway again. The few tokens that the doorkeeper takes for ones seen
#          before are stored, and show as cache hits in the report. A
#          longer list slows wrk down: with 600,000 tokens, plain Caddy's
#          core was about 5 % idle and its p99 latency 144 ms.
# Both servers receive the same requests from the same wrk script. Each
# round starts both servers again and warms them up, then runs every
# scenario twice on each server, in the order A B B A, alternating which
# server goes first from round to round. The report adds up the two runs
# of each server and divides the gateway's requests per second by plain
# Caddy's within each round.
#
# Before and after each run, it reads each server's CPU time from /proc
# and its allocation and garbage collection counts from the expvar page
# of its admin endpoint, and reports them per request. The gateway's
# extra CPU time per request is the cost of the usersig handler, whatever
# the load generator did.
#
# By default (PIN=1) the servers run on CPU 0 and wrk on CPU 1, with
# taskset, so that the load generator does not take CPU time from the
# server it measures; Go then runs each server with GOMAXPROCS=1. PIN=0
# lets the scheduler place all processes on every core.
#
# Environment (defaults in brackets):
#   ROUNDS [6]         rounds; an even number lets each server go first
#                      equally often
#   DURATION [5]       seconds of load per run, four runs a scenario
#                      in each round
#   CONNECTIONS [32]   wrk connections
#   THREADS [1]        wrk threads
#   WARMUP [2]         seconds of load on each server before its first run
#                      and after each restart
#   FRESH_TOKENS [60000]
#                      tokens of the fresh list; the report counts how
#                      often wrk started over at its top
#   OUT [e2e/results/e2e.txt]
#                      results file, replaced; relative to bench/
#   PROFILE [0]        with 1, also saves a CPU profile of each server
#                      in the first run of each scenario of round 1,
#                      next to OUT, as
#                      SERVER-SCENARIO.pb.gz; the profiling slows those
#                      runs down
#   PROFILE_SECONDS [5]
#                      length of each profile, at most DURATION
#   PIN [1]            1 runs the servers on CPU 0 and wrk on CPU 1;
#                      0 does not pin; needs taskset and 2 cores
#   NULL [0]           with 1, the second server is a plain Caddy too,
#                      without the usersig directive, under the name
#                      "gateway": the ratios then show how far apart the
#                      script measures two identical servers. With vars,
#                      the second server has a "vars" directive in place
#                      of usersig, one of Caddy's cheapest handlers: the
#                      ratios then show what adding any handler costs.
#                      With spin, both servers run cmd/spincaddy and the
#                      second has a "spin SPIN" directive in place of
#                      usersig, a busy loop of SPIN nanoseconds a request
#                      on the wall clock: the ratios then show what a
#                      handler that costs only CPU time does on this
#                      machine
#   SPIN [900]         nanoseconds per request for NULL=spin
#   SPIN_ALLOCATIONS [0]
#                      objects of 48 bytes that spin allocates per
#                      request, for NULL=spin
#   CADDY [built]      a Caddy binary with the usersig module to run
#                      instead of building ./cmd/caddy, such as one built
#                      from an older commit for a before-and-after run;
#                      with NULL=spin it must be a cmd/spincaddy build
#
# Needs Go and wrk (Debian: apt-get install wrk). Every process it starts
# is stopped when it exits, also on Ctrl-C.
set -eu
cd "$(dirname "$0")"

rounds=${ROUNDS:-6}
duration=${DURATION:-5}
connections=${CONNECTIONS:-32}
threads=${THREADS:-1}
warmup=${WARMUP:-2}
fresh_tokens=${FRESH_TOKENS:-60000}
out=${OUT:-e2e/results/e2e.txt}
profile=${PROFILE:-0}
pin=${PIN:-1}
null=${NULL:-0}
spin=${SPIN-900}
spin_allocations=${SPIN_ALLOCATIONS-0}
profile_seconds=${PROFILE_SECONDS:-5}
sdkappid=1400000001

case $null in
0 | 1 | vars | spin) ;;
*)
	echo "e2e.sh: NULL must be 0, 1, vars or spin" >&2
	exit 1
	;;
esac
# require_whole_number NAME VALUE WHAT exits with an error unless VALUE,
# the value of the variable NAME, is a whole number (WHAT).
require_whole_number() {
	case $2 in
	'' | *[!0-9]*)
		echo "e2e.sh: $1 must be $3" >&2
		exit 1
		;;
	esac
}
require_whole_number SPIN "$spin" "a whole number of nanoseconds"
require_whole_number SPIN_ALLOCATIONS "$spin_allocations" "a whole number"
if ! command -v wrk >/dev/null 2>&1; then
	echo "e2e.sh: wrk not found: install it (Debian: apt-get install wrk)" >&2
	exit 1
fi

server_cpu=
load_cpu=
if [ "$pin" = 1 ]; then
	if ! command -v taskset >/dev/null 2>&1 || [ "$(nproc)" -lt 2 ]; then
		echo "e2e.sh: PIN=1 needs taskset (util-linux) and 2 cores; run with PIN=0" >&2
		exit 1
	fi
	server_cpu="taskset -c 0"
	load_cpu="taskset -c 1"
fi
if [ ! -r /proc/self/stat ]; then
	echo "e2e.sh: /proc/PID/stat is needed to read the servers' CPU time" >&2
	exit 1
fi
ticks_per_second=$(getconf CLK_TCK)

tmp=$(mktemp -d)
plain_pid=
gateway_pid=
cleanup() {
	for pid in $plain_pid $gateway_pid; do
		kill "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	rm -rf "$tmp"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

if [ -n "${CADDY:-}" ]; then
	cp "$CADDY" "$tmp/caddy"
elif [ "$null" = spin ]; then
	echo "building caddy with the spin handler" >&2
	go build -o "$tmp/caddy" ./cmd/spincaddy
else
	echo "building caddy" >&2
	(cd .. && go build -o "$tmp/caddy" ./cmd/caddy)
fi
go build -o "$tmp/e2e" ./e2e
e2e=$tmp/e2e

# A random secret key for this run only. It is never printed.
head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$tmp/key"

set -- $("$e2e" ports 4)
plain_port=$1 gateway_port=$2 plain_admin=$3 gateway_admin=$4
plain_url=http://127.0.0.1:$plain_port
gateway_url=http://127.0.0.1:$gateway_port

cat >"$tmp/plain.caddyfile" <<EOF
{
	admin 127.0.0.1:$plain_admin
	persist_config off
	auto_https off
}

$plain_url {
	respond "ok" 200
}
EOF

usersig_directive="usersig {
		app $sdkappid {file.$tmp/key}
	}"
case $null in
0) ;;
1) usersig_directive="# NULL=1: no usersig directive" ;;
vars) usersig_directive="vars e2e_baseline 1" ;;
spin) usersig_directive="spin $spin $spin_allocations" ;;
esac
cat >"$tmp/gateway.caddyfile" <<EOF
{
	admin 127.0.0.1:$gateway_admin
	persist_config off
	auto_https off
}

$gateway_url {
	$usersig_directive
	respond "ok" 200
}
EOF

echo "issuing 1000 + $fresh_tokens tokens" >&2
"$e2e" tokens -n 1000 -userid-prefix hit -sdkappid $sdkappid -key-file "$tmp/key" -out "$tmp/hit.txt"
"$e2e" tokens -n "$fresh_tokens" -userid-prefix fresh -sdkappid $sdkappid -key-file "$tmp/key" -out "$tmp/fresh.txt"

# load NAME URL PATHS SECONDS prints the result line of one wrk run.
load() {
	E2E_PATHS=$3 E2E_THREADS=$threads $load_cpu wrk -t"$threads" -c"$connections" -d"$4"s \
		-s e2e/rotate.lua "$2" >"$tmp/wrk.out" 2>&1 || {
		echo "e2e.sh: wrk failed against $1:" >&2
		cat "$tmp/wrk.out" >&2
		exit 1
	}
	tail -n 1 "$tmp/wrk.out"
}

start_plain() {
	$server_cpu "$tmp/caddy" run --config "$tmp/plain.caddyfile" --adapter caddyfile >>"$tmp/plain.log" 2>&1 &
	plain_pid=$!
	"$e2e" probe -url "$plain_url/" -status 200
	load plain "$plain_url" "$tmp/hit.txt" "$warmup" >/dev/null
}

stop_plain() {
	kill "$plain_pid"
	wait "$plain_pid" 2>/dev/null || true
	plain_pid=
}

start_gateway() {
	$server_cpu "$tmp/caddy" run --config "$tmp/gateway.caddyfile" --adapter caddyfile >>"$tmp/gateway.log" 2>&1 &
	gateway_pid=$!
	# A request without credentials must be rejected, and one with a
	# genuine token accepted, or the load would measure something else.
	if [ "$null" = 0 ]; then
		"$e2e" probe -url "$gateway_url/v4/rooms" -status 401
	fi
	"$e2e" probe -url "$gateway_url$(head -n 1 "$tmp/hit.txt")" -status 200
	load gateway "$gateway_url" "$tmp/hit.txt" "$warmup" >/dev/null
}

stop_gateway() {
	kill "$gateway_pid"
	wait "$gateway_pid" 2>/dev/null || true
	gateway_pid=
}

# cpu_ticks PID prints the user plus system CPU time of a process in clock
# ticks: fields 14 and 15 of /proc/PID/stat. The fields split on spaces
# because the command name in field 2, "(caddy)", has none.
cpu_ticks() {
	awk '{ print $14 + $15 }' "/proc/$1/stat"
}

# measure SCENARIO SERVER ROUND PATHS appends the result of one run to out.
measure() {
	case $2 in
	plain) url=$plain_url pid=$plain_pid admin=$plain_admin ;;
	gateway) url=$gateway_url pid=$gateway_pid admin=$gateway_admin ;;
	esac
	metrics_url=http://127.0.0.1:$gateway_admin/metrics
	if [ "$2" = gateway ] && [ "$null" = 0 ]; then
		"$e2e" metrics -url "$metrics_url" >"$tmp/metrics.before"
	fi
	pprof_pid=
	profile_out=$(dirname "$out")/$2-$1.pb.gz
	if [ "$profile" = 1 ] && [ "$3" = 1 ] && [ ! -e "$profile_out" ]; then
		go tool pprof -proto -output "$profile_out" \
			"http://127.0.0.1:$admin/debug/pprof/profile?seconds=$profile_seconds" >/dev/null 2>&1 &
		pprof_pid=$!
	fi
	memstats_url=http://127.0.0.1:$admin/debug/vars
	"$e2e" memstats -url "$memstats_url" >"$tmp/memstats.before"
	ticks_before=$(cpu_ticks "$pid")
	result=$(load "$2" "$url" "$4" "$duration")
	ticks_after=$(cpu_ticks "$pid")
	result="$result server_cpu_us=$(( (ticks_after - ticks_before) * 1000000 / ticks_per_second ))"
	result="$result $("$e2e" memstats -url "$memstats_url" -since "$tmp/memstats.before")"
	if [ -n "$pprof_pid" ]; then
		wait "$pprof_pid" || echo "e2e.sh: fetching the CPU profile failed" >&2
	fi
	if [ "$2" = gateway ] && [ "$null" = 0 ]; then
		result="$result $("$e2e" metrics -url "$metrics_url" -since "$tmp/metrics.before")"
	fi
	line="scenario=$1 server=$2 round=$3 $result"
	echo "$line" >>"$out"
	echo "$line" >&2
}

mkdir -p "$(dirname "$out")"
if [ "$profile" = 1 ]; then
	for server in plain gateway; do
		for scenario in hit fresh; do
			rm -f "$(dirname "$out")/$server-$scenario.pb.gz"
		done
	done
fi
spin_settings=
if [ "$null" = spin ]; then
	spin_settings=" spin=${spin}ns spin_allocations=$spin_allocations"
fi
{
	echo "# bench/e2e.sh $(date -u +%Y-%m-%dT%H:%M:%SZ)"
	echo "# $(go version), $(nproc) cores, $(wrk --version 2>&1 | head -n 1 | cut -d' ' -f1-2)"
	echo "# rounds=$rounds duration=${duration}s connections=$connections threads=$threads warmup=${warmup}s fresh_tokens=$fresh_tokens pin=$pin null=$null$spin_settings caddy=${CADDY:-built from the working tree}"
} >"$out"

round=1
while [ "$round" -le "$rounds" ]; do
	# Each scenario measures each server twice in a round, in the order
	# A B B A, so that a drift of the machine during the round weighs on
	# both alike. Odd rounds start with plain Caddy, even rounds with the
	# gateway: run against two plain Caddy servers, the first run after
	# the warm-up was up to 9 % faster than the next.
	if [ $((round % 2)) = 1 ]; then
		order="plain gateway gateway plain"
	else
		order="gateway plain plain gateway"
	fi

	# Each round starts both servers again, so that they are equally old:
	# run against two plain Caddy servers, the script measured the one
	# started later 4 % slower. After the warm-up, the gateway's cache
	# contains the 1,000 tokens of the hit list and no token of the fresh
	# list.
	if [ -n "$gateway_pid" ]; then
		stop_gateway
		stop_plain
	fi
	start_plain
	start_gateway

	for server in $order; do
		measure hit "$server" "$round" "$tmp/hit.txt"
	done
	for server in $order; do
		measure fresh "$server" "$round" "$tmp/fresh.txt"
	done

	round=$((round + 1))
done

echo "results: $out (relative to bench/)" >&2
"$e2e" report "$out"
