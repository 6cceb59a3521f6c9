#!/usr/bin/env bash
# What a feature costs on the data path: the gateway on a plain route and on the same route
# with the feature, each beside NGINX, in interleaved rounds. Run from the project's root:
#   Benchmarks/route-cost.sh FEATURE [rounds, default 3] [compare.sh options, e.g. -c 64,256]
# FEATURE:
#   jwt        ES256 JWT auth, one token reused as a real client does (issue 4)
#   ratelimit  the memory rate limiter, every request counted and admitted (issue 5): one
#              tier with a limit no run reaches, keyed by client IP (all of wrk's
#              connections share one key, the most contended case)
#   redis      the same limit in the Redis store (a redis-server this script starts on
#              127.0.0.1:16379, persistence off): one EVALSHA per request
#   resilience a route with `retry` (3 attempts, per-try timeout) to an upstream with
#              `outlier_detection` and `health_check` (issue 6): every response fed to the
#              outlier detector, the body-replay and per-try bookkeeping, probes every second
#   jwtrl      JWT auth and the memory rate limiter together, as an API route is set up (issue
#              12): the tier from the token's `tier` claim, the key from its `sub`, one
#              limit no run reaches; every request verified (cached), counted and admitted
#   aggregate  an aggregate route of 3 backends (the same upstream, each answer grouped
#              under its name) against the plain route (issue 8): every request makes 3
#              upstream requests, parses 3 JSON answers and serializes the merge
# Each round is two ../shared/bench/compare.sh runs (plain, then JWT). wrk sends the same
# `Authorization: Bearer <token>` in both passes, to every target (NGINX passes it on), so
# the two passes differ only in the route's `auth`: the ratio is the cost of verifying,
# not of carrying 360 more header bytes. The table at the end gives, per connection count, the median over rounds of JWT req/s ÷ plain req/s, and
# of each pass against NGINX measured in that same compare.sh run. compare.sh's start-up
# probe (GET / with `Connection: close` and no token) is answered by a route without auth;
# wrk's requests (keep-alive) all take the JWT route.
set -euo pipefail
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
feature=${1:?usage: route-cost.sh jwt|ratelimit|jwtrl|redis|resilience|aggregate [rounds] [compare.sh options]}
shift
case $feature in jwt|ratelimit|jwtrl|redis|resilience|aggregate) ;; *) echo "unknown feature $feature" >&2; exit 1 ;; esac
if [[ $feature == redis ]]; then
  command -v redis-server >/dev/null || { echo "redis-server is not installed (apt-get install redis-server)" >&2; exit 1; }
  redis-server --port 16379 --bind 127.0.0.1 --save "" --appendonly no --daemonize yes --logfile "" --protected-mode no \
    --pidfile /tmp/route-cost-redis.pid >&2
  trap 'kill "$(cat /tmp/route-cost-redis.pid)" 2>/dev/null || true' EXIT
fi
rounds=${1:-3}
shift || true
here=$(pwd)
bench=$(cd ../shared/bench && pwd)
swift build -c release --product gateway >&2
swift build -c release --product auth-bench >&2
bin="$(swift build -c release --show-bin-path)"
work=$(mktemp -d /tmp/route-cost.XXXXXX)
"$bin/auth-bench" --mint "$work" >&2

# wrk with the token: compare.sh finds it first on PATH.
mkdir -p "$work/shim"
# (compare.sh installs wrk on first use; the shim takes itself off PATH to find it.)
cat > "$work/shim/wrk" <<SH
#!/usr/bin/env bash
PATH=\${PATH#"$work/shim:"}
exec wrk -H "Authorization: Bearer \$(cat $work/token)" "\$@"
SH
chmod +x "$work/shim/wrk"

for kind in plain "$feature"; do
  auth="" limits="" upextra="" dest='"upstream": "up"'
  [[ $kind == aggregate ]] && dest='"aggregate": { "backends": [ { "name": "a", "upstream": "up", "path": "/", "group": "a" },
      { "name": "b", "upstream": "up", "path": "/", "group": "b" }, { "name": "c", "upstream": "up", "path": "/", "group": "c" } ] }'
  [[ $kind == jwt || $kind == jwtrl ]] && auth=', "auth": { "jwt": "idp" }'
  [[ $kind == resilience ]] && auth=', "retry": { "attempts": 3, "on": ["connect-failure", "reset", "gateway-error"], "per_try_timeout": "2s" }'
  [[ $kind == resilience ]] && upextra=', "health_check": { "path": "/", "interval": "1s" },
                   "outlier_detection": { "consecutive_5xx": 5, "consecutive_gateway_failures": 5, "max_ejection_percent": 100 }'
  [[ $kind == ratelimit ]] && limits='"rate_limits": { "default_tier": "all", "key_from": ["client_ip"],
                   "tiers": { "all": [ { "limit": 1000000000, "per": "1s" } ] } },'
  [[ $kind == jwtrl ]] && limits='"rate_limits": { "tier_from": ["claim:tier"], "default_tier": "anonymous", "key_from": ["claim:sub", "client_ip"],
                   "tiers": { "pro": [ { "limit": 1000000000, "per": "1s" } ], "anonymous": [ { "limit": 10, "per": "1s" } ] } },'
  [[ $kind == redis ]] && limits='"rate_limits": { "default_tier": "all", "key_from": ["client_ip"],
                   "store": { "kind": "redis", "url": "redis://127.0.0.1:16379/0", "on_error": "deny" },
                   "tiers": { "all": [ { "limit": 1000000000, "per": "1s" } ] } },'
  cat > "$work/$kind.tmpl.json" <<JSON
{ "listeners": [ { "name": "bench", "address": "127.0.0.1:@PORT@" } ],
  "admin": { "address": "127.0.0.1:@ADMIN@" },
  "server": { "workers": @WORKERS@ },
  $limits
  "auth": { "jwt": { "idp": { "issuer": "https://idp.bench", "audiences": ["api"], "jwks_file": "$work/jwks.json",
                              "algorithms": ["ES256"], "forward_claims": { "sub": "x-user-id", "tier": "x-user-tier" } } } },
  "upstreams": { "up": { "targets": [ "http://127.0.0.1:@UPSTREAM_PORT@" ]$upextra } },
  "routes": [ { "name": "probe", "match": { "path": "/", "headers": { "connection": "close" } }, "upstream": "up" },
              { "name": "all", "match": { "path_prefix": "/" }, $dest$auth } ],
  "access_log": { "enabled": false } }
JSON
done

run() { # kind round
  local kind=$1 round=$2 path="$work/shim:$PATH"
  shift 2
  local cmd="sed -e \"s/@PORT@/\$GATEWAY_PORT/\" -e \"s/@ADMIN@/\$((GATEWAY_PORT+1))/\" -e \"s/@WORKERS@/\$WORKERS/\" -e \"s/@UPSTREAM_PORT@/\$UPSTREAM_PORT/\" $work/$kind.tmpl.json > $work/$kind.json && exec $bin/gateway run --config $work/$kind.json"
  PATH=$path bash "$bench/compare.sh" --targets nginx,gateway -r 1 --gateway-port 18190 --gateway-name "gateway-$kind" \
    --out "$work/$kind-$round.json" --gateway-cmd "$cmd" "$@" >&2
}

for r in $(seq 1 "$rounds"); do
  run plain "$r" "$@"
  run "$feature" "$r" "$@"
done

python3 - "$work" "$rounds" "$feature" <<'PY'
import json, statistics, sys
work, rounds, feature = sys.argv[1], int(sys.argv[2]), sys.argv[3]
def rows(path):
    d = json.load(open(path))
    return {(row["target"].split("-")[0], row["conns"]): row for row in d["summary"] if row["protocol"] == "http1.1"}
table = {}
for r in range(1, rounds + 1):
    p, f = rows(f"{work}/plain-{r}.json"), rows(f"{work}/{feature}-{r}.json")
    for (t, c), row in f.items():
        if t != "gateway": continue
        table.setdefault(c, []).append((p[("gateway", c)], row, p[("nginx", c)], f[("nginx", c)]))
med = statistics.median
print(f"| connections | plain gw req/s | {feature} gw req/s | {feature} ÷ plain | plain ÷ NGINX | {feature} ÷ NGINX "
      f"| p50 ms plain → {feature} | p99 ms plain → {feature} | gateway CPU µs/req plain → {feature} |")
print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
for c in sorted(table):
    rs = table[c]
    ratios = [f["rps"] / p["rps"] for p, f, _, _ in rs]
    print(f"| {c} | {med([p['rps'] for p, _, _, _ in rs]):.0f} | {med([f['rps'] for _, f, _, _ in rs]):.0f} | "
          f"{med(ratios):.2f} (rounds: {', '.join(f'{x:.2f}' for x in ratios)}) | "
          f"{med([p['rps'] / n['rps'] for p, _, n, _ in rs]):.2f} | {med([f['rps'] / n['rps'] for _, f, _, n in rs]):.2f} | "
          f"{med([p['p50_ms'] for p, _, _, _ in rs]):.2f} → {med([f['p50_ms'] for _, f, _, _ in rs]):.2f} | "
          f"{med([p['p99_ms'] for p, _, _, _ in rs]):.2f} → {med([f['p99_ms'] for _, f, _, _ in rs]):.2f} | "
          f"{med([p['cpu_us_per_req'] for p, _, _, _ in rs]):.1f} → {med([f['cpu_us_per_req'] for _, f, _, _ in rs]):.1f} |")
print(f"\nraw results: {work}")
PY
