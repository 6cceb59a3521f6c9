#!/usr/bin/env bash
# What a feature costs on the data path: the gateway on a plain route and on the same route
# with the feature, each beside NGINX, in interleaved rounds. Run from the project's root:
#   Benchmarks/route-cost.sh FEATURE [rounds, default 3] [compare.sh options, e.g. -c 64,256]
# FEATURE:
#   jwt        ES256 JWT auth, one token reused as a real client does (issue 4)
#   ratelimit  the memory rate limiter, every request counted and admitted (issue 5): one
#              tier with a limit no run reaches, keyed by client IP (all of wrk's
#              connections share one key, the most contended case)
# Each round is two ../shared/bench/compare.sh runs (plain, then JWT). wrk sends the same
# `Authorization: Bearer <token>` in both passes, to every target (NGINX passes it on), so
# the two passes differ only in the route's `auth`: the ratio is the cost of verifying,
# not of carrying 360 more header bytes. The table at the end gives, per connection count, the median over rounds of JWT req/s ÷ plain req/s, and
# of each pass against NGINX measured in that same compare.sh run. compare.sh's start-up
# probe (GET / with `Connection: close` and no token) is answered by a route without auth;
# wrk's requests (keep-alive) all take the JWT route.
set -euo pipefail
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
feature=${1:?usage: route-cost.sh jwt|ratelimit [rounds] [compare.sh options]}
shift
case $feature in jwt|ratelimit) ;; *) echo "unknown feature $feature" >&2; exit 1 ;; esac
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
  auth="" limits=""
  [[ $kind == jwt ]] && auth=', "auth": { "jwt": "idp" }'
  [[ $kind == ratelimit ]] && limits='"rate_limits": { "default_tier": "all", "key_from": ["client_ip"],
                   "tiers": { "all": [ { "limit": 1000000000, "per": "1s" } ] } },'
  cat > "$work/$kind.tmpl.json" <<JSON
{ "listeners": [ { "name": "bench", "address": "127.0.0.1:@PORT@" } ],
  "admin": { "address": "127.0.0.1:@ADMIN@" },
  "server": { "workers": @WORKERS@ },
  $limits
  "auth": { "jwt": { "idp": { "issuer": "https://idp.bench", "audiences": ["api"], "jwks_file": "$work/jwks.json",
                              "algorithms": ["ES256"], "forward_claims": { "sub": "x-user-id", "tier": "x-user-tier" } } } },
  "upstreams": { "up": { "targets": [ "http://127.0.0.1:@UPSTREAM_PORT@" ] } },
  "routes": [ { "name": "probe", "match": { "path": "/", "headers": { "connection": "close" } }, "upstream": "up" },
              { "name": "all", "match": { "path_prefix": "/" }, "upstream": "up"$auth } ],
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
def medians(path):
    d = json.load(open(path))
    return {(row["target"].split("-")[0], row["conns"]): row["rps"]
            for row in d["summary"] if row["protocol"] == "http1.1"}
rows = {}
for r in range(1, rounds + 1):
    p, j = medians(f"{work}/plain-{r}.json"), medians(f"{work}/{feature}-{r}.json")
    for (t, c), v in j.items():
        if t != "gateway": continue
        rows.setdefault(c, []).append((p[("gateway", c)], v, p[("nginx", c)], j[("nginx", c)]))
print(f"| connections | plain gw req/s | {feature} gw req/s | {feature} ÷ plain | plain ÷ NGINX | {feature} ÷ NGINX |")
print("|---:|---:|---:|---:|---:|---:|")
for c in sorted(rows):
    rs = rows[c]
    med = lambda xs: statistics.median(xs)
    print(f"| {c} | {med([a for a,_,_,_ in rs]):.0f} | {med([b for _,b,_,_ in rs]):.0f} | "
          f"{med([b/a for a,b,_,_ in rs]):.2f} (rounds: {', '.join(f'{b/a:.2f}' for a,b,_,_ in rs)}) | "
          f"{med([a/n for a,_,n,_ in rs]):.2f} | {med([b/n for _,b,_,n in rs]):.2f} |")
print(f"\nraw results: {work}")
PY
