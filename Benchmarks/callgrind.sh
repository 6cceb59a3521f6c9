#!/usr/bin/env bash
# Instructions per request on a proxy route, counted by callgrind (issue 12): exact and
# repeatable where wall-clock benchmarks on a shared VM are not. From the project root:
#   Benchmarks/callgrind.sh [requests, default 20000] [connections, default 4] [route, default plain]
# route: plain (one catch-all route to one upstream, requests without credentials: the
# numbers of the table in BENCHMARKS.md), plain-token (the same route, every request with
# an `Authorization: Bearer` token of 337 bytes that it ignores), or jwtrl (the same route
# with ES256 JWT auth, two claims forwarded, and the memory rate limiter with the tier from
# the token's `tier` claim and the key from its `sub`: every request verified from the
# cache, counted and admitted). plain-token and jwtrl send the same token (minted by
# auth-bench), so they differ only in what the route does with it.
# Builds `proxy-harness` (unless BIN names a folder holding one; the gateway's data path with a plain main, see its source),
# strips its debug info (valgrind 3.19 cannot read Swift 6's DWARF), runs it under
# callgrind with one event loop in front of a local NGINX, warms up with 2,000 requests,
# zeroes the counters, sends the requests with h2load (HTTP/1.1 keep-alive), and prints
# the instructions of the gateway process (user space, all threads) per request, and the
# functions that cost the most.
set -euo pipefail
source "$(dirname "$0")/upstream.sh"
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
requests=${1:-20000}
conns=${2:-4}
route=${3:-plain}
case $route in plain|plain-token|jwtrl) ;; *) echo "unknown route $route (plain, plain-token or jwtrl)" >&2; exit 1 ;; esac
for tool in valgrind callgrind_control callgrind_annotate nginx h2load; do
  command -v $tool >/dev/null || { echo "$tool is not installed" >&2; exit 1; }
done
# BIN=dir: measure the proxy-harness and auth-bench already in dir (a build of another
# revision, for a before/after pair) instead of building this checkout's.
bin=${BIN:-}
if [[ -z $bin ]]; then
  swift build -c release --product proxy-harness >&2
  swift build -c release --product auth-bench >&2
  bin=$(swift build -c release --show-bin-path)
fi
work=$(mktemp -d /tmp/callgrind.XXXXXX)
"$bin/auth-bench" --mint "$work" >&2
auth="" limits=""
if [[ $route == jwtrl ]]; then
  auth=', "auth": { "jwt": "idp" }'
  limits='"rate_limits": { "tier_from": ["claim:tier"], "default_tier": "anonymous", "key_from": ["claim:sub", "client_ip"],
    "tiers": { "pro": [ { "limit": 1000000000, "per": "1s" } ], "anonymous": [ { "limit": 10, "per": "1s" } ] } },'
fi
objcopy --strip-debug "$bin/proxy-harness" "$work/proxy-harness"
port_up=18821 port_gw=18822
cat > "$work/gateway.json" <<JSON
{ "listeners": [ { "name": "bench", "address": "127.0.0.1:$port_gw" } ],
  "server": { "workers": 1 },
  $limits
  "auth": { "jwt": { "idp": { "issuer": "https://idp.bench", "audiences": ["api"], "jwks_file": "$work/jwks.json",
                              "algorithms": ["ES256"], "forward_claims": { "sub": "x-user-id", "tier": "x-user-tier" } } } },
  "upstreams": { "app": { "targets": [ "http://127.0.0.1:$port_up" ] } },
  "routes": [ { "name": "app", "match": { "path_prefix": "/" }, "upstream": "app"$auth } ],
  "access_log": { "enabled": false } }
JSON
start_upstream "$work" nginx "$port_up" '{"ok":true}'
valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$work/proxy-harness" "$work/gateway.json" > "$work/valgrind.log" 2>&1 &
vg=$!
cleanup() { kill "$vg" 2>/dev/null || true; stop_upstream "$work" nginx; }
trap cleanup EXIT
for _ in $(seq 120); do grep -q "^listening" "$work/valgrind.log" 2>/dev/null && break; sleep 1; done
pid=$(pgrep -f "valgrind.bin.*$work/proxy-harness" | head -1)
token=()
[[ $route != plain ]] && token=(-H "Authorization: Bearer $(cat "$work/token")")
h2load --h1 "${token[@]}" -n 2000 -c "$conns" "http://127.0.0.1:$port_gw/" > "$work/warmup.txt"
callgrind_control -z "$pid" > /dev/null
h2load --h1 "${token[@]}" -n "$requests" -c "$conns" "http://127.0.0.1:$port_gw/" > "$work/h2load.txt"
callgrind_control -d "$pid" > /dev/null
sleep 1
dump=$(ls "$work"/cg.out.* | tail -1)
grep -E "^requests:|^status codes:" "$work/h2load.txt"
echo "route: $route"
total=$(awk '/^totals:/ { print $2 }' "$dump")
echo "instructions: $total for $requests requests = $((total / requests)) per request"
echo "top functions (exclusive instructions per request):"
callgrind_annotate --threshold=100 --auto=no "$dump" 2>/dev/null | grep -E '^ *[0-9,]+ \(' | grep -v "PROGRAM TOTALS" \
  | awk -v n="$requests" '{ v = $1; gsub(",", "", v); if (v / n >= 200) { $2 = ""; printf "%8d  %s\n", v / n, substr($0, index($0, $3)) } }' \
  | grep -v "clone\|start_thread\|NIOThread\|setupThreadAndRun\|ThreadOpsPosix\|MultiThreadedEventLoopGroup" | head -25 | cut -c1-160 || true
echo "callgrind output: $dump"
