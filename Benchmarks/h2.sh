#!/usr/bin/env bash
# HTTP/2 over TLS beside NGINX (issue 10): h2load against the gateway and the reference
# proxies, all terminating TLS with ALPN h2 and talking HTTP/1.1 to the same upstream.
# Run from the project's root:
#   Benchmarks/h2.sh [compare.sh options, e.g. -r 3 --h2-conns 8 --h2-streams 8]
# Builds `gateway` in release mode first. The gateway's config: a cleartext listener (which
# compare.sh polls until it answers) and a TLS listener with `http2: true` on the certificate
# compare.sh made, one upstream, one catch-all route, no access log, WORKERS event loops.
#
# h2load prints only min/max/mean latency, so this runs a copy of compare.sh patched to give
# h2load `--log-file` (one line per request: start, status, microseconds) and to report the
# p50 and p99 of those times in the HTTP/2 table instead of mean and max.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
bench=${BENCH_DIR:-$here/../../shared/bench}
[[ -f Package.swift ]] || { echo "run this from the project's root" >&2; exit 1; }
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/h2-bench.XXXXXX)
cat > "$work/gw.tmpl.json" <<'JSON'
{ "listeners": [ { "name": "plain", "address": "127.0.0.1:@PORT@" },
                 { "name": "h2", "address": "127.0.0.1:@H2PORT@", "http2": true,
                   "tls": { "certificate_file": "@CERT@", "private_key_file": "@KEY@" } } ],
  "admin": { "address": "127.0.0.1:@ADMIN@" },
  "server": { "workers": @WORKERS@ },
  "upstreams": { "up": { "targets": [ "http://127.0.0.1:@UPSTREAM_PORT@" ] } },
  "routes": [ { "name": "all", "match": { "path_prefix": "/" }, "upstream": "up" } ],
  "access_log": { "enabled": false } }
JSON
port=18190
cmd="sed -e \"s/@PORT@/\$GATEWAY_PORT/\" -e \"s/@ADMIN@/\$((GATEWAY_PORT+1))/\" -e \"s/@H2PORT@/\$((GATEWAY_PORT+2))/\" \
  -e \"s/@WORKERS@/\$WORKERS/\" -e \"s/@UPSTREAM_PORT@/\$UPSTREAM_PORT/\" -e \"s|@CERT@|\$TLS_CERT|\" -e \"s|@KEY@|\$TLS_KEY|\" \
  $work/gw.tmpl.json > $work/gw.json && exec $bin run --config $work/gw.json"
python3 - "$bench/compare.sh" "$work/compare.sh" <<'PY'
import sys
src, dst = sys.argv[1], sys.argv[2]
s = open(src).read()
def patch(old, new):
    global s
    if old not in s:
        sys.exit("h2.sh: compare.sh changed; cannot patch: " + old[:60])
    s = s.replace(old, new)
patch('''    return ["h2load", "-t", str(THREADS), "-c", str(H2_CONNS), "-m", str(H2_STREAMS),
            "-D", str(secs), url]''', '''    log = os.path.join(TMP, "h2load-requests.log")
    if os.path.exists(log):
        os.remove(log)
    return ["h2load", "-t", str(THREADS), "-c", str(H2_CONNS), "-m", str(H2_STREAMS),
            "-D", str(secs), "--log-file", log, url]''')
patch('''        "min_ms": unit_us(lat.group(1)) / 1e3 if lat else None,
    }''', '''        "min_ms": unit_us(lat.group(1)) / 1e3 if lat else None,
        **h2_percentiles(),
    }


def h2_percentiles():
    try:
        with open(os.path.join(TMP, "h2load-requests.log")) as f:
            us = sorted(int(line.split()[2]) for line in f if line.strip())
    except (OSError, IndexError, ValueError):
        return {}
    if not us:
        return {}
    pick = lambda q: us[min(len(us) - 1, int(q * len(us)))] / 1e3
    return {"p50_ms": pick(0.50), "p99_ms": pick(0.99)}''')
patch('''"| target | req/s | min - max (spread) | mean ms | max ms | CPU us/req''',
      '''"| target | req/s | min - max (spread) | p50 ms | p99 ms | CPU us/req''')
patch('''a, b = ("p50_ms", "p99_ms") if proto == "http1.1" else ("mean_ms", None)''', '''a, b = ("p50_ms", "p99_ms")''')
open(dst, "w").write(s)
PY
exec bash "$work/compare.sh" --h2 --no-h1 --targets direct,nginx,haproxy,gateway --gateway-port $port \
  --gateway-h2-url "https://127.0.0.1:$((port + 2))/" --gateway-cmd "$cmd" "$@"
