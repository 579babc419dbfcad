#!/usr/bin/env bash
# The load recipe of docs/performance.md: wrk at 64
# connections against a local upstream, through a bare
# httputil.ReverseProxy and through imsproxy (metrics on, logging at the
# default level), the proxy pinned to one core and wrk plus the upstream to
# the other. Prints throughput, latency, and the CPU per request of the
# process wrk talks to (the upstream itself for "direct", else the proxy).
#
#	integration/loadtest/run.sh            # 10 s per run
#	DURATION=30s integration/loadtest/run.sh
#
# Needs wrk and taskset (Debian: apt-get install wrk util-linux).
set -euo pipefail
cd "$(dirname "$0")/../.."

DURATION=${DURATION:-10s}
CONNECTIONS=${CONNECTIONS:-64}
PROXY_CPU=${PROXY_CPU:-0}
LOAD_CPU=${LOAD_CPU:-1}
UPSTREAM=127.0.0.1:9101
BARE=127.0.0.1:9102
IMSPROXY=127.0.0.1:9103
ADMIN=127.0.0.1:9104
PATH_QUERY='/Rest/Media/1/Files?ids=100001&locale=en_US'

for tool in wrk taskset curl; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool is missing (apt-get install wrk util-linux curl)" >&2; exit 1; }
done

work=$(mktemp -d)
pids=()
cleanup() {
	for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

go build -o "$work/imsproxy" ./cmd/imsproxy
go build -o "$work/loadtest" ./integration/loadtest

# await URL: polls until URL answers 200, for at most 10 s.
await() {
	for _ in $(seq 100); do
		curl -fs -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "run.sh: $1 did not come up" >&2
	exit 1
}

# cpu_ticks PID: user+system CPU of the process, in clock ticks.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }

# measure NAME PID URL: a warm-up, then one measured wrk run.
measure() {
	local name=$1 pid=$2 url=$3
	taskset -c "$LOAD_CPU" wrk -t1 -c"$CONNECTIONS" -d2s "$url" >/dev/null
	local before out after
	before=$(cpu_ticks "$pid")
	out=$(taskset -c "$LOAD_CPU" wrk -t2 -c"$CONNECTIONS" -d"$DURATION" --latency "$url")
	after=$(cpu_ticks "$pid")
	local requests rps p50 p99 errors
	requests=$(awk '/requests in/ {print $1}' <<<"$out")
	rps=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
	p50=$(awk '$1 == "50%" {print $2}' <<<"$out")
	p99=$(awk '$1 == "99%" {print $2}' <<<"$out")
	errors=$(awk '/Non-2xx|Socket errors/' <<<"$out")
	local hz cpu_us
	hz=$(getconf CLK_TCK)
	cpu_us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$requests" 'BEGIN {printf "%.1f", t / hz * 1e6 / n}')
	printf '%-10s %10s req/s  p50 %8s  p99 %8s  CPU %6s µs/request  RSS after %s\n' \
		"$name" "$rps" "$p50" "$p99" "$cpu_us" "$(awk '/VmRSS/ {print $2 $3}' "/proc/$pid/status")"
	[ -z "$errors" ] || echo "  $errors"
}

taskset -c "$LOAD_CPU" "$work/loadtest" upstream -listen "$UPSTREAM" & pids+=($!)
await "http://$UPSTREAM/"
measure direct "${pids[0]}" "http://$UPSTREAM$PATH_QUERY"

taskset -c "$PROXY_CPU" "$work/loadtest" bare -listen "$BARE" -upstream "http://$UPSTREAM" & pids+=($!)
await "http://$BARE/"
measure bare "$!" "http://$BARE$PATH_QUERY"
kill "$!"

IMSPROXY_ROUTES=load \
IMSPROXY_LOAD_TYPE=stock \
IMSPROXY_LOAD_LISTEN=$IMSPROXY \
IMSPROXY_LOAD_UPSTREAM=http://$UPSTREAM \
IMSPROXY_LOAD_CLIENT_ID=load-test-client \
IMSPROXY_LOAD_ACCESS_TOKEN=load-test-token \
IMSPROXY_LOAD_CACHE_SIZE=${CACHE_SIZE:-0} \
IMSPROXY_ADMIN_LISTEN=$ADMIN \
	taskset -c "$PROXY_CPU" "$work/imsproxy" serve 2>"$work/imsproxy.log" & pids+=($!)
await "http://$ADMIN/readyz"
echo "imsproxy idle RSS: $(awk '/VmRSS/ {print $2 $3}' "/proc/$!/status")"
measure imsproxy "$!" "http://$IMSPROXY$PATH_QUERY"
curl -fs "http://$ADMIN/metrics" | grep '^imsproxy_requests_total' | sed 's/^/  /'
