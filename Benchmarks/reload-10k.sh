#!/usr/bin/env bash
# How long a reload of a 10,000-route config takes (issue 3: under 250 ms).
#
#   Benchmarks/reload-10k.sh [rounds]        (default 10; run from the repository root)
#
# Builds the release binary, writes a config with 10,000 routes (path prefixes, path
# patterns, methods, header operations) over 50 upstreams, starts the gateway on it, then
# sends a new version of the file each round with `PUT /config` and prints what the
# gateway measured for the reload (`took_ms`: parsing, validating and compiling the file and
# publishing the snapshot) and curl's total (that, plus uploading 1.6 MB, writing the file
# atomically with fsync, and the HTTP round trip), then the medians. (`PUT` rather than
# editing the file: the gateway's file watcher would reload an edited file by itself.)
set -euo pipefail
ROUNDS=${1:-10}
swift build -c release --product gateway >&2
bin="$(swift build -c release --show-bin-path)/gateway"
work=$(mktemp -d /tmp/reload-10k.XXXXXX)
cleanup() { [[ -n ${GW:-} ]] && kill "$GW" 2>/dev/null; rm -rf "$work"; }
trap cleanup EXIT
gen() {  # gen VERSION FILE
    python3 - "$1" "$2" <<'PY'
import json, sys
version, out = sys.argv[1], sys.argv[2]
routes = []
for i in range(10000):
    r = {"name": f"r{i}", "match": {"path_prefix": f"/svc{i}/api", "methods": ["GET", "POST"]}, "upstream": f"u{i % 50}", "timeout": "5s"}
    if i % 3 == 0:
        r["match"] = {"path": f"/items{i}/{{id}}/detail"}
    if i % 7 == 0:
        r["request_headers"] = {"set": {"x-route": f"r{i}"}}
    routes.append(r)
routes.append({"name": "version", "match": {"path": "/version"}, "respond": {"status": 200, "body": version}})
cfg = {"listeners": [{"name": "bench", "address": "127.0.0.1:18720"}],
       "admin": {"address": "127.0.0.1:18721"},
       "upstreams": {f"u{j}": {"targets": [f"http://127.0.0.1:{19000 + j}"]} for j in range(50)},
       "routes": routes, "access_log": {"enabled": False}}
tmp = out + ".tmp"
open(tmp, "w").write(json.dumps(cfg, indent=1))
import os; os.replace(tmp, out)
PY
}
gen v0 "$work/gateway.json"
"$bin" run --config "$work/gateway.json" 2>"$work/gw.log" &
GW=$!
for _ in $(seq 100); do curl -sf http://127.0.0.1:18721/healthz >/dev/null && break; sleep 0.1; done
took=(); total=()
for i in $(seq "$ROUNDS"); do
    gen "v$i" "$work/next.json"
    t=$(curl -s -o "$work/out" -w '%{time_total}' -X PUT --data-binary "@$work/next.json" http://127.0.0.1:18721/config)
    ms=$(python3 -c "import json; print(json.load(open('$work/out'))['took_ms'])") || { cat "$work/out"; exit 1; }
    all=$(python3 -c "print(round($t*1000, 1))")
    echo "round $i: reload ${ms} ms, PUT total ${all} ms"
    took+=("$ms"); total+=("$all")
done
python3 - "${took[*]}" "${total[*]}" <<'PY'
import statistics, sys
took = [float(x) for x in sys.argv[1].split()]
total = [float(x) for x in sys.argv[2].split()]
print(f"reload: median {statistics.median(took):.1f} ms (min {min(took):.1f}, max {max(took):.1f}); "
      f"PUT /config total: median {statistics.median(total):.1f} ms, over {len(took)} reloads of 10,000 routes")
PY
